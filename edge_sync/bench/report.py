"""The latency matrix as a Markdown table (ratios against the baselines of the same run) and as plots."""
from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

from edge_sync.bench.measure import BenchRow

TEACHER, ORIGINAL = "pytorch teacher", "original SyncNet S"


def _baseline_fps(rows: list[BenchRow], name: str) -> dict[int, float]:
    """frames/s of a baseline per clip length (batch 1)."""
    return {r.frames: r.frames_per_s for r in rows
            if r.name == name and r.batch == 1 and r.status == "ok" and r.precision.startswith("fp32")}


def _f(x: float, spec: str) -> str:
    return "-" if x != x else format(x, spec)


def bench_markdown(rows: list[BenchRow], machine: str = "") -> str:
    teacher, original = _baseline_fps(rows, TEACHER), _baseline_fps(rows, ORIGINAL)
    head = ("| model | target | precision | backend | T | batch | median ms | p90 ms | frames/s | real-time factor "
            "| x teacher | x original | peak RSS MB | load s | size MB | status |\n"
            "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    lines = [f"Machine: {machine or platform_summary()}", "", head]
    for r in rows:
        xt = r.frames_per_s / teacher[r.frames] if r.frames in teacher else float("nan")
        xo = r.frames_per_s / original[r.frames] if r.frames in original else float("nan")
        status = r.status + (f" ({r.detail})" if r.detail else "")
        lines.append(f"| {r.name} | {r.target} | {r.precision} | {r.backend} | {r.frames} | {r.batch} "
                     f"| {_f(r.median_ms, '.2f')} | {_f(r.p90_ms, '.2f')} | {_f(r.frames_per_s, ',.0f')} "
                     f"| {_f(r.real_time_factor, '.5f')} | {_f(xt, '.1f')} | {_f(xo, '.0f')} "
                     f"| {_f(r.peak_rss_mb, '.0f')} | {_f(r.load_s, '.2f')} | {_f(r.size_mb, '.2f')} | {status} |")
    return "\n".join(lines)


def platform_summary() -> str:
    import os

    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"


def write_json(rows: list[BenchRow], path: Path, settings: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"machine": platform_summary(), "settings": settings,
                                "rows": [r.to_dict() for r in rows]}, indent=2, default=float))


def plot(rows: list[BenchRow], path: Path, accuracy: dict[str, float] | None = None) -> None:
    """Left: latency vs clip length per model (batch 1). Right: size vs frames/s at the longest common length,
    labelled with task accuracy where parity measured it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in rows if r.status in ("ok", "parity failed") and r.batch == 1]
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    for name in dict.fromkeys(r.name for r in ok):
        pts = sorted((r.frames, r.median_ms) for r in ok if r.name == name)
        left.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
    left.set(xlabel="clip length (frames)", ylabel="median latency (ms, batch 1)", yscale="log",
             title="Latency vs clip length")
    left.legend(fontsize=7)
    longest = max((r.frames for r in ok), default=0)
    for r in (r for r in ok if r.frames == longest and r.size_mb == r.size_mb):
        right.scatter(r.size_mb, r.frames_per_s, s=60)
        label = f"{r.target}-{r.precision}"
        if accuracy and r.name in accuracy:
            label += f" ({accuracy[r.name]:.0f}%)"
        right.annotate(label, (r.size_mb, r.frames_per_s), fontsize=7, xytext=(4, 4), textcoords="offset points")
    right.set(xlabel="artifact size (MB)", ylabel=f"frames/s at T={longest}", yscale="log",
              title="Size / speed (clip accuracy in brackets)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
