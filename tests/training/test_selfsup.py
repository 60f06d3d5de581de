"""Self-supervised objectives: heads and shapes, negatives that are really out of sync, and learning on real clips."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import default_collate

from edge_sync.data.folders import VideoFolderDataset
from edge_sync.data.talking_photo import make_talking_photo_clip
from edge_sync.models.student import StudentConfig, X3DStudent
from edge_sync.training.selfsup import (AlignedInfoNCE, AVCorrespondence, CorrespondenceHead, OrderHead,
                                        SelfSupervisedPretrainer, TemporalOrder, roll_audio, shuffle_chunks)

pytest.importorskip("skimage", reason="the portrait ships in scikit-image: pip install 'edge-sync[dev]'")

TEXTS = ["Seven bright boats sail past the old harbour wall.",
         "A quick brown fox jumps over the lazy dog twice.",
         "Please bring the blue map and a warm coat tomorrow."]
T = 16


def tiny_student(**kwargs) -> X3DStudent:
    torch.manual_seed(0)
    return X3DStudent(StudentConfig(video_trunk_kwargs={"width": 0.5}, audio_trunk_kwargs={"width": 0.5},
                                    embed_dim=32, head_hidden=16, **kwargs))


def random_batch(b: int = 3, t: int = T, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"audio": torch.randn(b, 1, 13, 4 * t, generator=g), "video": torch.randn(b, 3, t, 112, 112, generator=g),
            "clip_id": torch.arange(b)}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models gain nothing from intra-op threads, and OpenMP barriers crawl when another process
    holds a core (measured here: 0.1 s vs 3-7 s per step), so these tests run single-threaded."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def unlabeled(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    for i, text in enumerate(TEXTS):
        make_talking_photo_clip(root / f"speaker{i}" / "clip.mp4", text, offset_frames=0, size=(320, 240),
                                seed=i, speed=140 + 10 * i)
    return VideoFolderDataset(root, frames=T, max_offset=8, labels=False, seed=0)


# --- negatives are out of sync ------------------------------------------------------------------
def test_rolled_audio_is_out_of_sync_by_at_least_min_shift():
    audio = torch.arange(4 * T, dtype=torch.float32).repeat(2, 1, 13, 1)  # step j holds the value j
    shift = torch.tensor([3, T - 3])
    rolled, offsets = roll_audio(audio, shift)
    assert offsets.shape == (2, T) and bool((offsets.abs() >= 3).all())
    for b in range(2):
        for t in range(T):
            k = int(offsets[b, t])
            # video frame t's own sound (audio frame t) now sits at audio frame t + k
            torch.testing.assert_close(rolled[b, 0, :, 4 * (t + k):4 * (t + k + 1)], audio[b, 0, :, 4 * t:4 * (t + 1)])


def test_correspondence_negatives_from_the_dataset_are_real_shifts(unlabeled):
    batch = default_collate([unlabeled[i] for i in range(len(unlabeled))])
    shifted, offsets = AVCorrespondence(32).negatives(batch)
    assert shifted is batch["negative_audio"] and bool((offsets.abs() >= 3).all())
    for b in range(len(unlabeled)):
        k = int(batch["negative_offset"][b])
        assert (offsets[b] == k).all()
        lo, hi = max(0, -k), min(T, T - k)  # frames t whose partner t + k is inside the window
        torch.testing.assert_close(shifted[b, ..., 4 * (lo + k):4 * (hi + k)], batch["audio"][b, ..., 4 * lo:4 * hi])
        assert not torch.equal(shifted[b], batch["audio"][b])


def test_rolled_negatives_when_the_batch_has_none():
    batch = random_batch()
    objective = AVCorrespondence(32, min_shift=3)
    for _ in range(5):
        shifted, offsets = objective.negatives(batch)
        assert shifted.shape == batch["audio"].shape and bool((offsets.abs() >= 3).all())
    with pytest.raises(ValueError, match="T >= 6"):
        objective.negatives(random_batch(t=5))
    bad = dict(batch, negative_audio=batch["audio"], negative_offset=torch.tensor([0, 3, 4]))
    with pytest.raises(ValueError, match="negative_offset"):
        objective.negatives(bad)


def test_swapped_audio_never_comes_from_the_same_clip():
    model = tiny_student()
    batch = random_batch(b=4)
    objective = AVCorrespondence(32, swap=True)
    pos, neg = objective.logits(model, batch)
    assert pos.shape == (4,) and neg.shape == (8,)  # B shifted + B swapped
    batch["clip_id"] = torch.tensor([7, 7, 7, 7])  # all windows of one file: a swap could be in sync
    _, neg = objective.logits(model, batch)
    assert neg.shape == (4,)


def test_labelled_batches_with_offsets_are_refused():
    batch = dict(random_batch(), offsets=torch.full((3, T), 2))
    with pytest.raises(ValueError, match="labels=False"):
        AlignedInfoNCE().loss(tiny_student(), batch)


# --- heads and objectives ---------------------------------------------------------------------
def test_heads_give_one_logit_per_item_and_see_order():
    a, v = torch.randn(5, 32, T), torch.randn(5, 32, T)
    assert CorrespondenceHead(32)(a, v).shape == (5,)
    head = OrderHead(32)
    assert head(v).shape == (5,)
    assert not torch.allclose(head(v), head(v.flip(-1)))  # a plain mean would not tell


def test_shuffled_chunks_keep_content_and_change_order():
    x = torch.arange(T, dtype=torch.float32).repeat(6, 2, 1)
    g = torch.Generator().manual_seed(0)
    y = shuffle_chunks(x, 3, g)
    assert y.shape == x.shape
    for b in range(6):
        assert sorted(y[b, 0].tolist()) == list(range(T)) and not torch.equal(y[b], x[b])
    audio = torch.arange(4 * T, dtype=torch.float32).repeat(4, 1, 13, 1)
    scrambled = TemporalOrder(32).scramble(audio, steps_per_frame=4)
    frames = scrambled[:, 0, 0].reshape(4, T, 4)
    assert bool((frames[..., 1:] - frames[..., :-1] == 1).all())  # MFCC steps stay in order inside a frame
    assert not torch.equal(scrambled, audio)


def test_infonce_rewards_aligned_embeddings():
    class Fixed(torch.nn.Module):
        """embed() returns given embeddings: lets the loss be checked on known geometry."""

        def __init__(self, a, v):
            super().__init__()
            self.a, self.v = a, v

        def embed(self, audio, video):
            return self.a, self.v

    v = torch.nn.functional.normalize(torch.randn(2, 64, T), dim=1)
    batch = random_batch(b=2)
    good, metrics = AlignedInfoNCE(ignore_radius=0).loss(Fixed(v, v), batch)
    bad, _ = AlignedInfoNCE(ignore_radius=0).loss(Fixed(v.roll(5, dims=2), v), batch)
    assert metrics["top1"] == 1.0 and float(good) < 0.01 < float(bad)


def test_every_objective_runs_on_a_model_with_cross_modal_attention():
    model = tiny_student(attention=True)
    batch = random_batch(b=2, t=8)
    for objective in (AVCorrespondence(32), TemporalOrder(32, audio=True), AlignedInfoNCE()):
        loss, metrics = objective.loss(model, batch)
        assert loss.dim() == 0 and torch.isfinite(loss) and metrics
        loss.backward()


def test_pretrainer_combines_weighted_objectives():
    model = tiny_student()
    trainer = SelfSupervisedPretrainer.default(model, order_audio=True, weights={"infonce": 0.5})
    assert trainer.weights == {"correspondence": 1.0, "order": 1.0, "infonce": 0.5}
    head_params = {id(p) for p in trainer.objectives.parameters()}
    assert head_params and head_params <= {id(p) for p in trainer.parameters()}
    total, metrics = trainer(random_batch())  # forward == loss, so the pretrainer can be wrapped in DDP
    expected = sum(trainer.weights[n] * metrics[f"{n}/loss"] for n in trainer.weights)
    assert metrics["loss"] == pytest.approx(expected, rel=1e-5)
    assert float(total.detach()) == pytest.approx(expected, rel=1e-5)
    assert {"correspondence/acc", "order/video_acc", "order/audio_acc", "infonce/top1"} <= set(metrics)
    with pytest.raises(ValueError, match="unknown objectives"):
        SelfSupervisedPretrainer(model, {"infonce": AlignedInfoNCE()}, weights={"order": 1.0})


# --- learning on real clips -------------------------------------------------------------------
def test_pretraining_loss_decreases_on_real_unlabeled_clips(unlabeled):
    torch.manual_seed(0)
    model = tiny_student()
    trainer = SelfSupervisedPretrainer.default(model)
    optimizer = torch.optim.Adam(trainer.parameters(), lr=2e-3)
    first_of_clip = {}
    for i in range(len(unlabeled)):
        first_of_clip.setdefault(unlabeled.window(i)[0], i)
    batch = default_collate([unlabeled[i] for i in sorted(first_of_clip.values())])
    assert batch["clip_id"].tolist() == [0, 1, 2]  # one window per clip: every swapped negative is usable
    history = [trainer.step(batch, optimizer) for _ in range(30)]
    losses = np.array([h["loss"] for h in history])
    assert np.isfinite(losses).all()
    assert losses[-5:].mean() < 0.6 * losses[:5].mean()
    for name, factor in (("correspondence", 0.8), ("order", 1.0)):  # not just InfoNCE memorising
        assert np.mean([h[f"{name}/loss"] for h in history[-3:]]) < factor * history[0][f"{name}/loss"]
    assert history[-1]["correspondence/acc"] > 0.9
    assert history[-1]["infonce/top1"] > history[0]["infonce/top1"]
