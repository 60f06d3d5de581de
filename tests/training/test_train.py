"""Training as a user runs it: resumable, seeded, the same under torchrun with 2 gloo processes."""
from __future__ import annotations

import dataclasses

import json
import os
import subprocess
import sys

import pytest
import torch

from edge_sync.models import io
from edge_sync.training.losses import LossWeights
from edge_sync.training.train import TrainConfig, is_finished, state_path, train
from tests.training.tiny_configs import TINY_STUDENT


def _config(**kw) -> TrainConfig:
    base = dict(model="student", model_config=TINY_STUDENT, steps=4, batch_size=2, frames=12, checkpoint_every=2,
                warmup_steps=1, lr=3e-3, seed=5, speech_bank=4)  # a cold cache synthesises 4 utterances, not 1000
    base.update(kw)
    return TrainConfig(**base)


def test_training_writes_a_loadable_checkpoint_with_its_recipe(tmp_path):
    result = train(_config(augment={"jitter": True, "flip": True, "colour": True}), tmp_path / "s.pt",
                   progress=False)
    assert result.steps == 4 and result.final_loss == result.final_loss  # not NaN
    model = io.load(tmp_path / "s.pt")
    meta = model.checkpoint_meta
    assert meta["steps"] == 4 and meta["recipe"]["seed"] == 5 and meta["recipe"]["augment"]["flip"] is True


def test_interrupted_run_resumes_to_the_same_weights(tmp_path):
    torch.manual_seed(0)
    train(_config(), tmp_path / "straight.pt", progress=False)
    partial = train(_config(), tmp_path / "resumed.pt", progress=False, stop_after=2)
    assert partial.steps == 2 and not (tmp_path / "resumed.pt").exists()
    assert state_path(tmp_path / "resumed.pt").is_file()
    done = train(_config(), tmp_path / "resumed.pt", progress=False)
    assert done.steps == 4
    a, b = io.load(tmp_path / "straight.pt"), io.load(tmp_path / "resumed.pt")
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-5, msg=name)


def test_a_time_budget_stops_after_the_step_that_runs_past_it_and_resumes_to_the_same_weights(tmp_path):
    """stop_after_seconds: a call lent for a fixed time saves its state instead of being killed mid-schedule."""
    train(_config(), tmp_path / "straight.pt", progress=False)
    cut = train(_config(), tmp_path / "timed.pt", progress=False, stop_after_seconds=0.0)
    assert (cut.steps, cut.written) == (1, False) and not (tmp_path / "timed.pt").exists()
    assert torch.load(state_path(tmp_path / "timed.pt"), map_location="cpu", weights_only=False)["step"] == 1
    done = train(_config(), tmp_path / "timed.pt", progress=False, stop_after_seconds=3600.0)
    assert (done.steps, done.written) == (4, True)
    a, b = io.load(tmp_path / "straight.pt"), io.load(tmp_path / "timed.pt")
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-5, msg=name)


def test_end_at_writes_the_weights_of_that_step_on_the_full_schedule(tmp_path):
    """A run cut by a time limit (state at step 2 of a 4-step schedule) is what end_at=2 writes as a checkpoint."""
    cut = train(_config(), tmp_path / "cut.pt", progress=False, stop_after=2)
    ended = train(_config(), tmp_path / "ended.pt", progress=False, end_at=2)
    assert cut.steps == ended.steps == 2
    model = io.load(tmp_path / "ended.pt")
    assert model.checkpoint_meta["ended_at"] == {"step": 2, "schedule_steps": 4}
    state = torch.load(state_path(tmp_path / "cut.pt"), map_location="cpu", weights_only=False)["model"]
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, state[name], rtol=1e-4, atol=1e-5, msg=name)
    again = train(_config(), tmp_path / "ended.pt", progress=False, end_at=2)  # resumed at its end: no more steps
    assert again.steps == 2


