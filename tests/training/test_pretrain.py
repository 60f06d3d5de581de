"""`edge-sync pretrain`: self-supervised pre-training on unlabeled videos writes a checkpoint that training
fine-tunes, from a folder of real videos, synthetic in-sync clips, or a mix."""
from __future__ import annotations

import json

import pytest
import torch

from edge_sync.models import io
from tests.training.tiny_configs import TINY_TEACHER


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    pytest.importorskip("skimage", reason="the portrait ships in scikit-image: pip install 'edge-sync[dev]'")
    from edge_sync.data.talking_photo import make_talking_photo_clip

    root = tmp_path_factory.mktemp("videos")
    make_talking_photo_clip(root / "talk.mp4", "Seven apples and a warm coat for the old lighthouse.",
                            offset_frames=0, size=(256, 192))
    return root


def _encoders(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items() if k.startswith(("video_encoder", "audio_encoder"))
            and v.is_floating_point()}


def test_in_sync_windows_of_a_folder_mixed_with_synthetic_clips(videos, tmp_path):
    from edge_sync.training.pretrain import SYNTHETIC_CLIP_IDS, PretrainConfig, UnlabeledWindows, build_pretrain_dataset

    cfg = PretrainConfig(data=str(videos), frames=12, steps=5, batch_size=4, synthetic_fraction=0.5, speech_bank=4,
                         cache_dir=str(tmp_path / "c"))
    data = build_pretrain_dataset(cfg)
    assert isinstance(data, UnlabeledWindows) and len(data) == 20
    items = [data[i] for i in range(20)]
    assert all(set(it) == {"audio", "video", "clip_id"} for it in items)
    ids = [int(it["clip_id"]) for it in items]
    synthetic = [i for i in ids if i >= SYNTHETIC_CLIP_IDS]
    assert 0 < len(synthetic) < 20 and len(set(synthetic)) == len(synthetic)  # each synthetic clip its own id
    assert all(it["video"].shape == (3, 12, 112, 112) and it["audio"].shape == (1, 13, 48) for it in items)
    assert torch.equal(data[3]["video"], items[3]["video"])  # item i is always the same window (reproducible)


def test_each_pass_visits_every_window_in_its_own_order(videos, tmp_path):
    """shuffle (default): a pass over the folder is a seeded permutation of its items, so a long clip's windows
    do not fill whole batches (no negatives for the contrastive objectives); without it, file order."""
    from edge_sync.training.pretrain import PretrainConfig, build_pretrain_dataset

    make = [("a", "Seven apples and a warm coat."), ("b", "The old lighthouse keeper sings at night.")]
    from edge_sync.data.talking_photo import make_talking_photo_clip

    root = tmp_path / "two"
    for name, text in make:
        make_talking_photo_clip(root / f"{name}.mp4", text, offset_frames=0, size=(256, 192))
    orders = {}
    for shuffle in (True, False):
        data = build_pretrain_dataset(PretrainConfig(data=str(root), frames=8, steps=12, batch_size=4,
                                                     shuffle=shuffle, cache_dir=str(tmp_path / "c")))
        n = len(data.folder)
        orders[shuffle] = [[(int(data[p * n + i]["clip_id"])) for i in range(n)] for p in range(4)]
        assert all(sorted(p) == sorted(orders[shuffle][0]) for p in orders[shuffle])  # every window once a pass
    assert all(p == sorted(p) for p in orders[False])  # file by file
    assert any(p != sorted(p) for p in orders[True])


@pytest.mark.parametrize("objectives", [["masked", "contrastive"], ["correspondence", "order", "infonce"]])
def test_pretrain_writes_a_checkpoint_that_training_fine_tunes(videos, tmp_path, objectives):
    from typer.testing import CliRunner

    from edge_sync.cli import app
    from edge_sync.training.train import TrainConfig, build_model

    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"model_config": TINY_TEACHER, "synthetic_fraction": 0.25, "speech_bank": 4,
                               "cache_dir": str(tmp_path / "c"), "checkpoint_every": 2}))
    out = tmp_path / "pre.pt"
    args = ["pretrain", "-o", str(out), "--data", str(videos), "--steps", "3", "--batch-size", "4", "--frames", "12",
            "--workers", "0", "--device", "cpu", "--config", str(cfg), "--json"]
    for name in objectives:
        args += ["--objective", name]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    summary = res.output[res.output.rindex('{"checkpoint"'):].splitlines()[0]  # after the progress bars
    assert json.loads(summary)["steps"] == 3
    model = io.load(out)
    meta = model.checkpoint_meta
    assert meta["pretrain"]["objectives"] == objectives and meta["steps_done"] == 3
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in meta["history"])
    torch.manual_seed(0)  # the initialisation the pre-training run started from
    fresh = build_model(TrainConfig(model="teacher", model_config=TINY_TEACHER))
    before, after = _encoders(fresh), _encoders(model)
    assert before.keys() == after.keys()
    assert any(not torch.equal(before[k], after[k]) for k in before)  # the encoders learned something
    tuned = build_model(TrainConfig(model=str(out)))  # what `edge-sync train --config '{"model": OUT}'` starts from
    assert all(torch.equal(after[k], v) for k, v in _encoders(tuned).items())


def test_unknown_objectives_and_weights_are_refused(tmp_path):
    from edge_sync.training.pretrain import PretrainConfig, pretrain

    with pytest.raises(ValueError, match="known"):
        pretrain(PretrainConfig(model_config=TINY_TEACHER, objectives=["nope"], steps=1, device="cpu"),
                 tmp_path / "x.pt", progress=False)
    with pytest.raises(ValueError, match="does not use"):
        pretrain(PretrainConfig(model_config=TINY_TEACHER, objectives=["infonce"], objective_weights={"masked": 1},
                                steps=1, device="cpu"), tmp_path / "x.pt", progress=False)
    assert not (tmp_path / "x.pt").exists()


def test_moco_options_reach_the_objective(videos, tmp_path):
    """objective_options configures an objective: contrastive with a momentum is MoCo (its queue fills)."""
    from edge_sync.training.pretrain import PretrainConfig, _pretrainer
    from edge_sync.training.train import TrainConfig, build_model

    cfg = PretrainConfig(model_config=TINY_TEACHER, objectives=["contrastive"], steps=2, batch_size=4, frames=12,
                         data=str(videos), device="cpu", cache_dir=str(tmp_path / "c"),
                         objective_options={"contrastive": {"momentum": 0.9, "queue_size": 8}},
                         objective_weights={"contrastive": 0.5})
    pretrainer = _pretrainer(build_model(TrainConfig(model="teacher", model_config=TINY_TEACHER)), cfg)
    objective = pretrainer.objectives["contrastive"]
    assert objective.momentum == 0.9 and pretrainer.weights == {"contrastive": 0.5}
    from edge_sync.training.pretrain import pretrain

    result = pretrain(cfg, tmp_path / "moco.pt", progress=False)
    assert result.steps == 2 and io.load(tmp_path / "moco.pt").checkpoint_meta["pretrain"]["objective_options"] == {
        "contrastive": {"momentum": 0.9, "queue_size": 8}}
