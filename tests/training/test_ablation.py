"""The ablation table (`edge-sync eval --ablation`) and what it rests on: the legacy model trained on mouth crops,
several models trained on one stream of batches, and every row scored, timed and sized in one run."""
from __future__ import annotations

import argparse
import json

import pytest
import torch

from edge_sync.models import io
from edge_sync.models.legacy import LegacySyncNetFCN
from edge_sync.models.student import StudentConfig, X3DStudent
from edge_sync.models.teacher import SyncNetFCN, TeacherConfig
from edge_sync.training.legacy_adapter import MouthLegacy, as_trainable, mouth_to_legacy_frames
from edge_sync.training.losses import LossWeights
from edge_sync.training.train import TrainConfig, train, train_together
from tests.training.tiny_configs import TINIER_STUDENT, TINY_TEACHER


def _config(**kw) -> TrainConfig:
    base = dict(model="student", model_config=TINIER_STUDENT, steps=2, batch_size=2, frames=8, checkpoint_every=2,
                warmup_steps=1, lr=3e-3, seed=3, augment={"jitter": True, "colour": True},
                speech_bank=4)  # a few utterances: a machine without the cached bank need not synthesise 1000
    base.update(kw)
    return TrainConfig(**base)


# --- the legacy model on mouth crops ----------------------------------------------------------------------
def test_mouth_crops_become_the_legacy_contract():
    video = torch.full((1, 3, 2, 112, 112), -1.0)
    video[:, 0] = 1.0  # pure red in RGB [-1, 1]
    frames = mouth_to_legacy_frames(video)
    assert frames.shape == (1, 3, 2, 224, 224)
    torch.testing.assert_close(frames[:, 2], torch.full((1, 2, 224, 224), 255.0))  # red is the last BGR channel
    torch.testing.assert_close(frames[:, :2], torch.zeros(1, 2, 2, 224, 224))
    with pytest.raises(ValueError, match="112"):
        mouth_to_legacy_frames(torch.zeros(1, 3, 2, 224, 224))


def test_mouth_legacy_is_the_legacy_model_on_converted_frames():
    torch.manual_seed(0)
    legacy = LegacySyncNetFCN().eval()
    model = as_trainable(legacy)
    assert isinstance(model, MouthLegacy) and as_trainable(model) is model and model.checkpoint_module is legacy
    audio, video = torch.randn(1, 1, 13, 16) * 10, torch.rand(1, 3, 4, 112, 112) * 2 - 1
    with torch.inference_mode():
        probs, corr = model(audio, video)
        ref_probs, ref_corr = legacy(audio, mouth_to_legacy_frames(video))
        feats = model.forward_features(audio, video)
    torch.testing.assert_close(probs, ref_probs)
    torch.testing.assert_close(corr, ref_corr)
    torch.testing.assert_close(torch.softmax(feats["logits"], dim=1), probs)  # logits = -distance / temperature
    assert model.contract.video.name == "mouth112" and legacy.contract.video.name == "legacy_face224"


def test_legacy_trains_on_the_synthetic_clips_and_saves_a_legacy_checkpoint(tmp_path):
    result = train(_config(model="legacy", model_config={}, steps=1, batch_size=1, frames=4, augment=None),
                   tmp_path / "legacy.pt", progress=False)
    assert result.final_loss == result.final_loss
    model = io.load(tmp_path / "legacy.pt")
    assert type(model) is LegacySyncNetFCN  # the plain legacy kind: export, import-syncnet users, load() all work
    assert "mouth112" in model.checkpoint_meta["input"] and model.checkpoint_meta["recipe"]["model"] == "legacy"


# --- several models on one stream of batches --------------------------------------------------------------
def test_models_trained_together_equal_models_trained_alone(tmp_path):
    a = _config()
    b = _config(model="teacher", model_config=TINY_TEACHER, lr=1e-3, loss=LossWeights(ce=1.0, info_nce=0.5))
    alone = [train(a, tmp_path / "a.pt", progress=False), train(b, tmp_path / "b.pt", progress=False)]
    together = train_together([a, b], [tmp_path / "ta.pt", tmp_path / "tb.pt"], progress=False)
    for x, y in zip(alone, together):
        assert [h["loss"] for h in x.history] == pytest.approx([h["loss"] for h in y.history], rel=1e-4)
    for solo, joint in (("a.pt", "ta.pt"), ("b.pt", "tb.pt")):
        m1, m2 = io.load(tmp_path / solo), io.load(tmp_path / joint)
        for (name, p), (_, q) in zip(m1.state_dict().items(), m2.state_dict().items()):
            torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5, msg=name)
    assert io.load(tmp_path / "tb.pt").checkpoint_meta["trained_together_with"] == [str(tmp_path / "ta.pt")]


