#!/usr/bin/env python3
"""Plots an `agentd-bench soak` run: agentd's RSS, open descriptors, the size of its data dir
and the clients' p99 turn latency over time, one panel each, every SIGKILL + restart marked as
a vertical line.

Reads samples.csv and kills.csv from the run's output directory (`--out DIR`) and writes a
1200x800 PNG.

    python3 -m venv .venv && .venv/bin/pip install -r crates/agentd-bench/soak/requirements.txt
    .venv/bin/python crates/agentd-bench/soak/plot.py RUN_DIR docs/soak/soak.png
"""

import csv
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def number(text):
    return float(text) if text not in ("", None) else float("nan")


def main(argv):
    if len(argv) != 3:
        print(f"usage: {argv[0]} RUN_DIR OUT.png", file=sys.stderr)
        return 2
    run, out = Path(argv[1]), Path(argv[2])
    samples = read_rows(run / "samples.csv")
    kills_path = run / "kills.csv"
    kills = read_rows(kills_path) if kills_path.exists() else []
    if not samples:
        print(f"{run / 'samples.csv'}: no samples", file=sys.stderr)
        return 1

    minutes = [number(s["t_s"]) / 60 for s in samples]
    panels = [
        ("RSS (MB)", [number(s["rss_kb"]) / 1024 for s in samples]),
        ("open fds", [number(s["fds"]) for s in samples]),
        ("data dir (MB)", [number(s.get("data_kb")) / 1024 for s in samples]),
        ("p99 turn latency (ms)", [number(s["p99_ms"]) for s in samples]),
    ]
    fig, axes = plt.subplots(len(panels), 1, sharex=True, figsize=(12, 8), dpi=100)
    for axis, (label, values) in zip(axes, panels):
        axis.plot(minutes, values, linewidth=1.2)
        axis.set_ylabel(label)
        axis.grid(True, alpha=0.3)
        finite = [v for v in values if v == v]
        axis.set_ylim(0, max(finite, default=1) * 1.15 or 1)
        for i, kill in enumerate(kills):
            axis.axvline(
                number(kill["t_s"]) / 60,
                color="red",
                linestyle="--",
                linewidth=1,
                label="SIGKILL + restart" if i == 0 else None,
            )
    if kills:
        axes[0].legend(loc="lower right")
    axes[-1].set_xlabel("minutes since start")
    turns = sum(int(s["turns"]) for s in samples)
    failures = sum(int(s["failures"]) for s in samples)
    cut = sum(int(s["cut"]) for s in samples)
    fig.suptitle(
        f"agentd soak: {turns} turns, {len(kills)} kills, {failures} failures, "
        f"{cut} requests cut by a kill"
    )
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