def test_a_run_begun_in_one_process_resumes_with_a_loader_worker_to_the_same_weights(tmp_path):
    """A schedule begun on one machine (no loader workers) and ended on another (a worker): the same clips, so the
    same weights as a run straight through."""
    train(_config(), tmp_path / "straight.pt", progress=False)
    train(_config(workers=0), tmp_path / "moved.pt", progress=False, stop_after=2)
    assert train(_config(workers=1), tmp_path / "moved.pt", progress=False).steps == 4
    a, b = io.load(tmp_path / "straight.pt"), io.load(tmp_path / "moved.pt")
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-5, msg=name)
    assert b.checkpoint_meta["recipe"]["workers"] == 1


def test_is_finished_reads_the_checkpoint_and_its_state_not_file_times(tmp_path):
    """A stage's checkpoint counts as its end (scripts/train_bundled.sh reads this) only when written at the step its
    train-state holds, whatever the files' times after a copy between machines."""
    out = tmp_path / "m.pt"
    train(_config(steps=2), out, progress=False, stop_after=1)
    assert not is_finished(out)  # stopped: a state, no checkpoint
    train(_config(steps=2), out, progress=False)
    os.utime(out, (0, 0))  # older than its state, as after a copy
    assert is_finished(out)
    train(_config(steps=4), out, progress=False, resume=False, stop_after=1)
    assert not is_finished(out)  # begun again: the checkpoint left behind is an older run's


def test_resume_refuses_a_different_recipe(tmp_path):
    train(_config(), tmp_path / "m.pt", progress=False, stop_after=1)
    with pytest.raises(ValueError, match="another config"):
        train(_config(lr=1e-2), tmp_path / "m.pt", progress=False)


def test_a_folder_run_resumes_from_the_same_clips_at_another_path_and_refuses_other_clips(tmp_path):
    """A folder's identity is its files, not its path: the recipe's real stages read a folder of links made afresh by
    each call (and a state begun on one machine ends on another), so the same clips elsewhere resume; a changed
    manifest (other offsets) does not."""
    pytest.importorskip("skimage", reason="the portrait ships in scikit-image: pip install 'edge-sync[dev]'")
    from edge_sync.data.talking_photo import make_talking_photo_clip

    clip = tmp_path / "talk.mp4"
    make_talking_photo_clip(clip, "Seven apples and a warm coat for the old lighthouse.", offset_frames=0,
                            size=(256, 192))

    def links(name: str, manifest: str) -> str:
        folder = tmp_path / name
        folder.mkdir()
        (folder / "talk.mp4").symlink_to(clip)
        (folder / "MANIFEST.tsv").write_text(manifest)
        return str(folder)

    late = "file\toffset_frames\ntalk.mp4\t1\n"
    first, again, other = links("first", late), links("again", late), links("other", late.replace("1", "2"))
    config = dict(steps=2, frames=12, batch_size=2, cache_dir=str(tmp_path / "c"))
    train(_config(data=first, **config), tmp_path / "m.pt", progress=False, stop_after=1)
    with pytest.raises(ValueError, match=r"differs in \['data'\]"):
        train(_config(data=other, **config), tmp_path / "m.pt", progress=False)
    assert train(_config(data=again, **config), tmp_path / "m.pt", progress=False).steps == 2


def test_distillation_uses_the_teacher(tmp_path):
    train(_config(model="teacher", model_config={"video_trunk_kwargs": {"width": 0.25},
                                                 "audio_trunk_kwargs": {"width": 0.25}}, steps=2),
          tmp_path / "t.pt", progress=False)
    result = train(_config(teacher=str(tmp_path / "t.pt"), steps=2), tmp_path / "s.pt", progress=False)
    assert "distill" in result.history[-1]
    assert io.load(tmp_path / "s.pt").checkpoint_meta["recipe"]["teacher"] == str(tmp_path / "t.pt")


def test_torchrun_with_two_gloo_processes(tmp_path):
    """DistributedDataParallel on CPU: the command line a user with several machines would run."""
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"model_config": TINY_STUDENT, "checkpoint_every": 2, "warmup_steps": 1,
                               "speech_bank": 4}))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29517",
                          "-m", "edge_sync.cli", "train", "--model", "student", "--steps", "2", "--batch-size", "2",
                          "--frames", "12", "--workers", "0", "--device", "cpu", "--no-augment", "--config", str(cfg),
                          "-o", str(tmp_path / "ddp.pt")], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    model = io.load(tmp_path / "ddp.pt")
    assert model.checkpoint_meta["world_size"] == 2


