#!/usr/bin/env python3
"""Plots loss (and validation loss), learning rate, gradient norm and
throughput from one or more runs' metrics.jsonl into one PNG, to compare runs.

Usage: plot_metrics.py RUN_DIR_OR_METRICS [...] [--output metrics.png]
"""
import argparse
import json
import os
import sys


def load(path):
    if os.path.isdir(path):
        path = os.path.join(path, "metrics.jsonl")
    train, val = [], []
    for line in open(path):
        m = json.loads(line)
        (val if "val_loss" in m else train).append(m)
    return train, val


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("runs", nargs="+")
    p.add_argument("--output", default="metrics.png")
    a = p.parse_args()
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        sys.exit("plot_metrics: matplotlib missing (Debian package python3-matplotlib)")
    fig, axes = plt.subplots(2, 2, figsize=(11, 7))
    panels = [("loss", "loss"), ("lr", "learning rate"), ("grad_norm", "gradient norm (before clipping)"),
              ("tokens_per_s", "tokens/s")]
    for run in a.runs:
        train, val = load(run)
        label = os.path.basename(os.path.normpath(run if os.path.isdir(run) else os.path.dirname(run)))
        for ax, (key, title) in zip(axes.flat, panels):
            pts = [(m["step"], m[key]) for m in train if key in m]
            ax.plot([s for s, _ in pts], [v for _, v in pts], label=label)
            ax.set_title(title)
            ax.set_xlabel("step")
            ax.grid(True, alpha=0.3)
        if val:
            axes[0][0].plot([m["step"] for m in val], [m["val_loss"] for m in val], "o--", label=f"{label} (val)")
    axes[0][0].legend()
    fig.tight_layout()
    fig.savefig(a.output, dpi=100)
    print(f"plot_metrics: wrote {a.output}")


if __name__ == "__main__":
    main()