def test_together_refuses_runs_that_need_other_batches(tmp_path):
    with pytest.raises(ValueError, match="frames"):
        train_together([_config(), _config(frames=12)], [tmp_path / "a.pt", tmp_path / "b.pt"], progress=False)
    with pytest.raises(ValueError, match="differ"):
        train_together([_config(), _config()], [tmp_path / "a.pt", tmp_path / "a.pt"], progress=False)


def test_together_command_ends_every_run_at_end_at(tmp_path):
    """--end-at: each run stops at that step of its schedule and writes its checkpoint (a GPU call's time limit)."""
    from edge_sync.training import together

    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"model_config": TINIER_STUDENT, "checkpoint_every": 1, "speech_bank": 4}))
    runs = [f"student:{cfg}:{tmp_path / name}" for name in ("a.pt", "b.pt")]
    together.main(["--run", runs[0], "--run", runs[1], "--steps", "3", "--batch-size", "2", "--frames", "8",
                   "--workers", "0", "--device", "cpu", "--no-augment", "--end-at", "1"])
    for name in ("a.pt", "b.pt"):
        meta = io.load(tmp_path / name).checkpoint_meta
        assert meta["steps"] == 1 and meta["ended_at"] == {"step": 1, "schedule_steps": 3}


def test_together_command_builds_the_config_edge_sync_train_builds(tmp_path):
    from edge_sync import cli
    from edge_sync.training import together

    assert together.DEFAULT_AUGMENT == cli.DEFAULT_AUGMENT
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"speech_bank": 400, "model_config": {"attention": True}, "loss": {"info_nce": 1.0}}))
    args = argparse.Namespace(data="synthetic", steps=30, batch_size=4, frames=40, lr=2e-3, seed=0, workers=2,
                              device="cpu", augment=True, half=True)
    ours = together.run_config("teacher", cfg, args)
    theirs = cli._train_config("teacher", "synthetic", 30, 4, 40, 2e-3, 0, 2, cfg, "cpu", True, None, True)
    assert ours.to_dict() == theirs.to_dict()
    # a "teacher" in the JSON makes that run a distillation, as it does for `edge-sync train --config`
    cfg.write_text(json.dumps({"teacher": "runs/t.pt", "loss": {"ce": 1.0, "distill": 1.0}}))
    ours = together.run_config("student", cfg, args)
    theirs = cli._train_config("student", "synthetic", 30, 4, 40, 2e-3, 0, 2, cfg, "cpu", True, None, True)
    assert ours.teacher == "runs/t.pt" and ours.to_dict() == theirs.to_dict()
    cfg.write_text(json.dumps({}))
    assert together.run_config("student", cfg, args).teacher is None
    cfg.write_text(json.dumps({"lr": 3e-4, "warmup_steps": 10}))  # a run's own learning rate beats the shared one
    own = together.run_config("teacher", cfg, args)
    assert (own.lr, own.warmup_steps, own.steps) == (3e-4, 10, 30)
    assert together.parse_run("legacy::runs/l.pt") == ("legacy", None, tmp_path.__class__("runs/l.pt"))
    with pytest.raises(argparse.ArgumentTypeError):
        together.parse_run("legacy:runs/l.pt")


# --- the table ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_rows(tmp_path_factory):
    """Tiny untrained checkpoints for the five rows (the legacy one has its real size: it has no width option)."""
    d = tmp_path_factory.mktemp("ablation")
    torch.manual_seed(0)
    io.save_checkpoint(LegacySyncNetFCN(), d / "legacy.pt")
    io.save_checkpoint(SyncNetFCN(TeacherConfig.from_dict({**TeacherConfig().to_dict(), **TINY_TEACHER})), d / "t.pt")
    io.save_checkpoint(SyncNetFCN(TeacherConfig.from_dict({**TeacherConfig().to_dict(), **TINY_TEACHER,
                                                           "attention": True})), d / "ta.pt")
    io.save_checkpoint(X3DStudent(StudentConfig.from_dict({**StudentConfig().to_dict(), **TINIER_STUDENT})), d / "s.pt")
    return d


