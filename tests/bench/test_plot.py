"""The latency plot: a file, one colour and marker per artifact in both panels, a real-time line, the backend in
the labels, the legend outside the data, clip accuracy only where given."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")

from matplotlib.colors import to_rgba  # noqa: E402

from edge_sync.bench.measure import BenchRow  # noqa: E402
from edge_sync.bench.plot import clip_accuracy, figure, plot, series_styles  # noqa: E402
from edge_sync.bench.report import read_json, write_json  # noqa: E402

LENGTHS = (25, 100, 250)


def _rows(series: int = 12) -> list[BenchRow]:
    """``series`` artifacts (more than matplotlib's 10 default colours), each at three lengths and two batches; the
    last is a TensorRT-ready graph timed on onnxruntime; plus a CoreML row skipped on this OS."""
    rows = []
    for i in range(series):
        target, backend = ("tensorrt", "onnxruntime") if i == series - 1 else ("onnx", "onnxruntime")
        for t in LENGTHS:
            for b in (1, 8):
                rows.append(BenchRow(f"student-{i}.{target}-fp32", target, "fp32", backend, t, b,
                                     median_ms=(1 + i) * t * b / 10, size_mb=0.2 * (i + 1)))
    rows.append(BenchRow("student.coreml-fp32", "coreml", "fp32", "auto", 25, 1, status="skipped"))
    return rows


def _series(fig) -> tuple[dict[str, object], dict[str, object]]:
    left, right = fig.axes
    lines = {ln.get_gid(): ln for ln in left.get_lines() if ln.get_gid()}
    points = {c.get_gid(): c for c in right.collections if c.get_gid()}
    return lines, points


def test_plot_writes_an_image(tmp_path: Path):
    out = tmp_path / "plots" / "bench.png"
    plot(_rows(), out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_each_artifact_keeps_one_style_across_panels_and_no_two_share_one():
    rows = _rows()
    fig = figure(rows)
    lines, points = _series(fig)
    names = list(dict.fromkeys(r.name for r in rows if r.status == "ok"))
    assert set(lines) == set(points) == set(names)  # the skipped artifact has no time to plot
    for name in names:
        assert to_rgba(lines[name].get_color()) == tuple(points[name].get_facecolor()[0])
    styles = {(to_rgba(ln.get_color()), ln.get_marker()) for ln in lines.values()}
    assert len(styles) == len(names)  # 12 series, no repeats
    assert len({s[0] for s in styles}) == len(names)  # 20 colours before any repeats
    assert series_styles(names) == series_styles(names + names[:3])  # stable: first appearance decides


def test_styles_stay_distinct_past_the_palette():
    styles = series_styles([f"a{i}" for i in range(45)])
    assert len(set(styles.values())) == 45  # colours come round after 20; colour + marker never does here


def test_real_time_backend_labels_and_legend_outside_the_data():
    fig = figure(_rows())
    left, right = fig.axes
    real_time = [ln for ln in left.get_lines() if ln.get_label().startswith("real time")]
    assert len(real_time) == 1 and list(real_time[0].get_ydata()) == [t * 40 for t in LENGTHS]
    assert any(list(ln.get_ydata()) == [25, 25] for ln in right.get_lines())  # 25 frames/s
    assert left.get_legend() is None and right.get_legend() is None and len(fig.legends) == 1
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "student-11.tensorrt-fp32 [onnxruntime]" in labels
    fig.canvas.draw()
    box = fig.legends[0].get_window_extent()
    assert not any(box.overlaps(ax.get_window_extent()) for ax in fig.axes)
    assert "accuracy" not in right.get_title()  # nothing measured, nothing promised


def test_clip_accuracy_is_shown_where_given():
    fig = figure(_rows(3), accuracy={"student-0.onnx-fp32": 99.5})
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "student-0.onnx-fp32 [onnxruntime], clip acc. 100%" in labels
    assert "clip accuracy" in fig.axes[1].get_title()


def test_a_past_run_plots_again_from_its_json(tmp_path: Path):
    rows = _rows(3)
    write_json(rows, tmp_path / "b.json", {})
    again = read_json(tmp_path / "b.json")
    assert [(r.name, r.frames, r.batch, r.status, r.backend) for r in again] == [
        (r.name, r.frames, r.batch, r.status, r.backend) for r in rows]
    assert [r.median_ms for r in again[:18]] == [r.median_ms for r in rows[:18]]
    plot(again, tmp_path / "b.png")
    assert (tmp_path / "b.png").stat().st_size > 10_000


def test_clip_accuracy_comes_from_a_parity_run(tmp_path: Path):
    """`bench --parity P.json`: accuracy per artifact where the parity run measured it (not on random inputs)."""
    results = [{"artifact": "out/artifacts/student.onnx-int8", "task": {"accuracy": 99.0}},
               {"artifact": "out/artifacts/student.coreml-fp32", "task": {}, "skipped": "needs macOS"}]
    (tmp_path / "p.json").write_text(json.dumps({"results": results}))
    assert clip_accuracy(tmp_path / "p.json") == {"student.onnx-int8": 99.0}
