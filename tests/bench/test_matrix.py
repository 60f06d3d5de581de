"""Latency matrix: real timings in child processes, baselines in the same run, a status per row, reports."""
from __future__ import annotations

import json
import shutil

import pytest

pytest.importorskip("onnxruntime", reason="pip install 'edge-sync[onnxruntime]'")

from edge_sync._paths import BUNDLED_ARTIFACT, WEIGHTS_DIR  # noqa: E402
from edge_sync.bench import run_bench  # noqa: E402
from edge_sync.bench.measure import measure_baselines  # noqa: E402
from edge_sync.bench.report import bench_markdown  # noqa: E402
from edge_sync.cli import main  # noqa: E402


def test_artifact_rows_have_timings_memory_and_size():
    rows = run_bench([BUNDLED_ARTIFACT], [12, 30], [1, 2], repeat=2, warmup=1, baselines=False)
    assert [(r.frames, r.batch) for r in rows] == [(12, 1), (12, 2), (30, 1), (30, 2)]
    for r in rows:
        assert r.status == "ok", r.detail
        assert 0 < r.median_ms <= r.p90_ms and r.frames_per_s > 0 and r.real_time_factor > 0
        assert 20 < r.peak_rss_mb < 4000 and r.size_mb > 0.1 and r.load_s > 0
        assert r.backend == "onnxruntime"


def test_baselines_are_timed_and_ratios_use_them():
    base = measure_baselines([6], [1], repeat=1, warmup=0)
    assert {r.name for r in base} == {"pytorch teacher", "pytorch student", "original SyncNet S"}
    assert all(r.status == "ok" and r.median_ms > 0 for r in base)
    table = bench_markdown(base)
    assert "| original SyncNet S | pytorch |" in table and "| 1.0 |" in table  # the teacher against itself


def test_broken_and_parity_failing_artifacts_get_a_status(tmp_path):
    wrong = tmp_path / "student.onnx-fp32"
    shutil.copytree(BUNDLED_ARTIFACT, wrong)
    manifest = json.loads((wrong / "manifest.json").read_text())
    teacher_sha = json.loads((WEIGHTS_DIR / "teacher.json").read_text())["sha256"]
    # claims to come from the teacher (by name and weights hash); its outputs are not the teacher's: parity must fail
    manifest["source"].update(model="teacher", checkpoint_sha256=teacher_sha)
    (wrong / "manifest.json").write_text(json.dumps(manifest))
    rows = run_bench([tmp_path / "missing.onnx-fp32", wrong], [10], [1], repeat=1, warmup=0, baselines=False)
    assert rows[0].status == "failed" and "not an artifact directory" in rows[0].detail
    assert rows[1].status == "parity failed" and "failing elements" in rows[1].detail
    assert rows[1].median_ms > 0  # still timed


def test_cli_quick_writes_json_report_and_plot(tmp_path, capsys):
    out = tmp_path / "bench"
    main(["bench", str(BUNDLED_ARTIFACT), "--quick", "--no-baselines", "--json", str(out / "b.json"),
          "--report", str(out / "b.md"), "--plot", str(out / "b.png")])
    data = json.loads((out / "b.json").read_text())
    assert {r["frames"] for r in data["rows"]} == {25, 100} and data["settings"]["repeat"] == 3
    assert "| student.onnx-fp32 | onnx | fp32 | onnxruntime | 25 |" in (out / "b.md").read_text()
    assert (out / "b.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "frames/s" in capsys.readouterr().out
