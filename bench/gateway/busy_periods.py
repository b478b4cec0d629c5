#!/usr/bin/env python3
"""Summarises `perf sched timehist` of every CPU (stdin) for bench/gateway/run.sh's PROFILE=sched.

The argument is the proxy's core. Reports how long the proxy thread's stretches on that core
lasted (a stretch ends when the thread blocks in epoll_wait or is switched out), the quiet spells
before them (the core idle), and what the other cores did during those spells. Requests that
arrive during a long stretch wait for its end, so long stretches are where a tail comes from;
one that follows a quiet spell in which the load's cores were idle too is a clump of requests
the load generator sent together."""
import sys

LONG_MS = 1.0  # a stretch, or a quiet spell, this long or longer counts as long


def percentile(sorted_values, p):
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, int(p / 100 * len(sorted_values)))]


proxy_cpu = f"[{int(sys.argv[1]):04d}]"
# (start_ms, end_ms, cpu, task, run_ms), in the order of their ends on each CPU.
stretches = []
for line in sys.stdin:
    fields = line.split()
    if len(fields) < 6 or not fields[1].startswith("["):
        continue
    try:
        end = float(fields[0]) * 1000
        run = float(fields[-1])
    except ValueError:
        continue
    task = " ".join(fields[2:-3]).rsplit("[", 1)[0]
    stretches.append((end - run, end, fields[1], task, run))

on_proxy = [s for s in stretches if s[2] == proxy_cpu]
elsewhere = [s for s in stretches if s[2] != proxy_cpu]
runs = sorted(s[4] for s in on_proxy if s[3].startswith(("terse", "nginx")))
if not runs:
    sys.exit("busy_periods: no stretch of terse or nginx on the proxy core")
total = sum(runs)
print(f"proxy thread on cpu {int(sys.argv[1])}: {len(runs)} stretches, {total:.0f} ms in all")
print("  stretch ms: p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f" %
      (percentile(runs, 50), percentile(runs, 90), percentile(runs, 99), percentile(runs, 99.9),
       runs[-1]))
for limit in (0.5, 1, 2, 4):
    longer = [r for r in runs if r >= limit]
    print(f"  {limit} ms or longer: {len(longer)}, {100 * sum(longer) / total:.1f}% of its time")

# The long stretches, and the quiet spell (the core idle) just before each.
long_runs = after_quiet = 0
quiet_spells = []
for i, (start, end, cpu, task, run) in enumerate(on_proxy):
    if task == "<idle>" and LONG_MS <= run < 1000:  # over a second: before the load began
        quiet_spells.append((start, end))
    if task.startswith(("terse", "nginx")) and run >= LONG_MS:
        long_runs += 1
        before = on_proxy[i - 1] if i > 0 else None
        if before and before[3] == "<idle>" and before[4] >= LONG_MS:
            after_quiet += 1
print(f"  of its {long_runs} stretches of {LONG_MS} ms or longer, {after_quiet} came right after "
      f"the core had been idle for {LONG_MS} ms or longer")

# During the quiet spells: how much of the time the other cores were idle too.
quiet_ms = sum(end - start for start, end in quiet_spells)
idle_elsewhere = 0.0
for start, end in quiet_spells:
    for s_start, s_end, cpu, task, run in elsewhere:
        if task == "<idle>" and s_end > start and s_start < end:
            idle_elsewhere += min(s_end, end) - max(s_start, start)
others = max(1, len({s[2] for s in elsewhere}))
if quiet_ms:
    print(f"  quiet spells of {LONG_MS} ms or longer: {len(quiet_spells)}, {quiet_ms:.0f} ms in all; "
          f"the other cores were idle for {100 * idle_elsewhere / quiet_ms / others:.0f}% of them")

busy = {}
for start, end, cpu, task, run in on_proxy:
    if task != "<idle>" and not task.startswith(("terse", "nginx")):
        total_ms, longest = busy.get(task, (0.0, 0.0))
        busy[task] = (total_ms + run, max(longest, run))
if busy:
    print("other tasks on the proxy core (ms in all, longest stretch):")
    for task, (total_ms, longest) in sorted(busy.items(), key=lambda kv: -kv[1][0])[:6]:
        print(f"  {task}: {total_ms:.1f}, {longest:.3f}")
