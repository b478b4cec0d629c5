#!/usr/bin/python3
"""Markdown tables from `terse eval --json` files, for bench/RESULTS.md and the README.

    bench/quality/table.py before.json after.json [--method terse --face chat]

One row per family and rate; for each file, the retention that matters for the family (the
answer, or demonstration answers for fewshot_math), numbers and names kept, and the achieved
rate.
"""
import argparse
import json


def cell(row, key):
    v = row.get(key)
    return "-" if v is None else f"{v:.2f}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("files", nargs="+")
    ap.add_argument("--method", default="terse")
    ap.add_argument("--face", default="chat")
    args = ap.parse_args()
    runs = []
    for path in args.files:
        with open(path, encoding="utf-8") as f:
            rows = json.load(f)["rows"]
        runs.append({(r["family"], r["rate"]): r for r in rows
                     if r["method"] == args.method and r["face"] == args.face})
    keys = sorted({k for run in runs for k in run}, key=lambda k: (k[0], -k[1]))
    head = ["family", "rate"]
    for path in args.files:
        name = path.rsplit("/", 1)[-1].removesuffix(".json")
        head += [f"{name}: kept", "numbers", "names", "achieved"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for family, rate in keys:
        line = [family, f"{rate:g}"]
        for run in runs:
            r = run.get((family, rate))
            if r is None:
                line += ["-"] * 4
                continue
            key = "demo_answers_kept" if family == "fewshot_math" else "answer_kept"
            line += [cell(r, key), cell(r, "numbers_kept"), cell(r, "entities_kept"),
                     f"{r['achieved_rate']:.3f}"]
        print("| " + " | ".join(line) + " |")


if __name__ == "__main__":
    main()
