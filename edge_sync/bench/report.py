"""The latency matrix as a Markdown table (ratios against the baselines of the same run) and as JSON (the plot is
:mod:`edge_sync.bench.plot`)."""
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


def read_json(path: Path) -> list[BenchRow]:
    """The rows of a bench JSON file (``bench -o``), e.g. to plot a past run again without timing anything."""
    derived = {"frames_per_s", "real_time_factor"}  # properties, recomputed from the stored fields
    rows = json.loads(path.read_text())["rows"]
    return [BenchRow(**{k: v for k, v in row.items() if k not in derived}) for row in rows]