def test_eval_command_prints_and_writes_the_tables(tmp_path):
    train(_config(steps=1), tmp_path / "m.pt", progress=False)
    out = subprocess.run([sys.executable, "-m", "edge_sync.cli", "eval", "--model", str(tmp_path / "m.pt"),
                          "--count", "3", "--frames", "36", "--json", str(tmp_path / "e.json")],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "temporal" in out.stdout and "LRS2" in out.stdout
    data = json.loads((tmp_path / "e.json").read_text())
    res = data["models"][str(tmp_path / "m.pt")]
    assert 0 <= res["clip"]["accuracy"] <= 1 and res["clips"] == 3
    # 36 frames leave 2 full-search windows of 5 per clip (starts 15, 16) and none of 15
    assert 0 <= res["context"]["5"] <= 1 and 0 <= res["context_strict"]["5"] <= 1
    assert res["context"]["15"] != res["context"]["15"]  # NaN: no window
    assert "strict" in out.stdout and "every window" in out.stdout


def test_window_loss_trains_and_resumes_exactly(tmp_path):
    from edge_sync.training.losses import LossWeights

    def cfg():
        return _config(frames=36, steps=3, loss=LossWeights(ce=1.0, window_ce=1.0, window_min_frames=5,
                                                            window_max_frames=6))
    straight = train(cfg(), tmp_path / "w.pt", progress=False)
    assert "window_ce" in straight.history[-1] and straight.history[-1]["window_ce"] > 0
    train(cfg(), tmp_path / "r.pt", progress=False, stop_after=1)
    train(cfg(), tmp_path / "r.pt", progress=False)
    a, b = io.load(tmp_path / "w.pt"), io.load(tmp_path / "r.pt")
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-5, msg=name)
    with pytest.raises(ValueError, match="too short"):
        train(_config(loss=LossWeights(window_ce=1.0)), tmp_path / "short.pt", progress=False)


def test_window_context_alone_draws_windows_and_trains_them(tmp_path):
    """window_context needs no window_ce: the trainer draws windows for either, and the window's embeddings
    move towards the whole clip's."""
    from edge_sync.training.losses import LossWeights

    cfg = _config(frames=36, steps=2, loss=LossWeights(ce=1.0, window_context=1.0, window_min_frames=5,
                                                       window_max_frames=6))
    history = train(cfg, tmp_path / "c.pt", progress=False).history
    assert "window_context" in history[-1] and "window_ce" not in history[-1]
    assert 0 < history[-1]["window_context"] < 4


def test_freeze_keeps_the_named_parameters_fixed_and_rejects_typos(tmp_path):
    start = io.load("student")
    before = {n: p.detach().clone().float() for n, p in start.state_dict().items()}
    cfg = _config(model=str(io.bundled_path("student")), model_config={}, freeze=["audio_encoder"], steps=2,
                  speech_bank=4)
    train(cfg, tmp_path / "f.pt", progress=False)
    after = {n: p.float() for n, p in io.load(tmp_path / "f.pt").state_dict().items()}
    audio = [n for n in before if n.startswith("audio_encoder")]  # weights and batch-norm statistics
    assert any("running_mean" in n for n in audio)
    assert all(torch.equal(before[n], after[n]) for n in audio)
    assert any(not torch.allclose(before[n], after[n]) for n in before if n.startswith("video_encoder"))
    with pytest.raises(ValueError, match="matches no parameter"):
        train(_config(freeze=["audio_encodr"], speech_bank=4), tmp_path / "g.pt", progress=False)


