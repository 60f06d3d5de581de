"""The latency matrix as a figure: latency vs clip length, and size vs speed, one colour and marker per artifact in
both panels, with the real-time limit drawn and the legend outside the data."""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from edge_sync.bench.measure import BenchRow
from edge_sync.spec import FRAME_MS, VIDEO_FPS

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PLOTTED = ("ok", "parity failed")  # rows with a time; failed and skipped ones have none
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "*")
PALETTE = "tab20"  # 20 qualitative colours; past 20 series the marker still tells them apart


def series_styles(names: list[str]) -> dict[str, tuple[tuple[float, ...], str]]:
    """(colour, marker) per series name, in order of first appearance: the same name gets the same style in every
    panel, and no two of the first ``20 * len(MARKERS)`` series share both colour and marker."""
    from matplotlib import colormaps

    colours = colormaps[PALETTE].colors
    n = len(colours)
    # the marker varies with the series and moves one step each time the colours come round again
    return {name: (tuple(colours[i % n]), MARKERS[(i + i // n) % len(MARKERS)])
            for i, name in enumerate(dict.fromkeys(names))}


def series_key(row: BenchRow) -> str:
    """What one line is: an artifact (its name carries the precision) or a baseline at one precision."""
    return row.name if row.precision in row.name else f"{row.name} {row.precision}"


def series_label(row: BenchRow, accuracy: dict[str, float]) -> str:
    """The series and the backend it ran on (a TensorRT-ready graph timed on onnxruntime says so; a GPU's model
    name is left out), plus its clip accuracy where one was given."""
    label = f"{series_key(row)} [{row.backend.split(' (')[0]}]"
    if row.name in accuracy:
        label += f", clip acc. {accuracy[row.name]:.0f}%"
    return label


def clip_accuracy(parity_json: Path) -> dict[str, float]:
    """Clip accuracy (%) per artifact directory name from a parity run's JSON (``parity -o``), where it ran on
    data; the bench's own quick parity check runs on random inputs and measures none."""
    results = json.loads(parity_json.read_text())["results"]
    return {Path(r["artifact"]).name: float(r["task"]["accuracy"]) for r in results
            if (r.get("task") or {}).get("accuracy") is not None}


def figure(rows: list[BenchRow], accuracy: dict[str, float] | None = None) -> Figure:
    """Left: median latency vs clip length (batch 1) with the real-time line (40 ms a frame). Right: artifact size
    vs frames/s at the longest length, with 25 frames/s marked. ``accuracy`` (clip accuracy in % per series name,
    see :func:`clip_accuracy`) is shown in the legend, and the title promises it only then."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in rows if r.status in PLOTTED and r.batch == 1]
    acc = accuracy or {}
    styles = series_styles([series_key(r) for r in ok])
    fig, (left, right) = plt.subplots(1, 2, figsize=(14, 5.5), layout="constrained")
    lengths = sorted({r.frames for r in ok})
    for name, (colour, marker) in styles.items():
        mine = [r for r in ok if series_key(r) == name]
        pts = sorted((r.frames, r.median_ms) for r in mine)
        left.plot([p[0] for p in pts], [p[1] for p in pts], color=colour, marker=marker,
                  label=series_label(mine[0], acc), gid=name)
    if lengths:
        left.plot(lengths, [t * FRAME_MS for t in lengths], color="black", linestyle="--", linewidth=1,
                  label=f"real time ({FRAME_MS:.0f} ms a frame): below is faster")
    left.set(xlabel="clip length (frames)", ylabel="median latency (ms, batch 1)", yscale="log",
             title="Latency vs clip length")
    longest = max((r.frames for r in ok), default=0)
    for r in ok:
        if r.frames == longest and r.size_mb == r.size_mb:
            colour, marker = styles[series_key(r)]
            right.scatter(r.size_mb, r.frames_per_s, s=60, color=colour, marker=marker, gid=series_key(r))
    right.axhline(VIDEO_FPS, color="black", linestyle="--", linewidth=1)
    right.annotate(f"real time ({VIDEO_FPS} frames/s): above is faster", (0.01, VIDEO_FPS), fontsize=7,
                   xycoords=("axes fraction", "data"), xytext=(0, 3), textcoords="offset points")
    right.set(xlabel="artifact size (MB)", ylabel=f"frames/s at T={longest} (batch 1)", yscale="log",
              title="Size vs speed" + (" (clip accuracy in the legend)" if acc else ""))
    fig.legend(*left.get_legend_handles_labels(), loc="outside right upper", fontsize=7)
    return fig


def plot(rows: list[BenchRow], path: Path, accuracy: dict[str, float] | None = None) -> None:
    """Write :func:`figure` as an image (the format follows the suffix: .png, .svg, .pdf)."""
    import matplotlib.pyplot as plt

    fig = figure(rows, accuracy)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
