#!/usr/bin/env python3
"""Where terse's CPU time goes, by component, from `perf script -F comm,ip,sym,dso` on stdin.

Each sample is charged to the component of its innermost frame that belongs to one (so malloc
called by the JSON parser counts as malloc, the parser's own code as JSON parse). Prints the share
of samples per thread and per component.
"""
import collections
import re
import sys

# (component, test on (symbol, shared object)); the first that matches a frame wins.
RULES = [
    ("JSON parse (nlohmann)",
     lambda s, d: "nlohmann" in s and re.search(r"detail::(parser|lexer|json_sax)|::parse\(", s)),
    ("JSON serialize (nlohmann)",
     lambda s, d: "nlohmann" in s and re.search(r"detail::serializer<|::dump\(", s)),
    ("JSON build/copy/destroy (nlohmann)", lambda s, d: "nlohmann" in s),
    ("libcurl", lambda s, d: "libcurl" in d),
    ("locks (mutex, futex)",
     lambda s, d: re.search(r"futex|pthread_mutex|pthread_cond|absl.*Mutex|GraphCycles", s)),
    ("malloc/free", lambda s, d: "jemalloc" in d),  # terse links jemalloc when installed
    ("malloc/free",
     lambda s, d: ("libc" in d or "libstdc++" in d or "terse" in d) and re.search(
         r"malloc|free|_int_|consolidate|unlink_chunk|operator new|operator delete|calloc|realloc"
         r"|tcache", s)),
    ("kernel: scheduler, wake-ups",
     lambda s, d: "kernel" in d and re.search(
         r"schedule|futex|wake|finish_task_switch|hrtimeout|ttwu|switch_to|pick_next", s)),
    ("kernel: TCP, epoll, other syscalls", lambda s, d: "kernel" in d),
    ("Beast HTTP parser", lambda s, d: "beast::http" in s and "parser" in s),
    ("Asio/Beast (reactor, strands, handlers)", lambda s, d: "boost::" in s),
    ("protobuf", lambda s, d: "protobuf" in d),
    ("abseil", lambda s, d: "absl" in d or "absl::" in s),
    ("terse's own code", lambda s, d: "terse::" in s),
    ("libc other (memcpy, strlen, syscall stubs)", lambda s, d: "libc" in d or "vdso" in d),
    ("libstdc++ other", lambda s, d: "libstdc++" in d),
]
FRAME = re.compile(r"\s*[0-9a-f]+\s+(.*?)\s+\((.*)\)\s*$")


def component(frames):
    for sym, dso in frames:
        for name, test in RULES:
            if test(sym, dso):
                return name
    return "other"


def main():
    by_component = collections.Counter()
    by_thread = collections.Counter()
    cell = collections.Counter()
    comm, frames = None, []

    def flush():
        if comm is None:
            return
        c = component(frames)
        by_component[c] += 1
        by_thread[comm] += 1
        cell[comm, c] += 1

    for line in sys.stdin:
        if not line.strip():
            flush()
            comm, frames = None, []
        elif not line[0].isspace():
            flush()
            comm, frames = line.split()[0], []
        else:
            m = FRAME.match(line)
            if m:
                frames.append((m.group(1), m.group(2)))
    flush()
    total = sum(by_component.values())
    if not total:
        print("no samples")
        return
    print(f"{total} samples; by thread: " + ", ".join(
        f"{t} {100 * n / total:.0f}%" for t, n in by_thread.most_common()))
    for c, n in by_component.most_common():
        split = ", ".join(f"{t} {100 * cell[t, c] / total:.1f}" for t, _ in by_thread.most_common()
                          if cell[t, c])
        print(f"  {100 * n / total:5.1f}%  {c}  ({split})")


if __name__ == "__main__":
    main()
