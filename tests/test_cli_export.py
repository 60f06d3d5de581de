"""`edge-sync export` as a user meets it: one progress line per artifact, other tools quiet unless -v, options that
would do nothing refused with exit 2, and `--target all` writing what the exporters write one by one."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("onnxscript", reason="pip install 'edge-sync[export]'")

PROGRESS = re.compile(r"^exported (\w+) (fp32|fp16|int8) -> (\S+) \(\d+\.\d\d MB, \d+\.\d s\)$")
OWN = "edge-sync: warning: "  # edge-sync's own warnings (each shown once), not another tool's


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge_sync.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=600)


def foreign(stderr: str) -> list[str]:
    """stderr lines that are neither a progress line nor an edge-sync warning."""
    return [line for line in stderr.splitlines() if line and not PROGRESS.match(line) and not line.startswith(OWN)]


@pytest.mark.parametrize("args, flag", [
    (("--target", "tflite", "--precision", "int8", "--calib-method", "entropy"), "--calib-method"),
    (("--target", "openvino", "--precision", "int8", "--calib-method", "minmax"), "--calib-method"),
    (("--target", "onnx", "--precision", "fp16", "--calib-method", "minmax"), "--calib-method"),
    (("--target", "onnx", "--calib", "calib"), "--calib"),
    (("--target", "all", "--precision", "fp32", "--calib", "calib"), "--calib"),
    (("--target", "onnx", "--buckets", "50,250"), "--buckets"),
    (("--target", "openvino", "--precision", "int8", "--int8-stems", "int8"), "--int8-stems"),
    (("--target", "onnx", "--precision", "fp32", "--int8-stems", "int8"), "--int8-stems"),
    (("--target", "tflite", "--max-frames", "400"), "--max-frames"),
    (("--target", "tflite", "--min-frames", "2", "--opt-frames", "50"), "--min-frames/--opt-frames"),
])
def test_an_option_the_target_does_not_read_is_refused(tmp_path, args, flag):
    out = run("export", *args, "-o", "art", cwd=tmp_path)
    errors = [line for line in out.stderr.splitlines() if line.startswith("Error:")]
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert len(errors) == 1 and f"'{flag}'" in errors[0] and "does not apply to" in errors[0], out.stderr
    assert "it applies to: " in errors[0]
    assert not (tmp_path / "art").exists()  # refused before anything ran


def test_export_prints_one_line_per_artifact_and_nothing_from_other_tools(tmp_path, tiny_calib_path):
    out = run("export", "--target", "onnx", "--precision", "int8", "--calib", str(tiny_calib_path), "-o", "art",
              cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    lines = out.stderr.splitlines()
    assert foreign(out.stderr) == [] and len(lines) == 1, out.stderr
    target, precision, path = PROGRESS.match(lines[0]).groups()
    assert (target, precision, path) == ("onnx", "int8", "art/student.onnx-int8")
    assert (tmp_path / path / "manifest.json").is_file()
    assert "| art/student.onnx-int8 | onnx | int8 |" in out.stdout


def test_int8_stems_reaches_the_artifact(tmp_path, tiny_calib_path):
    out = run("export", "--target", "onnx", "--precision", "int8", "--calib", str(tiny_calib_path), "--int8-stems",
              "int8", "-o", "art", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    manifest = json.loads((tmp_path / "art" / "student.onnx-int8" / "manifest.json").read_text())
    assert manifest["quantization"]["stems"] == "int8"


def test_verbose_shows_the_tools_own_logs(tmp_path):
    out = run("-v", "export", "--target", "onnx", "-o", "art", "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert foreign(out.stderr), out.stderr  # the child's own logging and torch.onnx's lines come through
    assert sum(bool(PROGRESS.match(line)) for line in out.stderr.splitlines()) == 1
    row = json.loads(out.stdout)  # stdout stays the result alone
    assert row["target"] == "onnx" and row["bytes"] > 0 and row["seconds"] > 0 and row["peak_rss_mb"] > 100


@pytest.mark.slow
def test_all_int8_is_quiet_and_writes_what_each_exporter_writes(tmp_path, tiny_calib_path):
    from edge_sync.artifact import read_artifact
    from edge_sync.exporters.api import export, export_targets

    out = run("export", "--target", "all", "--precision", "int8", "--calib", str(tiny_calib_path), "-o", "all",
              cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert foreign(out.stderr) == [], out.stderr
    targets = export_targets("all")
    shown = [PROGRESS.match(line).groups() for line in out.stderr.splitlines() if PROGRESS.match(line)]
    assert sorted((t, p) for t, p, _ in shown) == sorted((t, "int8") for t in targets)  # in the order they finish
    alone = export("student", "all", "int8", tmp_path / "alone", calib=tiny_calib_path)  # one process, as before
    assert sorted(p.name for p in (tmp_path / "all").iterdir()) == sorted(p.name for p in alone)
    for path in alone:
        mine, ref = read_artifact(tmp_path / "all" / path.name).manifest, read_artifact(path).manifest
        assert sorted(mine["files"]) == sorted(ref["files"]), path.name
        assert mine.get("calibration", {}).get("id") == ref.get("calibration", {}).get("id"), path.name
        for name, entry in ref["files"].items():  # same graphs: sizes within a few percent (names, metadata)
            assert abs(mine["files"][name]["bytes"] - entry["bytes"]) <= 0.05 * entry["bytes"] + 64, (path.name, name)
