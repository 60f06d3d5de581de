"""Artifact integrity: a tampered, incomplete or malformed artifact is refused before any backend opens a file,
with one line naming the field or file, and every artifact edge-sync writes still loads.

The artifacts are real: copies of the bundled student ONNX, tampered with as issue 17 found possible.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import edge_sync
from edge_sync._paths import BUNDLED_ARTIFACT
from edge_sync.artifact import ArtifactError, read_artifact, write_artifact
from edge_sync.artifact_schema import MANIFEST_SCHEMA
from edge_sync.spec import ModelContract, example_inputs
from tests.artifact_helpers import edited_copy

MODEL = "model.onnx"


def refused(path: Path, *words: str) -> str:
    """The one-line error that loading ``path`` gives; it must contain ``words``."""
    with pytest.raises(ArtifactError) as info:
        edge_sync.load(path)
    message = str(info.value)
    assert "\n" not in message and all(w in message for w in words), message
    return message


def tampered_model(folder: Path) -> Path:
    """A valid ONNX model that is not the artifact's: the bundled one with its bytes changed in metadata."""
    folder.mkdir(parents=True, exist_ok=True)
    data = (BUNDLED_ARTIFACT / MODEL).read_bytes()
    at = data.index(b"pytorch")  # producer_name: a string field, so the model stays loadable
    (folder / MODEL).write_bytes(data[:at] + b"PYTORCH" + data[at + 7:])
    return folder / MODEL


def fresh_artifact(out: Path) -> Path:
    """An artifact written by today's write_artifact around the bundled student ONNX."""
    manifest = json.loads((BUNDLED_ARTIFACT / "manifest.json").read_text())
    keep = {k: manifest[k] for k in ("contract", "time_range", "source")}

    def files(tmp: Path) -> dict:
        shutil.copyfile(BUNDLED_ARTIFACT / MODEL, tmp / MODEL)
        return {"entry": {"model": MODEL}}

    return write_artifact(out, "student", "onnx", "fp32", files, keep)


# --- what must keep loading ---------------------------------------------------------------------------------
def test_bundled_and_freshly_written_artifacts_load_and_agree(tmp_path):
    audio, video = example_inputs(ModelContract(), 30)
    bundled = edge_sync.load(BUNDLED_ARTIFACT).run(audio, video)
    fresh = edge_sync.load(fresh_artifact(tmp_path)).run(audio, video)
    np.testing.assert_allclose(fresh.frame_probs, bundled.frame_probs, atol=1e-6)


def test_the_schema_is_valid_json_schema():
    from jsonschema import Draft202012Validator

    Draft202012Validator.check_schema(MANIFEST_SCHEMA)


