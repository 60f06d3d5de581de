"""edge_sync._paths: where bundled things live, and paths a manifest can carry to another machine."""
from __future__ import annotations

from edge_sync._paths import BUNDLED_CHECKPOINTS, WEIGHTS_DIR, bundled_checkpoint_with_sha, portable_path


def test_portable_path_is_relative_inside_the_working_directory_and_untouched_elsewhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert portable_path(tmp_path / "runs" / "student.pt") == "runs/student.pt"
    assert portable_path("runs/student.pt") == "runs/student.pt"
    assert portable_path("/elsewhere/student.pt") == "/elsewhere/student.pt"
    assert portable_path("student") == "student"


def test_each_bundled_checkpoint_is_found_by_the_hash_its_sidecar_records():
    import json

    for name, file in BUNDLED_CHECKPOINTS.items():
        sidecar = (WEIGHTS_DIR / file).with_suffix(".json")
        if sidecar.is_file():
            assert bundled_checkpoint_with_sha(json.loads(sidecar.read_text())["sha256"]) == name
    assert bundled_checkpoint_with_sha("0" * 64) is None and bundled_checkpoint_with_sha(None) is None