def test_eval_ablation_writes_the_measured_table(tiny_rows, tmp_path):
    from typer.testing import CliRunner

    from edge_sync._paths import BUNDLED_ARTIFACT
    from edge_sync.cli import app
    from edge_sync.data.synthetic import SyntheticSyncDataset
    from edge_sync.training.evaluate import evaluate

    d = tiny_rows
    artifact = BUNDLED_ARTIFACT  # an artifact row is scored the same way whatever its precision; no export here
    report, json_out = tmp_path / "ablation.md", tmp_path / "ablation.json"
    args = ["eval", "--ablation", "--legacy", str(d / "legacy.pt"), "--modern", str(d / "t.pt"), "--attention",
            str(d / "ta.pt"), "--student", str(d / "s.pt"), "--int8", str(artifact), "--extra",
            f"tiny again={d / 't.pt'}", "--count", "2", "--frames", "6", "--speed-frames", "6", "--threads", "1",
            "--repeat", "2", "--rounds", "2", "--report", str(report), "--json", str(json_out)]
    out = CliRunner().invoke(app, args)
    assert out.exit_code == 0, out.output
    md = report.read_text()
    assert md.strip() in out.output
    data = json.loads(json_out.read_text())
    rows = data["rows"]
    assert [r["row"] for r in rows] == ["baseline (legacy architecture)", "+ modern trunk", "+ attention",
                                       "distilled student", "distilled student INT8", "tiny again"]
    params = {p: io.parameter_count(io.load(d / p)) for p in ("legacy.pt", "t.pt", "ta.pt", "s.pt")}
    assert rows[0]["relative_speed"] == 1.0 and rows[0]["relative_size"] == 1.0
    assert rows[1]["relative_size"] == pytest.approx(params["t.pt"] / params["legacy.pt"])
    assert rows[4]["size_bytes"] == (artifact / "model.onnx").stat().st_size
    assert rows[4]["kind"] == "onnx-fp32" and rows[4]["params"] is None
    for r in rows:
        assert r["frames_per_s"] > 0 and r["relative_speed"] == pytest.approx(r["frames_per_s"]
                                                                             / rows[0]["frames_per_s"])
    # the table's numbers are evaluate()'s on the same hold-out clips, for PyTorch rows and artifact rows alike
    ds = SyntheticSyncDataset(count=2, frames=6, seed=1000, split="holdout", drift_prob=0.0)
    ref = evaluate(io.load(d / "s.pt"), ds)
    assert rows[3]["frame_accuracy"] == ref.frame["accuracy"] and rows[3]["mae_frames"] == ref.frame["mae_frames"]
    ref = evaluate(io.load("student"), ds)  # the bundled artifact was exported from the bundled student
    assert abs(rows[4]["frame_accuracy"] - ref.frame["accuracy"]) <= 1 / 12
    assert data["settings"]["count"] == 2 and data["settings"]["threads"] == 1 and data["settings"]["repeat"] == 2
    assert all(len(r["round_medians_ms"]) == 2 for r in rows)  # every row timed in each interleaved round
    lines = [line for line in md.splitlines() if line.startswith("| ")]
    assert lines[0].startswith("| row | accuracy (clip) | accuracy@±1 (clip)") and "relative speed" in lines[0]
    assert lines[1].startswith("| baseline (legacy architecture) |") and lines[1].endswith("| 1x | 1x |")
    assert "edge-sync eval --ablation" in md and "mouth112" in md


def test_without_an_artifact_the_student_is_exported_to_onnx_int8(tiny_rows, tmp_path, monkeypatch):
    import shutil

    import edge_sync.exporters.api as api
    from edge_sync._paths import BUNDLED_ARTIFACT
    from edge_sync.training.ablation import ARTIFACT, AblationRow, run_ablation

    calls = []

    def fake_export(model, target, precision, out_dir, name=None, **options):  # the real one takes ~20 s
        calls.append((model, target, precision, options.get("calib")))
        return [shutil.copytree(BUNDLED_ARTIFACT, f"{out_dir}/{name}.onnx-fp32")]

    monkeypatch.setattr(api, "export", fake_export)
    student = str(tiny_rows / "s.pt")
    rows = [AblationRow("student", student), AblationRow("student INT8", "", ARTIFACT)]
    res = run_ablation(rows, count=1, frames=4, speed_frames=4, threads=1, warmup=0, repeat=1, rounds=1, calib="C",
                       progress=False)
    assert calls == [(student, "onnx", "int8", "C")]
    assert res.rows[1]["source"] == f"{student} -> onnx-int8" and res.rows[1]["relative_size"] > 0