def test_file_manager_metadata_beside_the_files_is_tolerated(tmp_path):
    art = edited_copy(tmp_path / "a")
    (art / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    assert read_artifact(art).manifest["files"].keys() == {MODEL}


# --- files a backend would read unchecked -------------------------------------------------------------------
@pytest.mark.parametrize("change", [lambda m: m.update(files={}), lambda m: m.pop("files")],
                         ids=["emptied", "removed"])
def test_a_missing_or_empty_files_table_is_refused(tmp_path, change):
    art = edited_copy(tmp_path / "a", change)
    shutil.copyfile(tampered_model(tmp_path / "evil"), art / MODEL)  # what an empty table used to let through
    refused(art, "manifest.json: files")


@pytest.mark.parametrize("where", ["absolute", "dotdot"])
def test_an_entry_outside_the_artifact_is_refused(tmp_path, where):
    evil = tampered_model(tmp_path / "evil")
    rel = str(evil) if where == "absolute" else f"../evil/{MODEL}"
    art = edited_copy(tmp_path / "a", lambda m: m["entry"].update(model=rel))
    refused(art, "entry.model", "inside the artifact directory")


def test_a_symlink_out_of_the_artifact_is_refused_even_with_a_matching_hash(tmp_path):
    outside = tmp_path / "elsewhere" / MODEL
    outside.parent.mkdir()
    shutil.copyfile(BUNDLED_ARTIFACT / MODEL, outside)  # same bytes: the sha256 check alone would pass
    art = edited_copy(tmp_path / "a")
    (art / MODEL).unlink()
    (art / MODEL).symlink_to(outside)
    refused(art, "entry.model", "leads outside")


def test_an_entry_not_in_the_files_table_is_refused(tmp_path):
    art = edited_copy(tmp_path / "a", lambda m: m["entry"].update(model="other.onnx"))
    shutil.copyfile(tampered_model(tmp_path / "evil"), art / "other.onnx")
    refused(art, "entry.model", "'other.onnx'", "not in the manifest's files table")


def test_a_files_table_path_outside_the_artifact_is_refused(tmp_path):
    def point_out(m):
        m["files"]["../outside.onnx"] = m["files"][MODEL]

    refused(edited_copy(tmp_path / "a", point_out), 'files["../outside.onnx"]')


def test_a_modified_model_with_its_files_table_intact_is_refused(tmp_path):
    art = edited_copy(tmp_path / "a")
    shutil.copyfile(tampered_model(tmp_path / "evil"), art / MODEL)
    refused(art, MODEL, "sha256")


def test_a_resized_model_is_refused_before_hashing(tmp_path):
    art = edited_copy(tmp_path / "a")
    with open(art / MODEL, "ab") as f:
        f.write(b"\x00" * 16)
    refused(art, MODEL, "bytes where the manifest lists")


@pytest.mark.parametrize("name", ["model.onnx.data", "sub/weights.bin", "model.plan"])
def test_an_unlisted_file_a_backend_could_read_is_refused(tmp_path, name):
    # ONNX external data and OpenVINO's .bin are found by the backend, not named by the manifest; a TensorRT
    # engine is exempt only in tensorrt artifacts, where it is built on the device
    art = edited_copy(tmp_path / "a")
    (art / name).parent.mkdir(exist_ok=True)
    (art / name).write_bytes(b"weights")
    refused(art, name, "not in the manifest's files table")


def test_a_symlinked_folder_out_of_the_artifact_is_refused(tmp_path):
    art = edited_copy(tmp_path / "a")
    (tmp_path / "elsewhere").mkdir()
    (art / "data").symlink_to(tmp_path / "elsewhere")
    refused(art, "'data'", "leads outside")


def test_verify_false_still_refuses_entries_outside(tmp_path):
    art = edited_copy(tmp_path / "a", lambda m: m["entry"].update(model="/etc/passwd"))
    with pytest.raises(ArtifactError, match="entry.model"):
        read_artifact(art, verify=False)


# --- malformed manifests: one line naming the field ---------------------------------------------------------
MALFORMED = {
    "sha256 missing": (lambda m: m["files"][MODEL].pop("sha256"), 'files["model.onnx"].sha256 is missing'),
    "sha256 not hex": (lambda m: m["files"][MODEL].update(sha256="abc"), 'files["model.onnx"].sha256'),
    "bytes a string": (lambda m: m["files"][MODEL].update(bytes="769214"), 'files["model.onnx"].bytes'),
    "format_version a string": (lambda m: m.update(format_version="1"), "format_version must be an integer"),
    "receptive field negative": (lambda m: m.update(receptive_field_frames=-3), "receptive_field_frames"),
    "receptive field huge": (lambda m: m.update(receptive_field_frames=10 ** 9), "receptive_field_frames"),
    "audio_input unknown": (lambda m: m["contract"].update(audio_input="mp3"), "contract.audio_input"),
    "max_offset a string": (lambda m: m["contract"].update(max_offset="15"), "contract.max_offset"),
    "max_offset negative": (lambda m: m["contract"].update(max_offset=-15), "contract.max_offset"),
    "embeddings not a flag": (lambda m: m["contract"].update(embeddings="yes"), "contract.embeddings"),
    "preprocessing unknown": (lambda m: m["contract"]["video_preprocessing"].update(name="face9"),
                              "contract.video_preprocessing.name"),
    "contract missing": (lambda m: m.pop("contract"), "contract is missing"),
    "entry without model": (lambda m: m.update(entry={}), "entry.model is missing"),
    "entry a number": (lambda m: m["entry"].update(model=3), "entry.model"),
    "target unknown": (lambda m: m.update(target="tensorflow"), "target"),
    "max_frames zero": (lambda m: m["time_range"].update(max_frames=0), "time_range.max_frames"),
    "buckets not a list": (lambda m: m["time_range"].update(buckets=50), "time_range.buckets"),
}


@pytest.mark.parametrize("case", MALFORMED, ids=list(MALFORMED))
def test_a_malformed_field_is_named_in_one_line(tmp_path, case):
    change, field = MALFORMED[case]
    message = refused(edited_copy(tmp_path / "a", change), field)
    assert "re-export" in message and len(message) < 400, message


def test_a_manifest_that_is_no_json_object_is_refused(tmp_path):
    art = edited_copy(tmp_path / "a")
    (art / "manifest.json").write_text("[" * 100_000 + "]" * 100_000)
    refused(art, "manifest.json")
    (art / "manifest.json").write_text('{"format": "edge-sync-artifact", "format_version": 1, ')
    refused(art, "not valid JSON")


def test_an_export_killed_midway_leaves_nothing_the_next_export_keeps(tmp_path):
    """Temp folders of writers that are gone are swept by the next write; a live writer's folder is left alone."""
    import os
    import subprocess
    import sys
    import time as _time

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(gone.stdout)
    abandoned = tmp_path / f".student.onnx-fp32.{dead_pid}.x1y2"
    (abandoned / "partial").mkdir(parents=True)
    old_style = tmp_path / ".student.onnx-fp32.k3j4"  # written before temp names carried a pid
    old_style.mkdir()
    past = _time.time() - 7200
    os.utime(old_style, (past, past))
    live = tmp_path / f".student.onnx-fp32.{os.getpid()}.live"  # this process: a writer still at work
    live.mkdir()
    other = tmp_path / f".other.onnx-fp32.{dead_pid}.z"  # another artifact's: not this write's business
    other.mkdir()
    art = fresh_artifact(tmp_path)
    assert read_artifact(art).target == "onnx"
    assert not abandoned.exists() and not old_style.exists()
    assert live.exists() and other.exists()
