"""The `edge-sync` command as a user runs it: a real subprocess, real files, exit codes and stderr."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from edge_sync.models import io
from edge_sync.models.legacy import LegacySyncNetFCN, SyncNetS
from tests.artifact_helpers import edit_manifest, edited_copy, forge_model, set_contract


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge_sync.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300)


def test_help_lists_the_commands():
    out = run("--help")
    assert out.returncode == 0
    for command in ("info", "import-syncnet", "demo"):
        assert command in out.stdout


def test_info_json_reports_contract_and_backends():
    out = run("info", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["contract"]["max_offset"] == 15 and data["contract"]["video_fps"] == 25
    assert data["backends"]["torch"]["version"].startswith("2.13")


def test_import_syncnet_converts_a_public_checkpoint(tmp_path):
    original = SyncNetS().eval()
    torch.save(original.state_dict(), tmp_path / "syncnet_v2.model")
    out = run("import-syncnet", str(tmp_path / "syncnet_v2.model"), "-o", str(tmp_path / "legacy.pt"))
    assert out.returncode == 0, out.stderr
    assert "legacy SyncNet S" in out.stdout
    model = io.load(tmp_path / "legacy.pt")
    assert isinstance(model, LegacySyncNetFCN)
    frames = torch.rand(1, 3, 5, 224, 224) * 255
    with torch.no_grad():
        torch.testing.assert_close(model.embed_video(frames)[0, :, 0], original.forward_lip(frames)[0])


@pytest.mark.parametrize("args, message", [
    (("import-syncnet", "/nonexistent/syncnet_v2.model", "-o", "x.pt"), "legacy checkpoint not found"),
    (("demo", "--offset", "40"), "within +-15"),
])
def test_errors_are_one_line_and_nonzero(tmp_path, args, message):
    out = run(*args, cwd=tmp_path)
    assert out.returncode != 0
    lines = [line for line in out.stderr.strip().splitlines() if line]
    assert len(lines) == 1 and message in lines[0], out.stderr
    assert "Traceback" not in out.stderr


def test_bad_checkpoint_is_refused_without_traceback(tmp_path):
    (tmp_path / "junk.model").write_bytes(b"junk")
    out = run("import-syncnet", str(tmp_path / "junk.model"), "-o", str(tmp_path / "o.pt"))
    assert out.returncode == 1 and "not a readable torch checkpoint" in out.stderr
    assert not (tmp_path / "o.pt").exists()


BAD_ARTIFACTS = {
    "files table emptied": (lambda art: edit_manifest(art, lambda m: m.update(files={})), "files"),
    "entry outside": (lambda art: edit_manifest(art, lambda m: m["entry"].update(model="/etc/passwd")),
                      "entry.model"),
    "format_version a string": (lambda art: edit_manifest(art, lambda m: m.update(format_version="1")),
                                "format_version"),
    "max_offset against the model": (lambda art: edit_manifest(art, set_contract("max_offset", 10)),
                                     "contract.max_offset"),
    "garbage model, matching hash": (lambda art: forge_model(art, b"\x08\x07 no model"), "onnxruntime cannot load"),
}


@pytest.mark.parametrize("case", BAD_ARTIFACTS, ids=list(BAD_ARTIFACTS))
def test_a_bad_artifact_is_one_line_without_traceback(tmp_path, case):
    tamper, message = BAD_ARTIFACTS[case]
    art = tamper(edited_copy(tmp_path / "art"))
    out = run("sync", str(tmp_path / "clip.mp4"), "--artifact", str(art))
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 1 and len(lines) == 1 and message in lines[0], out.stderr
    assert "Traceback" not in out.stderr + out.stdout


def test_demo_runs_the_whole_pipeline(tmp_path):
    out = run("demo", "--offset", "2", "--workdir", str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert "planted:   +2 frames" in out.stdout and "detected:" in out.stdout
    assert (tmp_path / "talking_offset+2.mp4").stat().st_size > 10_000


def test_info_lists_export_targets_and_runtime_backends(capsys):
    import json as _json

    from edge_sync.cli import main

    main(["info", "--json"])
    data = _json.loads(capsys.readouterr().out)
    assert set(data["export_targets"]) == {"onnx", "openvino", "coreml", "tflite", "tensorrt"}
    backends = data["runtime_backends"]
    assert list(backends)[0] == "tensorrt" and "tensorrt" in backends["onnxruntime"]["targets"]
    assert backends["coreml"]["platforms"] == ["darwin"]
    # running a .tflite artifact needs the interpreter only: the runtime extra, not the exporter's
    assert data["backends"]["ai-edge-litert"]["extra"] == "litert" == backends["litert"]["extra"]


def test_version_prints_name_and_version():
    from edge_sync import __version__

    out = run("--version")
    assert out.returncode == 0, out.stderr
    assert out.stdout == f"edge-sync {__version__}\n"


@pytest.mark.parametrize("args, message", [
    (("synk",), "No such command 'synk'"),
    (("sync",), "Missing argument"),
    (("sync", "--bogus", "x.mp4"), "No such option: --bogus"),
])
def test_usage_errors_are_short_and_exit_2(args, message):
    out = run(*args)
    assert out.returncode == 2, out.stderr
    assert message in out.stderr and "Usage: edge-sync" in out.stderr
    assert "Traceback" not in out.stderr + out.stdout and len(out.stderr.strip().splitlines()) <= 5, out.stderr


def test_bare_command_prints_help_without_traceback():
    out = run()
    assert out.returncode == 2  # typer's convention for a group called without a command: help, exit 2
    text = out.stdout + out.stderr
    assert "Usage: edge-sync" in text and "sync" in text and "Traceback" not in text


@pytest.mark.parametrize("args, extra", [
    (("export",), "export"),
    (("train", "-o", "x.pt"), "train"),
    (("bench", "art"), "export"),  # the PyTorch baselines; the message offers --no-baselines
])
def test_a_command_that_needs_torch_names_the_extra(tmp_path, args, extra):
    # a runtime-only install: `import torch` fails as if torch were absent
    code = f"import sys; sys.modules['torch'] = None; from edge_sync.cli import main; main({list(args)!r})"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert out.returncode == 1, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and f"pip install 'edge-sync[{extra}]'" in lines[0], out.stderr
