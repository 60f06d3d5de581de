"""edge_sync._paths: where bundled things live, and paths a manifest can carry to another machine."""
from __future__ import annotations

from edge_sync._paths import BUNDLED_CHECKPOINTS, WEIGHTS_DIR, bundled_checkpoint_with_sha, recorded_model_path


def test_a_recorded_model_path_is_absolute_unless_it_is_a_bundled_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert recorded_model_path("runs/student.pt") == str(tmp_path / "runs" / "student.pt")
    assert recorded_model_path("/elsewhere/student.pt") == "/elsewhere/student.pt"
    assert recorded_model_path("student") == "student"
    (tmp_path / "student").write_text("a file of that name shadows the bundled one")
    assert recorded_model_path("student") == str(tmp_path / "student")


def test_the_bundled_checkpoint_given_by_its_path_is_recorded_by_its_name(monkeypatch):
    """What scripts/bundle_weights.py passes: the shipped manifest must not carry this checkout's path."""
    import os

    for name, file in BUNDLED_CHECKPOINTS.items():
        assert recorded_model_path(WEIGHTS_DIR / file) == name
    monkeypatch.chdir(WEIGHTS_DIR.parent)
    assert recorded_model_path(os.path.join("weights", "student.pt")) == "student"
    assert recorded_model_path(WEIGHTS_DIR / "other.pt") == str(WEIGHTS_DIR / "other.pt")


def test_each_bundled_checkpoint_is_found_by_the_hash_of_its_weights():
    """The sidecar's sha256 is the checkpoint's own weights hash (what an artifact's manifest records)."""
    import pytest

    pytest.importorskip("torch", reason="reading a checkpoint needs torch")
    from edge_sync.models.io import read_checkpoint

    for name, file in BUNDLED_CHECKPOINTS.items():
        if (WEIGHTS_DIR / file).is_file():
            assert bundled_checkpoint_with_sha(read_checkpoint(WEIGHTS_DIR / file)["state_sha256"]) == name
    assert bundled_checkpoint_with_sha("0" * 64) is None and bundled_checkpoint_with_sha(None) is None
