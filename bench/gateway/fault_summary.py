#!/usr/bin/env python3
"""Summarises `perf script -F event,ip,sym,dso,addr` of page-fault samples (one per fault).

argv: the requests measured, and the faulting process's /proc/PID/maps read after the load.
Prints faults per request, minor and major, by the mapping the faulting address lies in (a
library's text, the heap, an anonymous mapping such as a thread's stack or an arena) and by the
function whose access faulted.
"""
import collections
import re
import sys


def load_maps(path):
    maps = []
    with open(path) as f:
        for line in f:
            fields = line.split(None, 5)
            start, end = (int(x, 16) for x in fields[0].split("-"))
            name = fields[5].strip() if len(fields) > 5 else ""
            perms = fields[1]
            label = name.rsplit("/", 1)[-1] if name else "anonymous"
            if name.startswith("/"):
                label += " (text)" if "x" in perms else " (data)"
            maps.append((start, end, label))
    maps.sort()
    return maps


def where(maps, addr):
    lo, hi = 0, len(maps)
    while lo < hi:
        mid = (lo + hi) // 2
        if maps[mid][1] <= addr:
            lo = mid + 1
        else:
            hi = mid
    if lo < len(maps) and maps[lo][0] <= addr < maps[lo][1]:
        return maps[lo][2]
    return "unmapped since"


def main():
    requests = max(1, int(sys.argv[1]))
    maps = load_maps(sys.argv[2])
    by_kind = collections.Counter()
    by_map = collections.Counter()
    by_sym = collections.Counter()
    # perf prints the address (with what it resolves to, "[unknown] (//anon)" say), then the ip.
    pattern = re.compile(
        r"(minor-faults|major-faults):?\s+([0-9a-f]+)\s+(?:\S.*?\(\S*\)\s+)?([0-9a-f]+)\s+(.*)")
    for line in sys.stdin:
        m = pattern.search(line)
        if not m:
            continue
        kind, addr, _ip, rest = m.groups()
        kind = kind.split("-")[0]
        by_kind[kind] += 1
        by_map[(kind, where(maps, int(addr, 16)))] += 1
        by_sym[(kind, rest.strip())] += 1
    print(f"page faults per request (of {requests} requests): "
          + ", ".join(f"{k} {by_kind[k] / requests:.3f} ({by_kind[k]})" for k in ("minor", "major")))
    print("by where the faulting address lies:")
    for (kind, label), n in by_map.most_common(12):
        print(f"  {kind:5} {n / requests:8.4f} {n:8d}  {label}")
    print("by the code whose access faulted:")
    for (kind, sym), n in by_sym.most_common(15):
        print(f"  {kind:5} {n / requests:8.4f} {n:8d}  {sym}")


if __name__ == "__main__":
    main()