def test_eval_ablation_says_how_to_make_a_missing_row(tmp_path):
    from typer.testing import CliRunner

    from edge_sync.cli import app

    out = CliRunner().invoke(app, ["eval", "--ablation", "--legacy", str(tmp_path / "none.pt")])
    assert out.exit_code != 0 and "legacy-baseline" in str(out.exception)


def test_ablation_scores_every_row_on_real_footage_too(tiny_rows, tmp_path):
    """--real-data: each row also gets the real-footage protocol's figures, the same as `eval --data` gives it,
    and --no-base-rows makes a table of the --extra rows alone (the first is the ratios' baseline)."""
    pytest.importorskip("skimage", reason="the portrait ships in scikit-image")
    pytest.importorskip("onnxruntime", reason="pip install 'edge-sync[onnxruntime]'")
    from typer.testing import CliRunner

    from edge_sync.cli import app
    from edge_sync.data.talking_photo import make_talking_photo_clip
    from edge_sync.evaluation.real_footage import evaluate_real, load_clips
    from edge_sync.evaluation.torch_scorer import TorchScorer
    from edge_sync.spec import MOUTH

    videos = tmp_path / "videos"
    make_talking_photo_clip(videos / "talk.mp4", "We check the sound against the mouth, one two three four five.",
                            offset_frames=0, size=(320, 240), seed=3)
    report, json_out = tmp_path / "ablation.md", tmp_path / "ablation.json"
    args = ["eval", "--ablation", "--no-base-rows", "--extra", "bundled student=student", "--extra",
            f"tiny teacher={tiny_rows / 't.pt'}", "--real-data", str(videos), "--planted", "-6,4", "--count", "2",
            "--frames", "6", "--speed-frames", "6", "--threads", "1", "--repeat", "1", "--rounds", "1",
            "--report", str(report), "-o", str(json_out)]
    out = CliRunner().invoke(app, args)
    assert out.exit_code == 0, out.output
    data = json.loads(json_out.read_text())
    rows = data["rows"]
    assert data["settings"]["real"] == {"data": str(videos), "clips": [], "planted": [-6, 4], "detector": "yunet"}
    assert [r["row"] for r in rows] == ["bundled student", "tiny teacher"] and rows[0]["relative_speed"] == 1.0
    clips, _ = load_clips(videos, MOUTH, progress=False)
    for r, source in zip(rows, ("student", str(tiny_rows / "t.pt"))):
        ref = evaluate_real(TorchScorer(io.load(source)), clips, r["row"], planted=(-6, 4), progress=False).overall()
        assert (r["real_originals"], r["real_planted"]) == (1, 2)
        assert (r["real_originals_right"], r["real_planted_right"], r["real_exact"]) == (
            ref["originals_right"], ref["planted_right"], ref["exact"])
    assert rows[0]["real_originals_right"] == 1 and rows[0]["real_planted_right"] == 2  # the bundled student reads them
    md = report.read_text()
    assert "Real footage:" in md and "| bundled student | 1 | 1/1 (100%) | 2/2 (100%) |" in md
    assert "--no-base-rows" in md and f"--real-data '{videos}'" in md and "--planted -6,4" in md
    assert md.startswith("# Ablation: options measured side by side")


def test_no_base_rows_needs_an_extra_row():
    from typer.testing import CliRunner

    from edge_sync.cli import app

    out = CliRunner().invoke(app, ["eval", "--ablation", "--no-base-rows"])
    assert out.exit_code != 0 and "--extra" in str(out.exception)


def test_a_legacy_model_trained_on_mouth_crops_is_scored_on_them(tiny_rows, tmp_path):
    """Real-footage scoring (eval --data, the ablation's real column) feeds a legacy checkpoint trained here the
    mouth crops it learned on, and an imported syncnet_python model its own 224x224 faces."""
    from edge_sync.training.evaluate_cli import scorer_for
    from edge_sync.training.legacy_adapter import INPUT_NOTE

    model = io.load(tiny_rows / "legacy.pt")
    io.save_checkpoint(model, tmp_path / "trained.pt", meta={"input": INPUT_NOTE})
    assert scorer_for(str(tmp_path / "trained.pt"))[1].contract.video.name == "mouth112"
    imported = scorer_for(str(tiny_rows / "legacy.pt"))[1].contract.video.name
    assert imported == model.contract.video.name != "mouth112"
