"""The bundled weights really detect sync: hold-out synthetic clips and real-photo clips they never saw."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from edge_sync.models.io import bundled_path

pytestmark = pytest.mark.skipif(not bundled_path("student").is_file(),
                                reason="no bundled student yet: bash scripts/train_bundled.sh student-direct bundle")


def test_bundled_student_on_held_out_synthetic_clips():
    from edge_sync.data.synthetic import SyntheticSyncDataset
    from edge_sync.models.io import load
    from edge_sync.training.evaluate import evaluate

    dataset = SyntheticSyncDataset(count=24, frames=50, seed=4242, split="holdout", drift_prob=0.0)
    result = evaluate(load("student"), dataset, contexts=(15,))
    assert result.clip["accuracy_pm1"] >= 0.95, result.clip
    assert result.clip["accuracy"] >= 0.9, result.clip


def test_bundled_teacher_decides_from_five_frame_windows():
    """The strict context protocol (the model sees only the window): the bundled teacher was fine-tuned for it
    (93.3% at 5 frames on 200 hold-out clips); the teacher before that fine-tune scored about 80% here."""
    from edge_sync.data.synthetic import SyntheticSyncDataset
    from edge_sync.models.io import load
    from edge_sync.training.evaluate import evaluate

    dataset = SyntheticSyncDataset(count=24, frames=50, seed=4343, split="holdout", drift_prob=0.0)
    result = evaluate(load("teacher"), dataset, contexts=(5,), strict_contexts=(5, 15))
    assert result.extra["context_strict"]["5"] >= 0.88, result.extra
    assert result.extra["context_strict"]["15"] >= 0.99, result.extra
    assert result.context[5] >= 0.95 and result.clip["accuracy"] >= 0.95, (result.context, result.clip)


def test_bundled_student_decides_from_five_frame_windows_better_than_before():
    """The strict context protocol for the student: session 24's student (the short-window shape C, distilled with
    the window-context loss) scores 89.5% at 5 frames on 200 hold-out clips and 89.8% on these 32; the student
    bundled before it 71.9% here, the one before that 67.4%."""
    from edge_sync.data.synthetic import SyntheticSyncDataset
    from edge_sync.models.io import load
    from edge_sync.training.evaluate import evaluate

    dataset = SyntheticSyncDataset(count=32, frames=50, seed=4343, split="holdout", drift_prob=0.0)
    result = evaluate(load("student"), dataset, contexts=(5,), strict_contexts=(5,))
    assert result.extra["context_strict"]["5"] >= 0.85, result.extra
    assert result.clip["accuracy"] >= 0.95, result.clip


@pytest.mark.parametrize("artifact, offset", [("student-fp32", -7), ("student-fp32", 0), ("student-fp32", 4),
                                              ("student-int8", -7), ("student-int8", 4)])
def test_bundled_artifact_syncs_real_photo_clips(tmp_path, artifact, offset):
    """The whole runtime pipeline (decode, face track, mouth crop, MFCC, ONNX model) on a real face, for each
    bundled artifact by the name a user types."""
    pytest.importorskip("onnxruntime", reason="pip install 'edge-sync[onnxruntime]'")
    from edge_sync.data.talking_photo import make_talking_photo_clip

    clip = make_talking_photo_clip(tmp_path / "c.mp4", "Please check that the sound and the lips agree on this clip.",
                                   offset_frames=offset, seed=offset + 50, voice="en-gb+m4", speed=165)
    out = subprocess.run([sys.executable, "-m", "edge_sync.cli", "sync", str(clip.path), "--json",
                          "--artifact", artifact], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    data = json.loads(out.stdout)
    assert abs(data["offset_frames"] - offset) <= 1, data
    assert data["audio_delay_ms"] == 40 * data["offset_frames"] and data["av_offset"] == -data["offset_frames"]


def test_bundled_artifacts_are_the_bundled_student_and_int8_pins_its_calibration():
    """Both bundled artifacts come from the bundled student.pt (a re-bundle that forgot one would ship an artifact of
    an older model, whose use-case heads no longer exist), and the INT8 one records the real calibration set it was
    made from, with the encoders' first convs kept float (the exporter's default the docs' INT8 figures use)."""
    from edge_sync._paths import BUNDLED_ARTIFACTS, WEIGHTS_DIR
    from edge_sync.artifact import read_artifact
    from edge_sync.usecases.heads import heads_path

    student_sha = json.loads((WEIGHTS_DIR / "student.json").read_text())["sha256"]
    for name, folder in BUNDLED_ARTIFACTS.items():
        manifest = read_artifact(WEIGHTS_DIR / folder).manifest  # checks every file's hash
        assert manifest["source"]["checkpoint_sha256"] == student_sha, name
        assert manifest["source"]["model"] == "student", name  # by its bundled name, not the exporter's checkout
        assert manifest["target"] == "onnx" and manifest["precision"] == name.rsplit("-", 1)[1]
    assert heads_path(student_sha).is_file()
    int8 = read_artifact(WEIGHTS_DIR / BUNDLED_ARTIFACTS["student-int8"]).manifest
    calibration = int8["calibration"]
    assert calibration["source"]["kind"] == "folder" and calibration["source"]["files"] >= 30, calibration
    assert calibration["count"] == 64 and int8["quantization"]["stems"] == "float", int8["quantization"]


def test_bundled_real_face_teacher_loads_without_light_asd_weights_and_finds_a_planted_offset(tmp_path, monkeypatch):
    """'teacher-real' ships Light-ASD's fine-tuned encoders inside its own checkpoint: a fresh clone, without the
    user's Light-ASD file, must load it (the trunk's weights path is not kept), and it must find a planted shift on a
    real face photo speaking real speech, through the real decode + face pipeline."""
    pytest.importorskip("skimage", reason="the portrait ships in scikit-image")
    from edge_sync.data.talking_photo import make_talking_photo_clip
    from edge_sync.evaluation.real_footage import evaluate_real, load_clips
    from edge_sync.evaluation.torch_scorer import TorchScorer
    from edge_sync.models.io import load, parameter_count

    if not bundled_path("teacher-real").is_file():
        pytest.skip("no bundled teacher-real: bash scripts/train_bundled.sh bundle-student-real")
    monkeypatch.chdir(tmp_path)  # no .lasd/ or other local weights in reach
    teacher = load("teacher-real")
    assert teacher.config_dict()["video_trunk_kwargs"] == {}
    assert parameter_count(teacher) > 5 * parameter_count(load("student"))
    make_talking_photo_clip(tmp_path / "talk.mp4", "The quick brown fox jumps over the lazy dog, and then it runs "
                            "back across the field to the old barn.", size=(320, 240), seed=3)
    scorer = TorchScorer(teacher)
    clips, skipped = load_clips(tmp_path, scorer.contract.video, progress=False)
    assert not skipped
    report = evaluate_real(scorer, clips, "teacher-real", planted=(-6, 4), progress=False)
    assert all(c.right for c in report.cases), [(c.planted, c.detected) for c in report.cases]
