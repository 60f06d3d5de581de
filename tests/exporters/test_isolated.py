"""Export in a child process per target: the job crosses the process boundary intact, a failure comes back as one
line with its log kept, and the parent stays free of the toolchains."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edge_sync.exporters.common import TimeRange
from edge_sync.exporters.isolated import Done, ExportFailedError, export_isolated, progress_line
from edge_sync.exporters.job import ExportJob, JobResult


def test_a_job_survives_json():
    job = ExportJob("student", "tensorrt", "int8", "out", "n",
                    {"calib": Path("/c"), "time_range": TimeRange(2, 50, 400), "buckets": (50, 250)}, True)
    back = ExportJob.from_json(job.to_json())
    assert back.options == {"calib": "/c", "time_range": TimeRange(2, 50, 400), "buckets": (50, 250)}
    assert (back.model, back.target, back.precision, back.out_dir, back.name, back.verbose) == (
        "student", "tensorrt", "int8", "out", "n", True)


def test_a_child_that_dies_without_a_result_reads_as_none(tmp_path):
    assert JobResult.read(tmp_path / "missing.json") is None
    (tmp_path / "half.json").write_text('{"path": ')
    assert JobResult.read(tmp_path / "half.json") is None


def test_the_progress_line_says_target_precision_path_size_seconds():
    line = progress_line(Done("onnx", "int8", Path("a/student.onnx-int8"), 432_100, 21.44, 700.0))
    assert line == "exported onnx int8 -> a/student.onnx-int8 (0.43 MB, 21.4 s)"


def test_a_failing_target_is_one_line_naming_its_kept_log(tmp_path):
    lines: list[str] = []
    with pytest.raises(ExportFailedError) as exc:
        export_isolated(str(tmp_path / "no-such.pt"), ["onnx"], "fp32", tmp_path / "out", say=lines.append)
    message = str(exc.value)
    assert message.startswith("onnx fp32 export failed: ") and "\n" not in message and lines == []
    log = Path(message.rsplit("(full log: ", 1)[1].rstrip(")"))
    assert log.is_file() and "Traceback" in log.read_text()  # the details are there, not on the user's terminal
    log.unlink()


def test_the_parent_imports_no_toolchain():
    code = ("import sys; import edge_sync.cli, edge_sync.exporters.isolated; "
            "print(sorted(m for m in ('torch', 'onnx', 'onnxruntime', 'openvino', 'coremltools', 'tensorflow', "
            "'litert_torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_targets_that_share_work_run_in_one_lane_in_order():
    from edge_sync.exporters.isolated import lanes

    everything = ["onnx", "openvino", "coreml", "tflite", "tensorrt"]
    assert lanes(everything, 2) == [["onnx", "openvino", "tensorrt"], ["coreml", "tflite"]]
    assert lanes(everything, 1) == [everything[:2] + ["tensorrt", "coreml", "tflite"]]
    assert lanes(["tflite"], 4) == [["tflite"]]