def test_mixed_dataset_draws_the_asked_share_of_synthetic_clips(tmp_path):
    from edge_sync.data.synthetic import SyntheticSyncDataset
    from edge_sync.training.train import MixedDataset

    synthetic = SyntheticSyncDataset(count=400, frames=12, seed=1, split="train")
    real = SyntheticSyncDataset(count=3, frames=12, seed=2, split="holdout")  # stands in for the real windows
    mixed = MixedDataset(real, synthetic, 0.25, seed=3)
    share = sum(mixed.is_synthetic(i) for i in range(len(mixed))) / len(mixed)
    assert len(mixed) == 400 and 0.18 < share < 0.32
    i = next(i for i in range(len(mixed)) if not mixed.is_synthetic(i))
    assert set(mixed[i]) == set(MixedDataset.KEYS)
    assert torch.equal(mixed[i]["video"], real[i % 3]["video"])


def test_a_folder_is_read_with_fresh_windows_on_every_pass(tmp_path):
    """A small real corpus must not shrink to a few fixed (window, offset) pairs cycled for the whole run."""
    pytest.importorskip("skimage", reason="the portrait ships in scikit-image: pip install 'edge-sync[dev]'")
    from edge_sync.data.talking_photo import make_talking_photo_clip
    from edge_sync.training.train import FreshWindows, build_dataset

    make_talking_photo_clip(tmp_path / "videos" / "talk.mp4", "Seven apples and a warm coat for the old lighthouse.",
                            offset_frames=0, size=(256, 192))
    cfg = _config(data=str(tmp_path / "videos"), frames=12, steps=10, batch_size=4, cache_dir=str(tmp_path / "c"))
    data = build_dataset(cfg, world=1)
    assert isinstance(data, FreshWindows) and len(data) == 40
    n = len(data.folder)
    assert n < 10  # a few items per pass: cycling them unchanged would repeat each one many times

    def key(i: int) -> tuple[int, int]:
        item = data[i]
        return int(item["frame_start"]), int(item["offsets"][0])

    passes = [[key(p * n + i) for i in range(n)] for p in range(4)]
    assert len({k for p in passes for k in p}) > 2 * n  # new windows and offsets on later passes
    assert [key(i) for i in range(n)] == passes[0]  # the same index is the same sample (resume, workers)


def _assert_trunk_features_of(model, raw, audio, video) -> None:
    """``audio``/``video`` [C, T] are ``model``'s trunks on the raw window, away from its ends (the trunks see 6
    frames either side there: the window's ends differ from the clip's)."""
    with torch.no_grad():
        expected_video = model.video_encoder(raw["video"][None])[0]
        expected_audio = model.audio_encoder(raw["audio"][None])[0]
    inner = slice(6, -6)
    assert torch.allclose(video[:, inner], expected_video[:, inner], atol=1e-4)
    assert torch.allclose(audio[:, inner], expected_audio[:, inner], atol=1e-4)


