"""Self-supervised objectives: heads and shapes, negatives that are really out of sync, and learning on real clips."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import default_collate

from edge_sync.data.folders import VideoFolderDataset
from edge_sync.data.talking_photo import make_talking_photo_clip
from edge_sync.models.student import StudentConfig, X3DStudent
from edge_sync.training.selfsup import (OBJECTIVES, AlignedInfoNCE, AVCorrespondence, ContrastiveClip,
                                        CorrespondenceHead, MaskedAVPrediction, OrderHead, SelfSupervisedPretrainer,
                                        TemporalOrder, info_nce, nt_xent, roll_audio, shuffle_chunks, video_patches)

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
    for objective in (AVCorrespondence(32), TemporalOrder(32, audio=True), AlignedInfoNCE(), MaskedAVPrediction(32),
                      ContrastiveClip(32), ContrastiveClip(32, momentum=0.9, queue_size=4)):
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


# --- masked audio-visual prediction -----------------------------------------------------------
def trunk_grads(model) -> tuple[float, float]:
    """Total |grad| reaching the video and the audio trunk."""
    def total(module):
        return sum(float(p.grad.abs().sum()) for p in module.parameters() if p.grad is not None)
    return total(model.video_encoder), total(model.audio_encoder)


def test_video_patches_pool_inside_each_cell():
    cells = torch.arange(16, dtype=torch.float32).view(1, 1, 1, 4, 4)  # cell (r, c) holds 4r + c
    video = cells.repeat_interleave(8, dim=3).repeat_interleave(8, dim=4).expand(2, 3, 5, 32, 32)
    patches = video_patches(video + 0.01 * torch.randn(2, 3, 5, 32, 32), grid=4, patch=2)
    assert patches.shape == (2, 5, 16, 3 * 2 * 2)
    torch.testing.assert_close(patches, torch.arange(16.0).view(1, 1, 16, 1).expand_as(patches), atol=0.02, rtol=0)
    with pytest.raises(ValueError, match="multiples of 5"):
        video_patches(video, grid=5, patch=2)


def test_masks_have_the_asked_ratio_span_tubes_and_hide_exactly_the_masked_inputs():
    objective = MaskedAVPrediction(32, grid=7, video_ratio=0.5, tube=3, audio_ratio=0.3, audio_block=(3, 2))
    video_mask, audio_mask = objective.draw_masks(2, 8, 13)
    assert video_mask.shape == (2, 8, 49) and audio_mask.shape == (2, 13, 32)
    assert (video_mask.sum(dim=2) == round(0.5 * 49)).all()  # exactly that many patches per frame
    assert torch.equal(video_mask[:, 0], video_mask[:, 2]) and torch.equal(video_mask[:, 3], video_mask[:, 5])
    assert not torch.equal(video_mask[:, 0], video_mask[:, 3])  # a new tube, a new draw
    assert 0.25 < float(audio_mask.float().mean()) < 0.35
    batch = random_batch(b=2, t=8)
    audio, video = batch["audio"], batch["video"] + 3.0  # no pixel is 0 before masking
    masked_audio, masked_video = objective.mask_inputs(audio, video, video_mask, audio_mask)
    hidden = video_mask.view(2, 8, 7, 7).repeat_interleave(16, 2).repeat_interleave(16, 3)[:, None].expand_as(video)
    assert bool((masked_video[hidden] == 0).all()) and torch.equal(masked_video[~hidden], video[~hidden])
    cells = audio_mask[:, None]
    assert bool((masked_audio[cells] == 0).all()) and torch.equal(masked_audio[~cells], audio[~cells])


def test_masked_loss_is_finite_and_reaches_both_trunks():
    model = tiny_student()
    loss, metrics = MaskedAVPrediction(32).loss(model, random_batch(b=2, t=8))
    assert loss.dim() == 0 and torch.isfinite(loss)
    assert metrics["video_masked"] == pytest.approx(round(0.5 * 49) / 49) and 0.25 < metrics["audio_masked"] < 0.35
    assert metrics["video_loss"] > 0 and metrics["audio_loss"] > 0
    loss.backward()
    video_grad, audio_grad = trunk_grads(model)
    assert video_grad > 0 and audio_grad > 0


@pytest.mark.parametrize("cross_modal", [True, False])
def test_masked_loss_counts_only_the_masked_cells(monkeypatch, cross_modal):
    """Targets moved only where the input was visible leave the loss unchanged; moved where it was hidden
    they change it (video and audio alike). Fails if the MSE includes any unmasked cell."""
    model = tiny_student().eval()
    batch = random_batch(b=2, t=8)
    objective = MaskedAVPrediction(32, cross_modal=cross_modal, norm_video_target=True, seed=5)
    objective.generator.manual_seed(5)
    video_mask, audio_mask = objective.draw_masks(2, 8, 13)  # the masks the next loss call will draw
    frame_mask = MaskedAVPrediction._per_frame(audio_mask)
    true_targets = objective.targets

    def run(where_video, where_audio):
        def moved(audio, video):
            v, a = true_targets(audio, video)
            return v + 5.0 * where_video[..., None], a + 5.0 * where_audio
        monkeypatch.setattr(objective, "targets", moved)
        objective.generator.manual_seed(5)
        loss, metrics = objective.loss(model, batch)
        return float(loss.detach()), metrics

    nothing_v, nothing_a = torch.zeros_like(video_mask), torch.zeros_like(frame_mask)
    base, base_metrics = run(nothing_v, nothing_a)
    visible, visible_metrics = run(~video_mask, ~frame_mask)
    assert visible == pytest.approx(base, rel=1e-6)
    assert visible_metrics["video_loss"] == pytest.approx(base_metrics["video_loss"], rel=1e-6)
    assert visible_metrics["audio_loss"] == pytest.approx(base_metrics["audio_loss"], rel=1e-6)
    _, hidden_video = run(video_mask, nothing_a)
    _, hidden_audio = run(nothing_v, frame_mask)
    assert hidden_video["video_loss"] > base_metrics["video_loss"] + 1.0
    assert hidden_audio["audio_loss"] > base_metrics["audio_loss"] + 1.0


def test_masked_decoders_see_the_other_modality_only_when_cross_modal():
    for cross_modal, width in ((True, 64), (False, 32)):
        objective = MaskedAVPrediction(32, cross_modal=cross_modal)
        assert objective.video_decoder[0].in_channels == width and objective.audio_decoder[0].in_channels == width
        assert objective.audio_decoder[-1].out_channels == 13 * 4
        assert objective.video_decoder[-1].out_channels == 3 * 28 * 28
    with pytest.raises(ValueError, match="audio_bands"):
        MaskedAVPrediction(32, audio_bands=64).loss(tiny_student(), random_batch(b=2, t=8))
    with pytest.raises(ValueError, match="multiple of grid"):
        MaskedAVPrediction(32, grid=8, target_size=28)


# --- contrastive clips ------------------------------------------------------------------------
class FixedEmbed(torch.nn.Module):
    """embed() returns per-item embeddings chosen by the test, whatever the (augmented) input; with
    ``fresh`` every call returns new random ones, i.e. the two views have nothing in common."""

    def __init__(self, emb: torch.Tensor, fresh: bool = False) -> None:
        super().__init__()
        self.emb, self.fresh = emb, fresh
        self.scale = torch.nn.Parameter(torch.ones(()))

    def embed(self, audio, video):
        n = audio.shape[0] // self.emb.shape[0]  # SimCLR embeds both views in one call
        emb = torch.randn(n * self.emb.shape[0], *self.emb.shape[1:]) if self.fresh else self.emb.repeat(n, 1, 1)
        emb = torch.nn.functional.normalize(emb, dim=1) * self.scale
        return emb, emb


def plain_heads(objective: ContrastiveClip) -> ContrastiveClip:
    """Projection = temporal mean, normalised: the loss then acts on the embeddings' own geometry (a random
    MLP at init squeezes every clip vector into one narrow cone)."""
    objective.video_head.net = objective.audio_head.net = torch.nn.Identity()
    return objective


def test_contrastive_loss_is_low_when_the_views_agree_and_high_when_they_do_not():
    emb = torch.randn(4, 32, 8, generator=torch.Generator().manual_seed(1))
    batch = random_batch(b=4, t=8)
    for momentum in (None, 0.9):
        objective = plain_heads(ContrastiveClip(32, proj_dim=32, cross_modal=False, momentum=momentum, queue_size=8))
        agree, metrics = objective.loss(FixedEmbed(emb), batch)
        assert metrics["video_top1"] == 1.0 and metrics["audio_top1"] == 1.0
        torch.manual_seed(0)
        random, _ = objective.loss(FixedEmbed(emb, fresh=True), batch)
        assert float(agree.detach()) < 0.2 < 1.0 < float(random.detach())


def test_contrastive_loss_is_finite_and_reaches_both_trunks():
    model = tiny_student()
    loss, metrics = ContrastiveClip(32).loss(model, random_batch(b=3, t=8))
    assert loss.dim() == 0 and torch.isfinite(loss)
    assert {"top1", "video_loss", "audio_loss", "cross_loss", "cross_top1"} <= set(metrics)
    loss.backward()
    video_grad, audio_grad = trunk_grads(model)
    assert video_grad > 0 and audio_grad > 0


def test_views_keep_time_aligned_and_change_each_clip_as_a_whole():
    batch = random_batch(b=3, t=8)
    still = batch["video"][:, :, :1].clamp(-1, 1).expand(-1, -1, 8, -1, -1)  # one frame held for the clip
    audio, video = ContrastiveClip(32).augment(batch["audio"], still)
    assert audio.shape == batch["audio"].shape and video.shape == still.shape
    assert not torch.equal(video, still) and not torch.equal(audio, batch["audio"])
    torch.testing.assert_close(video, video[:, :, :1].expand_as(video))  # same crop/flip/colour for every frame
    objective = ContrastiveClip(32, noise=0.0, gain_db=6.0)
    objective.audio_transforms = []  # gain alone: only the log energy c0 moves, by one constant per clip
    audio, _ = objective.augment(batch["audio"], still)
    torch.testing.assert_close(audio[:, :, 1:], batch["audio"][:, :, 1:])
    shift = audio[:, 0, 0] - batch["audio"][:, 0, 0]
    torch.testing.assert_close(shift, shift[:, :1].expand_as(shift))
    assert bool((shift[:, 0].abs() <= 6.0 * np.log(10) / 10 + 1e-5).all()) and shift[:, 0].abs().min() > 0


def test_contrastive_never_uses_windows_of_the_same_clip_as_negatives():
    emb = torch.randn(4, 32, 8, generator=torch.Generator().manual_seed(2))
    emb[1] = emb[0]  # two windows of one clip, seen the same: each would be a perfect false negative
    batch = random_batch(b=4, t=8)
    objective = plain_heads(ContrastiveClip(32))
    same, same_metrics = objective.loss(FixedEmbed(emb), dict(batch, clip_id=torch.tensor([5, 5, 6, 7])))
    apart, apart_metrics = objective.loss(FixedEmbed(emb), dict(batch, clip_id=torch.tensor([5, 8, 6, 7])))
    assert same_metrics["video_top1"] == 1.0 and same_metrics["audio_top1"] == 1.0
    assert same_metrics["video_loss"] < apart_metrics["video_loss"] - 0.3
    # the functions themselves: a key of the query's own clip is no competitor, in the batch or the queue
    z = torch.nn.functional.normalize(torch.randn(3, 8, generator=torch.Generator().manual_seed(3)), dim=1)
    ids = torch.tensor([0, 0, 1])
    loss, acc = nt_xent(z, z, ids, 0.07)
    assert acc == 1.0 and float(loss) < 1e-3  # z[1] = z[0] would tie if it counted; it does not
    dup = torch.stack([z[0], z[0], z[2]])
    assert info_nce(dup, dup, ids, 0.07)[1] == 1.0 and info_nce(dup, dup, torch.arange(3), 0.07)[1] < 1.0
    queue = z[:1].clone()  # a past key of clip 0, equal to query 0's positive
    loose, _ = info_nce(z, z, ids, 0.07, queue, torch.tensor([0]))
    unknown, _ = info_nce(z, z, ids, 0.07, queue, torch.tensor([-1]))  # clip unknown: a real negative
    assert float(loose) < 1e-3 < float(unknown)


def test_moco_key_encoder_follows_by_ema_stays_out_of_the_optimizer_and_fills_its_queue():
    model = tiny_student()
    objective = ContrastiveClip(32, momentum=0.9, queue_size=8)
    trainer = SelfSupervisedPretrainer(model, {"contrastive": objective})
    optimizer = torch.optim.SGD(trainer.parameters(), lr=0.5)
    online = objective._online(model)
    before = {n: p.detach().clone() for n, p in online.named_parameters()}
    batch = random_batch(b=3, t=8)
    metrics = trainer.step(batch, optimizer)  # key = copy of the model at the loss, then one EMA update
    assert metrics["contrastive/queue"] == 3.0
    key = objective.key_encoder
    trained = {id(p) for p in trainer.parameters()}
    assert not any(id(p) in trained or p.requires_grad for p in key.parameters())
    moved = 0
    for name, p in key.named_parameters():
        after = dict(online.named_parameters())[name].detach()
        torch.testing.assert_close(p, 0.9 * before[name] + 0.1 * after)
        moved += not torch.equal(before[name], after)
    assert moved  # the step changed the model, so the EMA was really tested
    for name, buf in key.named_buffers():
        torch.testing.assert_close(buf, dict(online.named_buffers())[name])
    for _ in range(2):
        trainer.step(dict(batch, clip_id=torch.tensor([3, 4, 5])), optimizer)
    assert int(objective.queue_filled) == 8 and int(objective.queue_ptr) == 9 % 8
    assert objective.queue_ids.tolist() == [5, 1, 2, 3, 4, 5, 3, 4]  # FIFO: the third batch wrapped round
    trainer.eval()
    trainer.loss(batch)
    assert int(objective.queue_filled) == 8 and int(objective.queue_ptr) == 1  # evaluation enqueues nothing
    # moves with the pretrainer, and is saved with it
    trainer.to(torch.float64)
    assert all(p.dtype == torch.float64 for p in key.parameters())
    trainer.to(torch.float32)
    fresh_objective = ContrastiveClip(32, momentum=0.9, queue_size=8)
    fresh = SelfSupervisedPretrainer(tiny_student(), {"contrastive": fresh_objective})
    fresh.load_state_dict(trainer.state_dict())
    fresh.eval()
    fresh.loss(batch)  # the key encoder is built on first use, from the loaded state
    for (name, p), q in zip(key.state_dict().items(), fresh_objective.key_encoder.state_dict().values()):
        torch.testing.assert_close(p, q, msg=name)
    torch.testing.assert_close(fresh_objective.video_queue, objective.video_queue)


# --- building by name -------------------------------------------------------------------------
def test_from_names_builds_the_named_objectives_and_rejects_unknown_ones():
    model = tiny_student()
    kinds = {"correspondence": AVCorrespondence, "order": TemporalOrder, "infonce": AlignedInfoNCE,
             "masked": MaskedAVPrediction, "contrastive": ContrastiveClip}
    assert list(OBJECTIVES) == list(kinds)
    trainer = SelfSupervisedPretrainer.from_names(model, ["masked", "contrastive", "infonce"], weights={"masked": 2})
    assert list(trainer.objectives) == ["masked", "contrastive", "infonce"]
    for name, objective in trainer.objectives.items():
        assert type(objective) is kinds[name] and objective.name == name
    assert trainer.weights == {"masked": 2.0, "contrastive": 1.0, "infonce": 1.0}
    assert trainer.objectives["masked"].video_decoder[0].in_channels == 2 * 32  # sized from model.config
    assert SelfSupervisedPretrainer.from_names(model, ["masked"], embed_dim=16).objectives["masked"] \
        .video_decoder[0].in_channels == 32
    # the same seeds as default(): the same draws
    named = SelfSupervisedPretrainer.from_names(model, ["correspondence", "order", "infonce"], seed=3)
    default = SelfSupervisedPretrainer.default(model, seed=3)
    for name in ("correspondence", "order"):
        assert torch.equal(named.objectives[name].generator.get_state(), default.objectives[name].generator.get_state())
    known = "known: correspondence, order, infonce, masked, contrastive"
    with pytest.raises(ValueError, match=f"unknown.*'mased'.*{known}"):
        SelfSupervisedPretrainer.from_names(model, ["masked", "mased"])
    with pytest.raises(ValueError, match="at least one"):
        SelfSupervisedPretrainer.from_names(model, [])
    # per-objective settings, checked like the names
    moco = SelfSupervisedPretrainer.from_names(model, ["contrastive", "masked"],
                                               options={"contrastive": {"momentum": 0.99, "queue_size": 16},
                                                        "masked": {"audio_bands": 64}})
    assert moco.objectives["contrastive"].momentum == 0.99 and moco.objectives["contrastive"].queue_size == 16
    assert moco.objectives["masked"].audio_decoder[-1].out_channels == 64 * 4
    with pytest.raises(ValueError, match="bad options for objective 'masked'"):
        SelfSupervisedPretrainer.from_names(model, ["masked"], options={"masked": {"ratio": 0.5}})
    with pytest.raises(ValueError, match="does not use"):
        SelfSupervisedPretrainer.from_names(model, ["masked"], options={"order": {"chunks": 4}})
    with pytest.raises(ValueError, match="more than once"):
        SelfSupervisedPretrainer.from_names(model, ["order", "order"])


def test_masked_and_contrastive_pretraining_lowers_the_loss_on_real_clips(unlabeled):
    torch.manual_seed(0)
    model = tiny_student()
    trainer = SelfSupervisedPretrainer.from_names(model, ["masked", "contrastive"])
    optimizer = torch.optim.Adam(trainer.parameters(), lr=2e-3)
    first_of_clip = {}
    for i in range(len(unlabeled)):
        first_of_clip.setdefault(unlabeled.window(i)[0], i)
    batch = default_collate([unlabeled[i] for i in sorted(first_of_clip.values())])
    history = [trainer.step(batch, optimizer) for _ in range(20)]
    losses = np.array([h["loss"] for h in history])
    assert np.isfinite(losses).all()
    assert losses[-5:].mean() < 0.85 * losses[:5].mean()
    assert np.mean([h["masked/video_loss"] for h in history[-3:]]) < 0.5 * history[0]["masked/video_loss"]
    assert np.mean([h["contrastive/loss"] for h in history[-3:]]) < 0.85 * history[0]["contrastive/loss"]