def test_training_on_cached_trunk_features_matches_the_raw_windows(tmp_path):
    """trunk_features: each window is the trunks' output on the folder's own window (same frames, same planted
    shift), the trunks stay as they were, and runs it cannot serve are refused."""
    pytest.importorskip("skimage", reason="the portrait ships in scikit-image: pip install 'edge-sync[dev]'")
    from edge_sync.data.talking_photo import make_talking_photo_clip
    from edge_sync.training.train import build_dataset, build_model
    from edge_sync.training.trunk_features import TrunkFeatureWindows

    make_talking_photo_clip(tmp_path / "videos" / "talk.mp4", "Seven apples and a warm coat for the old lighthouse.",
                            offset_frames=0, size=(256, 192))
    light = {"video_trunk": "light_asd_visual", "audio_trunk": "light_asd_mfcc", "embed_dim": 16, "head_hidden": 8,
             "head_dilations": [1, 2]}  # local trunks (no pooling over time), the kind this mode is for
    cfg = _config(model="teacher", model_config=light, data=str(tmp_path / "videos"), frames=20, steps=3,
                  batch_size=2, trunk_features=True, augment=None, loss=LossWeights(ce=1.0, corr_ce=1.0))
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    folder = build_dataset(cfg, world=1).folder
    data = TrunkFeatureWindows(folder, model, count=3 * len(folder), progress=False)
    for i in (0, len(folder) + 1, 2 * len(folder)):
        raw, cached = folder.sample(i % len(folder), epoch=i // len(folder)), data[i]
        assert torch.equal(cached["offsets"], raw["offsets"])
        _assert_trunk_features_of(model, raw, cached["audio"], cached["video"])

    torch.manual_seed(cfg.seed)  # the initialisation train() gives the run
    before = build_model(cfg).state_dict()
    train(cfg, tmp_path / "tf.pt", progress=False)
    after = io.load(tmp_path / "tf.pt").state_dict()
    trunks = [n for n in before if n.startswith(("video_encoder", "audio_encoder"))]
    assert trunks and all(torch.equal(before[n], after[n].float()) for n in trunks)
    assert any(not torch.allclose(before[n], after[n].float()) for n in before if n.startswith("head"))
    with pytest.raises(ValueError, match="pixel augmentation"):
        train(_config(data=str(tmp_path / "videos"), frames=12, trunk_features=True, augment={"flip": True}),
              tmp_path / "bad.pt", progress=False)
    with pytest.raises(ValueError, match="legacy SyncNet"):
        train(_config(model="legacy", model_config={}, data=str(tmp_path / "videos"), frames=12, trunk_features=True),
              tmp_path / "bad.pt", progress=False)


def test_distilling_on_the_teachers_cached_trunk_features(tmp_path):
    """teacher_trunk_features: the student gets the folder's raw window, the teacher its trunks' features of that same
    window (computed once per clip), and a run distils from them; runs it cannot serve are refused."""
    pytest.importorskip("skimage", reason="the portrait ships in scikit-image: pip install 'edge-sync[dev]'")
    from edge_sync.data.talking_photo import make_talking_photo_clip
    from edge_sync.training.train import build_dataset, build_model
    from edge_sync.training.trunk_features import TeacherFeatureWindows

    make_talking_photo_clip(tmp_path / "videos" / "talk.mp4", "Seven apples and a warm coat for the old lighthouse.",
                            offset_frames=0, size=(256, 192))
    videos = str(tmp_path / "videos")
    light = {"video_trunk": "light_asd_visual", "audio_trunk": "light_asd_mfcc", "embed_dim": 16, "head_hidden": 8,
             "head_dilations": [1, 2]}
    train(_config(model="teacher", model_config=light, data=videos, frames=20, steps=2, trunk_features=True,
                  augment=None), tmp_path / "teacher.pt", progress=False)
    teacher = io.load(tmp_path / "teacher.pt").float().eval()
    cfg = _config(data=videos, frames=20, steps=3, teacher=str(tmp_path / "teacher.pt"), teacher_trunk_features=True,
                  augment=None, loss=LossWeights(ce=1.0, distill=1.0, corr_distill=1.0))
    folder = build_dataset(cfg, world=1).folder
    data = TeacherFeatureWindows(folder, teacher, count=3 * len(folder), progress=False)
    for i in (0, len(folder) + 1, 2 * len(folder)):
        raw, item = folder.sample(i % len(folder), epoch=i // len(folder)), data[i]
        assert torch.equal(item["video"], raw["video"]) and torch.equal(item["offsets"], raw["offsets"])
        _assert_trunk_features_of(teacher, raw, item["teacher_audio"], item["teacher_video"])

    result = train(cfg, tmp_path / "student.pt", progress=False)
    assert result.steps == 3 and result.history[-1]["distill"] >= 0 and "corr_distill" in result.history[-1]
    assert io.load(tmp_path / "student.pt").checkpoint_meta["recipe"]["teacher_trunk_features"] is True
    # the teacher's video embeddings alone are something to learn from: no logit distillation is switched on for them
    related = train(dataclasses.replace(cfg, steps=1, loss=LossWeights(ce=1.0, video_relation=1.0)),
                    tmp_path / "related.pt", progress=False)
    assert "video_relation" in related.history[-1] and "distill" not in related.history[-1]
    # synthetic clips mixed in learn from a teacher of their own (here the student just distilled) where one is
    # named: the same seeded run without it ends elsewhere
    mixed = dataclasses.replace(cfg, steps=2, synthetic_fraction=0.5)
    train(mixed, tmp_path / "labels.pt", progress=False)
    train(dataclasses.replace(mixed, synthetic_teacher=str(tmp_path / "student.pt")), tmp_path / "taught.pt",
          progress=False)
    labels, taught = io.load(tmp_path / "labels.pt").state_dict(), io.load(tmp_path / "taught.pt").state_dict()
    assert any(not torch.equal(labels[k], taught[k]) for k in labels)
    # the folder teacher's embeddings still teach their relations beside a synthetic teacher (on its rows alone)
    related_mixed = train(dataclasses.replace(mixed, synthetic_teacher=str(tmp_path / "student.pt"), loss=LossWeights(
        ce=1.0, corr_distill=1.0, audio_relation=1.0)), tmp_path / "related_mixed.pt", progress=False)
    assert related_mixed.history[-1]["audio_relation"] > 0
    io.save_checkpoint(build_model(_config(model_config={**TINY_STUDENT, "max_offset": 7})), tmp_path / "narrow.pt")
    with pytest.raises(ValueError, match=r"scores offsets \+-7, the student \+-15"):
        train(dataclasses.replace(mixed, synthetic_teacher=str(tmp_path / "narrow.pt")), tmp_path / "bad.pt",
              progress=False)
    with pytest.raises(ValueError, match="synthetic_teacher .*needs teacher_trunk_features"):
        train(_config(synthetic_teacher=str(tmp_path / "student.pt")), tmp_path / "bad.pt", progress=False)
    with pytest.raises(ValueError, match="synthetic_teacher .*needs a synthetic_fraction"):
        train(dataclasses.replace(cfg, synthetic_teacher=str(tmp_path / "student.pt")), tmp_path / "bad.pt",
              progress=False)
    with pytest.raises(ValueError, match="a teacher"):
        train(_config(data=videos, frames=20, teacher_trunk_features=True), tmp_path / "bad.pt", progress=False)
    with pytest.raises(ValueError, match="temporal jitter"):
        train(_config(data=videos, frames=20, teacher=str(tmp_path / "teacher.pt"), teacher_trunk_features=True,
                      augment={"jitter": True, "flip": True}), tmp_path / "bad.pt", progress=False)


def test_trunk_features_mix_in_a_fixed_pool_of_synthetic_clips(tmp_path):
    """trunk_features + synthetic_fraction: synthetic clips come from a pool rendered once, in sync, and are read like a
    folder (their windows are the trunks' output on the pool's own raw windows)."""
    pytest.importorskip("skimage", reason="the portrait ships in scikit-image: pip install 'edge-sync[dev]'")
    from edge_sync.data.talking_photo import make_talking_photo_clip
    from edge_sync.training.train import MixedDataset, build_dataset, build_model
    from edge_sync.training.trunk_features import trunk_feature_dataset

    make_talking_photo_clip(tmp_path / "videos" / "talk.mp4", "Seven apples and a warm coat for the old lighthouse.",
                            offset_frames=0, size=(256, 192))
    cfg = _config(data=str(tmp_path / "videos"), frames=12, steps=2, batch_size=4, trunk_features=True, augment=None,
                  synthetic_fraction=0.5, synthetic_pool=3, speech_bank=8)
    model = build_model(cfg).eval()
    data = trunk_feature_dataset(build_dataset(cfg, world=1), model, cfg, progress=False)
    assert isinstance(data, MixedDataset)
    pool = data.synthetic.folder
    assert len(pool.files) == 3 and all(s.frames == 12 + 2 * 15 for c in range(3) for s in pool.segments(c))
    index = next(i for i in range(len(data)) if data.is_synthetic(i))
    _, _, audio, video, _ = data.synthetic.window_features(index)
    item, epoch = pool.on_pass(index)
    _assert_trunk_features_of(model, pool.sample(item, epoch=epoch), audio, video)
    assert train(cfg, tmp_path / "mixed.pt", progress=False).steps == 2
