"""Self-supervised pre-training on unlabeled user videos: the encoders learn sync cues without offset labels.

A user's own footage is (nearly always) in sync, so it is free supervision: an aligned window is a positive,
and the same window with its audio moved by a few frames, or with another clip's audio, is a negative. The
objectives below read only the model's embeddings (``SyncModel.embed`` -> audio, video [B, D, T],
L2-normalised), so they pre-train teacher and student trunks alike before supervised offset training:

* :class:`AVCorrespondence`: aligned vs out-of-sync (shifted >= ``min_shift`` frames within the clip, or
  another clip's audio), from the per-frame products of the embeddings plus their pooled means;
* :class:`TemporalOrder`: is the video (and optionally the audio) in its true order, or reversed /
  chunk-shuffled; forces the trunks to encode motion, which lip sync is made of;
* :class:`AlignedInfoNCE`: audio frame t must pick video frame t among all frames of the batch;
* :class:`MaskedAVPrediction`: hide patches of the mouth and blocks of the MFCC and rebuild them from each
  frame's embeddings (by default from both modalities'): the trunks must encode, frame by frame, the mouth
  shape and the sound content, and the cross-modal decoders learn which sound goes with which mouth;
* :class:`ContrastiveClip`: two augmentations of one clip must find each other among the batch's other
  clips (SimCLR), or among a queue of past keys from a momentum encoder (MoCo); per modality and, by
  default, across modalities (one view's video must find the other view's audio).

:data:`OBJECTIVES` maps each objective's name to a factory, so
:meth:`SelfSupervisedPretrainer.from_names` (what a command line calls) builds any set of them by name.

Batches are dicts as :class:`~edge_sync.data.folders.VideoFolderDataset` (``labels=False``) collates them:
``audio`` [B, 1, 13, 4T] and ``video`` [B, 3, T, S, S] in sync, optionally ``negative_audio`` with its true
``negative_offset`` [B] (real audio from outside the window) and ``clip_id`` [B] (so two windows of one file
are never used as each other's negatives). Without ``negative_audio`` the shifted negatives are circular
rolls of the window's own audio, which still put every frame >= ``min_shift`` frames out of sync.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from edge_sync.data.augment import ColourJitter, FrequencyMask, HorizontalFlip, RandomResizedCrop, TimeMask
from edge_sync.spec import MFCC_PER_FRAME, N_MFCC

__all__ = ["roll_audio", "shuffle_chunks", "video_patches", "CorrespondenceHead", "OrderHead", "ProjectionHead",
           "SelfSupervisedObjective", "AVCorrespondence", "TemporalOrder", "AlignedInfoNCE", "MaskedAVPrediction",
           "ContrastiveClip", "nt_xent", "info_nce", "OBJECTIVES", "SelfSupervisedPretrainer"]

Batch = Mapping[str, Any]
Metrics = dict[str, float]


# --- negatives ---------------------------------------------------------------------------------
def roll_audio(audio: torch.Tensor, shift_frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Circularly delay each item's audio [B, 1, F, 4T] by ``shift_frames`` [B] video frames.

    Returns the rolled audio and the true per-frame offset [B, T]: video frame t's own sound moves to
    audio frame t + s (k = s) for t < T - s and wraps to t + s - T (k = s - T) after, so every frame is
    at least min(s, T - s) frames out of sync.
    """
    frames = audio.shape[-1] // MFCC_PER_FRAME
    shift = shift_frames.to(torch.int64).remainder(frames)
    steps = torch.arange(audio.shape[-1], device=audio.device)
    source = (steps[None, :] - MFCC_PER_FRAME * shift[:, None]).remainder(audio.shape[-1])  # [B, 4T]
    rolled = torch.gather(audio, -1, source[:, None, None, :].expand_as(audio))
    t = torch.arange(frames, device=audio.device)[None, :]
    offsets = torch.where(t < frames - shift[:, None], shift[:, None], shift[:, None] - frames)
    return rolled, offsets


def shuffle_chunks(x: torch.Tensor, chunks: int, generator: torch.Generator,
                   steps_per_frame: int = 1) -> torch.Tensor:
    """Cut the last axis of each item into ``chunks`` equal runs of whole frames and permute them
    (never the identity), so the content is the same and only the order is wrong."""
    b, length = x.shape[0], x.shape[-1]
    frames = length // steps_per_frame
    if frames < chunks:
        raise ValueError(f"need at least {chunks} frames to shuffle {chunks} chunks, got {frames}")
    bounds = [round(i * frames / chunks) * steps_per_frame for i in range(chunks + 1)]
    pieces = [x[..., bounds[i]:bounds[i + 1]] for i in range(chunks)]
    out = []
    for i in range(b):
        perm = torch.randperm(chunks, generator=generator)
        if bool((perm == torch.arange(chunks)).all()):
            perm = perm.roll(1)
        out.append(torch.cat([pieces[int(j)][i] for j in perm], dim=-1))
    return torch.stack(out)


def _derangement_partner(batch: int, clip_id: torch.Tensor | None, generator: torch.Generator,
                         device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """For each item, another item of the batch from a different clip (partner index, usable mask)."""
    if batch < 2:
        return torch.zeros(batch, dtype=torch.int64, device=device), torch.zeros(batch, dtype=torch.bool, device=device)
    step = int(torch.randint(1, batch, (1,), generator=generator))
    partner = (torch.arange(batch, device=device) + step) % batch
    if clip_id is None:
        return partner, torch.ones(batch, dtype=torch.bool, device=device)
    clip_id = clip_id.to(device)
    return partner, clip_id != clip_id[partner]


def _check_batch(batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    audio, video = batch["audio"], batch["video"]
    if audio.dim() != 4 or video.dim() != 5 or audio.shape[-1] != MFCC_PER_FRAME * video.shape[2]:
        raise ValueError(f"expected audio [B, 1, F, 4T] and video [B, 3, T, S, S], got {list(audio.shape)} "
                         f"and {list(video.shape)}")
    offsets = batch.get("offsets")
    if offsets is not None and bool((offsets != 0).any()):
        raise ValueError("self-supervised objectives need in-sync windows (the positives); this batch has "
                         "planted offsets: build the dataset with labels=False")
    return audio, video


def _modalities_independent(model: nn.Module) -> bool:
    """True when ``embed`` encodes audio and video separately: a SyncModel-like model that says it has no
    cross-modal attention. Unknown models are assumed to mix modalities (always correct, just slower)."""
    return hasattr(model, "attention") and model.attention is None


def _embed_pairs(model: nn.Module, audios: torch.Tensor, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Embed n*B audio windows against the same B videos: audio [nB, D, T], video [B, D, T].

    A model whose embeddings mix modalities (cross-modal attention) must see each pair; otherwise the
    video trunk, the expensive half, runs once.
    """
    n = audios.shape[0] // video.shape[0]
    if _modalities_independent(model):
        return model.embed(audios, video)
    a, v = model.embed(audios, video.repeat(n, *([1] * (video.dim() - 1))))
    return a, v[:video.shape[0]]


# --- heads -------------------------------------------------------------------------------------
class CorrespondenceHead(nn.Module):
    """(audio, video) embeddings [B, D, T] -> one in-sync logit per item.

    Frame branch: the per-frame product a*v and its sum (the cosine) through temporal convs, mean-pooled:
    sees *when* the two agree, which is what a shift breaks. Pooled branch: the concatenated mean
    embeddings, which catches audio from another clip (a shift keeps the means almost unchanged).
    """

    def __init__(self, embed_dim: int, hidden: int = 32) -> None:
        super().__init__()
        self.frame = nn.Sequential(nn.Conv1d(embed_dim + 1, hidden, 3, padding=1), nn.ReLU(),
                                   nn.Conv1d(hidden, hidden, 3, padding=1), nn.ReLU())
        self.pooled = nn.Linear(2 * embed_dim, hidden)
        self.out = nn.Linear(hidden, 1)

    def forward(self, audio_emb: torch.Tensor, video_emb: torch.Tensor) -> torch.Tensor:
        prod = audio_emb * video_emb
        frame = self.frame(torch.cat([prod, prod.sum(dim=1, keepdim=True)], dim=1)).mean(dim=2)
        pooled = self.pooled(torch.cat([audio_emb.mean(dim=2), video_emb.mean(dim=2)], dim=1))
        return self.out(F.relu(frame + pooled)).squeeze(1)


class OrderHead(nn.Module):
    """Embeddings [B, D, T] -> one in-order logit; temporal convs before pooling, since a plain mean is
    blind to order."""

    def __init__(self, embed_dim: int, hidden: int = 32) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv1d(embed_dim, hidden, 3, padding=1), nn.ReLU(),
                                 nn.Conv1d(hidden, hidden, 3, padding=2, dilation=2), nn.ReLU())
        self.out = nn.Linear(hidden, 1)

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        return self.out(self.net(emb).mean(dim=2)).squeeze(1)


def _balanced_bce(pos: torch.Tensor, neg: torch.Tensor) -> tuple[torch.Tensor, Metrics]:
    """Mean BCE of positives and of negatives, averaged: class balance whatever the number of negatives."""
    loss = 0.5 * (F.binary_cross_entropy_with_logits(pos, torch.ones_like(pos))
                  + F.binary_cross_entropy_with_logits(neg, torch.zeros_like(neg)))
    with torch.no_grad():
        pos_acc, neg_acc = (pos > 0).float().mean().item(), (neg <= 0).float().mean().item()
    return loss, {"pos_acc": pos_acc, "neg_acc": neg_acc, "acc": 0.5 * (pos_acc + neg_acc)}


# --- objectives --------------------------------------------------------------------------------
class SelfSupervisedObjective(nn.Module):
    """Base: ``loss(model, batch, shared=None) -> (scalar, metrics)``.

    ``shared`` is a per-step dict the objectives of one step pass along: whoever first embeds the aligned
    pair stores it under ``"aligned"`` (audio, video embeddings) and the others reuse it, so the video
    trunk, the expensive half, runs as few times as possible.
    """

    name = "objective"

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        self.generator = torch.Generator().manual_seed(seed)

    def loss(self, model: nn.Module, batch: Batch,
             shared: dict[str, Any] | None = None) -> tuple[torch.Tensor, Metrics]:
        raise NotImplementedError

    def update(self, model: nn.Module) -> None:
        """Called once per optimisation step, after ``optimizer.step()`` (by
        :meth:`SelfSupervisedPretrainer.update`): where state that is not trained by gradients (a momentum
        encoder) follows the model. Nothing by default."""


class AVCorrespondence(SelfSupervisedObjective):
    """Binary in-sync vs out-of-sync on (audio, video) windows.

    Negatives per item: the audio shifted by >= ``min_shift`` frames within the same clip (the batch's
    ``negative_audio`` when present, else a circular roll by s in [min_shift, T - min_shift]), and, with
    ``swap``, the audio of another clip of the batch.
    """

    name = "correspondence"

    def __init__(self, embed_dim: int, hidden: int = 32, min_shift: int = 3, swap: bool = True, seed: int = 0) -> None:
        super().__init__(seed)
        self.head = CorrespondenceHead(embed_dim, hidden)
        self.min_shift, self.swap = min_shift, swap

    def negatives(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Shifted same-clip audio [B, 1, F, 4T] and its true per-frame offsets [B, T] (all |k| >= min_shift)."""
        audio, video = _check_batch(batch)
        b, frames = audio.shape[0], video.shape[2]
        if "negative_audio" in batch:
            k = batch["negative_offset"].to(torch.int64).reshape(b, 1)
            if bool((k.abs() < self.min_shift).any()):
                raise ValueError(f"negative_offset must be >= {self.min_shift} frames away from sync, "
                                 f"got {k.flatten().tolist()}")
            return batch["negative_audio"], k.expand(b, frames)
        if frames < 2 * self.min_shift:
            raise ValueError(f"rolled negatives need T >= {2 * self.min_shift} frames, got {frames}")
        shift = torch.randint(self.min_shift, frames - self.min_shift + 1, (b,), generator=self.generator)
        return roll_audio(audio, shift.to(audio.device))

    def logits(self, model: nn.Module, batch: Batch,
               shared: dict[str, Any] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Positive logits [B] and negative logits [N] (shifted first, then usable swaps)."""
        audio, video = _check_batch(batch)
        b = audio.shape[0]
        shifted, _ = self.negatives(batch)
        shared = {} if shared is None else shared
        if "aligned" in shared:
            a_pos, v = shared["aligned"]
            a_shift, _ = _embed_pairs(model, shifted, video)
        else:
            a_all, v = _embed_pairs(model, torch.cat([audio, shifted]), video)
            a_pos, a_shift = a_all[:b], a_all[b:]
            shared["aligned"] = (a_pos, v)
        pos = self.head(a_pos, v)
        neg = [self.head(a_shift, v)]
        if self.swap:
            partner, usable = _derangement_partner(b, batch.get("clip_id"), self.generator, audio.device)
            if bool(usable.any()):
                # with cross-modal attention the partner's embedding depends on the pair: re-embed it
                a_swap = (a_pos[partner] if _modalities_independent(model)
                          else _embed_pairs(model, audio[partner], video)[0])
                neg.append(self.head(a_swap[usable], v[usable]))
        return pos, torch.cat(neg)

    def loss(self, model: nn.Module, batch: Batch,
             shared: dict[str, Any] | None = None) -> tuple[torch.Tensor, Metrics]:
        pos, neg = self.logits(model, batch, shared)
        return _balanced_bce(pos, neg)


class TemporalOrder(SelfSupervisedObjective):
    """Binary in-order vs reversed / chunk-shuffled, on pooled video embeddings (and audio with ``audio``)."""

    name = "order"

    def __init__(self, embed_dim: int, hidden: int = 32, chunks: int = 3, audio: bool = False, seed: int = 0) -> None:
        super().__init__(seed)
        self.video_head = OrderHead(embed_dim, hidden)
        self.audio_head = OrderHead(embed_dim, hidden) if audio else None
        self.chunks = chunks

    def scramble(self, x: torch.Tensor, steps_per_frame: int = 1) -> torch.Tensor:
        """Each item reversed or chunk-shuffled along time (the last axis after moving time there)."""
        reverse = torch.rand(x.shape[0], generator=self.generator) < 0.5
        shuffled = shuffle_chunks(x, self.chunks, self.generator, steps_per_frame)
        if steps_per_frame == 1:
            flipped = x.flip(-1)
        else:  # reverse whole frames, keep the MFCC steps inside a frame in order
            flipped = x.unflatten(-1, (-1, steps_per_frame)).flip(-2).flatten(-2)
        mask = reverse.to(x.device).view(-1, *([1] * (x.dim() - 1)))
        return torch.where(mask, flipped, shuffled)

    def loss(self, model: nn.Module, batch: Batch,
             shared: dict[str, Any] | None = None) -> tuple[torch.Tensor, Metrics]:
        audio, video = _check_batch(batch)
        b = audio.shape[0]
        wrong_video = self.scramble(video.transpose(2, -1)).transpose(2, -1)  # time axis 2 -> last and back
        wrong_audio = self.scramble(audio, MFCC_PER_FRAME) if self.audio_head is not None else audio
        shared = {} if shared is None else shared
        if "aligned" in shared:
            a_wrong, v_wrong = model.embed(wrong_audio, wrong_video)
            a, v = torch.cat([shared["aligned"][0], a_wrong]), torch.cat([shared["aligned"][1], v_wrong])
        else:
            a, v = model.embed(torch.cat([audio, wrong_audio]), torch.cat([video, wrong_video]))
            shared["aligned"] = (a[:b], v[:b])
        loss, metrics = _balanced_bce(self.video_head(v[:b]), self.video_head(v[b:]))
        metrics = {f"video_{k}": val for k, val in metrics.items()}
        if self.audio_head is not None:
            a_loss, a_metrics = _balanced_bce(self.audio_head(a[:b]), self.audio_head(a[b:]))
            loss = 0.5 * (loss + a_loss)
            metrics.update({f"audio_{k}": val for k, val in a_metrics.items()})
        return loss, metrics


class AlignedInfoNCE(SelfSupervisedObjective):
    """Per-frame InfoNCE: video frame t's positive is audio frame t of the same window; every other frame
    of the batch is a negative, except frames within ``ignore_radius`` of t (near-duplicates of the positive
    through the trunks' temporal receptive field) and other windows of the same clip (may overlap)."""

    name = "infonce"

    def __init__(self, temperature: float = 0.07, ignore_radius: int = 1, seed: int = 0) -> None:
        super().__init__(seed)
        self.temperature, self.ignore_radius = temperature, ignore_radius

    def loss(self, model: nn.Module, batch: Batch,
             shared: dict[str, Any] | None = None) -> tuple[torch.Tensor, Metrics]:
        audio, video = _check_batch(batch)
        shared = {} if shared is None else shared
        if "aligned" not in shared:
            shared["aligned"] = model.embed(audio, video)
        a, v = shared["aligned"]
        b, d, t = v.shape
        vf, af = v.permute(0, 2, 1).reshape(b * t, d), a.permute(0, 2, 1).reshape(b * t, d)
        sim = vf @ af.T / self.temperature  # [BT (video), BT (audio)]
        item = torch.arange(b, device=v.device).repeat_interleave(t)
        frame = torch.arange(t, device=v.device).repeat(b)
        same_item = item[:, None] == item[None, :]
        near = same_item & ((frame[:, None] - frame[None, :]).abs() <= self.ignore_radius)
        ignore = near & ~torch.eye(b * t, dtype=torch.bool, device=v.device)
        clip_id = batch.get("clip_id")
        if clip_id is not None:
            cid = clip_id.to(v.device)[item]
            ignore |= (cid[:, None] == cid[None, :]) & ~same_item
        sim = sim.masked_fill(ignore, float("-inf"))
        target = torch.arange(b * t, device=v.device)
        loss = 0.5 * (F.cross_entropy(sim, target) + F.cross_entropy(sim.T, target))
        with torch.no_grad():
            acc = (sim.argmax(dim=1) == target).float().mean().item()
        return loss, {"top1": acc}


# --- masked prediction -------------------------------------------------------------------------
def video_patches(video: torch.Tensor, grid: int, patch: int) -> torch.Tensor:
    """Video [B, 3, T, S, S] -> [B, T, grid*grid, 3*patch*patch]: every frame cut into a grid x grid of cells,
    each average-pooled to patch x patch pixels (row-major cells, channel-major pixels inside a cell).

    The pooling stays inside a cell, so a masked cell's target holds nothing of its visible neighbours.
    """
    b, c, t, h, w = video.shape
    if h % grid or w % grid:
        raise ValueError(f"a {grid} x {grid} patch grid needs crops whose sides are multiples of {grid}, "
                         f"got {h} x {w}")
    x = video.permute(0, 2, 1, 3, 4).reshape(b, t, c, grid, h // grid, grid, w // grid)
    x = x.permute(0, 1, 3, 5, 2, 4, 6).reshape(b * t * grid * grid, c, h // grid, w // grid)
    return F.adaptive_avg_pool2d(x, patch).reshape(b, t, grid * grid, c * patch * patch)


def _frame_mlp(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    """A per-frame MLP over [B, C, T] (1x1 convs): frame t's output sees only frame t's embeddings, so what
    fills frame t's gaps must be in those embeddings (the trunks may use neighbouring frames to put it there)."""
    return nn.Sequential(nn.Conv1d(in_dim, hidden, 1), nn.GELU(), nn.Conv1d(hidden, out_dim, 1))


def _random_subset(shape: tuple[int, ...], count: int, generator: torch.Generator) -> torch.Tensor:
    """Boolean ``shape`` with exactly ``count`` True entries along the last axis, uniformly placed."""
    rank = torch.rand(shape, generator=generator).argsort(dim=-1).argsort(dim=-1)
    return rank < count


def _masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the masked elements only (``mask`` broadcasts to ``pred``); 0 if none.

    ``torch.where`` rather than a product: an unmasked cell contributes neither value nor gradient, even inf.
    """
    mask = mask.expand_as(pred)
    err = torch.where(mask, (pred - target).square(), torch.zeros((), dtype=pred.dtype, device=pred.device))
    return err.sum() / mask.sum().clamp_min(1)


class MaskedAVPrediction(SelfSupervisedObjective):
    """Masked audio-visual prediction: hide patches of the mouth and time-frequency blocks of the MFCC, embed
    the masked pair, and rebuild the hidden parts from the per-frame embeddings.

    Video: each frame's crop is a ``grid`` x ``grid`` grid of patches; ``video_ratio`` of them are set to 0
    (mid-grey), the same patches for ``tube`` consecutive frames, so a hidden patch is not visible in its tube's
    other frames (the trunks still see neighbouring tubes, so part of the task is interpolation in time; a longer
    ``tube`` makes it harder). Audio: the [F, 4T] MFCC is tiled into ``audio_block`` = (bands, steps) blocks and
    ``audio_ratio`` of them are set to 0. Small per-frame decoders owned by the objective map frame t's
    embeddings to its patches at ``target_size`` resolution and to its F x 4 MFCC block; the loss is the MSE
    on the masked patches / cells only (what is visible is trivial to copy and teaches nothing).

    Why: the embeddings are per frame and spatially pooled, so to fill frame t's gaps the trunks must encode
    frame t's mouth shape and sound content, the very things sync is judged on. With ``cross_modal`` (default)
    each decoder also sees the other modality's embedding: a hidden part of the mouth can be told from the
    sound and a hidden band from the mouth, which is what makes the objective audio-visual.
    """

    name = "masked"

    def __init__(self, embed_dim: int, grid: int = 7, target_size: int = 28, video_ratio: float = 0.5,
                 tube: int = 2, audio_ratio: float = 0.3, audio_block: tuple[int, int] = (3, 2),
                 audio_bands: int = N_MFCC, cross_modal: bool = True, hidden: int = 64,
                 norm_video_target: bool = False, norm_audio_target: bool = True, video_weight: float = 1.0,
                 audio_weight: float = 1.0, seed: int = 0) -> None:
        super().__init__(seed)
        if target_size % grid:
            raise ValueError(f"target_size {target_size} must be a multiple of grid {grid} (whole pixels per patch)")
        for label, ratio in (("video_ratio", video_ratio), ("audio_ratio", audio_ratio)):
            if not 0.0 <= ratio < 1.0:
                raise ValueError(f"{label} must be in [0, 1), got {ratio}")
        if tube < 1 or min(audio_block) < 1:
            raise ValueError(f"tube and audio_block must be >= 1, got {tube} and {audio_block}")
        if video_weight < 0 or audio_weight < 0 or video_weight + audio_weight <= 0:
            raise ValueError(f"weights must be >= 0 and not both 0, got {video_weight} and {audio_weight}")
        self.grid, self.patch, self.tube = grid, target_size // grid, tube
        self.video_ratio, self.audio_ratio = video_ratio, audio_ratio
        self.audio_block, self.audio_bands = (int(audio_block[0]), int(audio_block[1])), audio_bands
        self.cross_modal = cross_modal
        self.norm_video_target, self.norm_audio_target = norm_video_target, norm_audio_target
        self.video_weight, self.audio_weight = video_weight, audio_weight
        in_dim = embed_dim * (2 if cross_modal else 1)
        self.video_decoder = _frame_mlp(in_dim, hidden, grid * grid * 3 * self.patch ** 2)
        self.audio_decoder = _frame_mlp(in_dim, hidden, audio_bands * MFCC_PER_FRAME)

    def draw_masks(self, batch_size: int, frames: int, bands: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Random masks (True = hidden), on the CPU: patches [B, T, grid*grid], MFCC cells [B, F, 4T].

        Exactly round(ratio * n) of the n patches of a tube / blocks of a window, so the masked fraction does
        not vary from batch to batch (the audio cell fraction differs slightly when F is not a multiple of
        the block height: the last band block is cut short).
        """
        cells = self.grid * self.grid
        tubes = math.ceil(frames / self.tube)
        video = _random_subset((batch_size, tubes, cells), round(self.video_ratio * cells), self.generator)
        video = video.repeat_interleave(self.tube, dim=1)[:, :frames]
        fb, ts = self.audio_block
        steps = MFCC_PER_FRAME * frames
        nb, nt = math.ceil(bands / fb), math.ceil(steps / ts)
        blocks = _random_subset((batch_size, nb * nt), round(self.audio_ratio * nb * nt), self.generator)
        audio = blocks.view(batch_size, nb, nt).repeat_interleave(fb, dim=1).repeat_interleave(ts, dim=2)
        return video, audio[:, :bands, :steps]

    def mask_inputs(self, audio: torch.Tensor, video: torch.Tensor, video_mask: torch.Tensor,
                    audio_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Copies of audio [B, 1, F, 4T] and video [B, 3, T, S, S] with the masked cells / patches set to 0."""
        b, _, t, h, w = video.shape
        pixels = video_mask.view(b, t, self.grid, self.grid)
        pixels = pixels.repeat_interleave(h // self.grid, dim=2).repeat_interleave(w // self.grid, dim=3)
        return audio.masked_fill(audio_mask[:, None], 0.0), video.masked_fill(pixels[:, None], 0.0)

    def targets(self, audio: torch.Tensor, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """What the decoders must output from the unmasked inputs: video patches [B, T, grid*grid, 3*p*p]
        (each standardised with ``norm_video_target``, as MAE), and each frame's MFCC [B, T, F*4]
        (with ``norm_audio_target``, each band standardised over the window: raw MFCCs differ in scale by
        orders of magnitude, c0 being the log energy, and the level is loudness, not speech)."""
        v = video_patches(video, self.grid, self.patch)
        if self.norm_video_target:
            v = (v - v.mean(dim=-1, keepdim=True)) / (v.var(dim=-1, keepdim=True) + 1e-6).sqrt()
        a = audio[:, 0]
        if self.norm_audio_target:
            a = (a - a.mean(dim=-1, keepdim=True)) / (a.var(dim=-1, keepdim=True) + 1e-6).sqrt()
        return v, self._per_frame(a)

    def predict(self, model: nn.Module, audio: torch.Tensor,
                video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Decoder outputs from the (masked) inputs, shaped as :meth:`targets`."""
        a, v = model.embed(audio, video)
        video_in = torch.cat([v, a], dim=1) if self.cross_modal else v
        audio_in = torch.cat([a, v], dim=1) if self.cross_modal else a
        b, t = v.shape[0], v.shape[2]
        v_pred = self.video_decoder(video_in).transpose(1, 2).reshape(b, t, self.grid * self.grid, -1)
        return v_pred, self.audio_decoder(audio_in).transpose(1, 2)

    @staticmethod
    def _per_frame(cells: torch.Tensor) -> torch.Tensor:
        """[B, F, 4T] -> [B, T, F*4]: frame t's MFCC block, as the audio decoder outputs it."""
        b, f, steps = cells.shape
        frames = cells.reshape(b, f, steps // MFCC_PER_FRAME, MFCC_PER_FRAME).permute(0, 2, 1, 3)
        return frames.reshape(b, -1, f * MFCC_PER_FRAME)

    def loss(self, model: nn.Module, batch: Batch,
             shared: dict[str, Any] | None = None) -> tuple[torch.Tensor, Metrics]:
        audio, video = _check_batch(batch)
        b, bands, frames = audio.shape[0], audio.shape[2], video.shape[2]
        if bands != self.audio_bands:
            raise ValueError(f"the audio decoder was built for {self.audio_bands} bands, the batch has {bands}: "
                             f"set audio_bands (from_names(..., options={{'masked': {{'audio_bands': {bands}}}}}))")
        if video.shape[-2] % self.grid or video.shape[-1] % self.grid:
            raise ValueError(f"a {self.grid} x {self.grid} patch grid needs crops whose sides are multiples of "
                             f"{self.grid}, got {list(video.shape[-2:])}: set grid")
        video_mask, audio_mask = (m.to(audio.device) for m in self.draw_masks(b, frames, bands))
        v_pred, a_pred = self.predict(model, *self.mask_inputs(audio, video, video_mask, audio_mask))
        v_target, a_target = self.targets(audio, video)
        v_loss = _masked_mse(v_pred, v_target, video_mask[..., None])
        a_loss = _masked_mse(a_pred, a_target, self._per_frame(audio_mask))
        loss = (self.video_weight * v_loss + self.audio_weight * a_loss) / (self.video_weight + self.audio_weight)
        return loss, {"video_loss": float(v_loss.detach()), "audio_loss": float(a_loss.detach()),
                      "video_masked": float(video_mask.float().mean()),
                      "audio_masked": float(audio_mask.float().mean())}


# --- contrastive clips -------------------------------------------------------------------------
class ProjectionHead(nn.Module):
    """Embeddings [B, D, T] -> one L2-normalised clip vector [B, P]: temporal mean, then a small MLP (as
    SimCLR: the loss acts on the projection, so the embeddings keep what the augmentations change)."""

    def __init__(self, embed_dim: int, hidden: int = 128, out_dim: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(embed_dim, hidden), nn.ReLU(), nn.Linear(hidden, out_dim))

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net(emb.mean(dim=2)), dim=1, eps=1e-6)


def _pick(logits: torch.Tensor, ignore: torch.Tensor, target: torch.Tensor,
          temperature: float) -> tuple[torch.Tensor, float]:
    """Cross-entropy of each row picking its ``target`` column among the columns not ignored; top-1 accuracy."""
    logits = logits.masked_fill(ignore, float("-inf")) / temperature
    with torch.no_grad():
        acc = (logits.argmax(dim=1) == target).float().mean().item()
    return F.cross_entropy(logits, target), acc


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, clip_id: torch.Tensor,
            temperature: float) -> tuple[torch.Tensor, float]:
    """SimCLR's NT-Xent on two views [B, P]: each of the 2B vectors must pick its other view among the other
    2B - 1, less those of its own clip (other windows of one file may show the same speech)."""
    b = z1.shape[0]
    z, ids = torch.cat([z1, z2]), torch.cat([clip_id, clip_id])
    target = (torch.arange(2 * b, device=z.device) + b) % (2 * b)
    ignore = ids[:, None] == ids[None, :]  # includes each vector itself
    ignore[torch.arange(2 * b, device=z.device), target] = False
    return _pick(z @ z.T, ignore, target, temperature)


def info_nce(query: torch.Tensor, key: torch.Tensor, clip_id: torch.Tensor, temperature: float,
             queue: torch.Tensor | None = None, queue_ids: torch.Tensor | None = None) -> tuple[torch.Tensor, float]:
    """query i [B, P] must pick key i [B, P] among the batch's other keys and the ``queue`` [Q, P], except
    those of its own clip (``queue_ids`` [Q]; -1 = unknown clip, never excluded)."""
    b = query.shape[0]
    logits = query @ key.T
    ignore = (clip_id[:, None] == clip_id[None, :]) & ~torch.eye(b, dtype=torch.bool, device=query.device)
    if queue is not None and queue.shape[0]:
        logits = torch.cat([logits, query @ queue.T], dim=1)
        ids = queue_ids if queue_ids is not None else torch.full((queue.shape[0],), -1, device=query.device)
        ignore = torch.cat([ignore, (clip_id[:, None] == ids[None, :]) & (ids >= 0)[None, :]], dim=1)
    return _pick(logits, ignore, torch.arange(b, device=query.device), temperature)


class ContrastiveClip(SelfSupervisedObjective):
    """Clip-level contrastive learning: two augmentations of one clip are positives, other clips negatives.

    Views: video gets one random resized crop for all frames of the clip, a horizontal flip and a
    brightness/contrast change (per clip: per-frame changes would look like motion); audio gets SpecAugment
    band/time masks, a gain (for MFCC: the log energy c0 moves by gain_db * ln(10) / 10; other features:
    every band) and Gaussian noise relative to each band's spread. Time stays aligned: a shifted view would
    teach the trunks to ignore sync. Each view's embeddings are mean-pooled over time and projected by a
    small MLP per modality (:class:`ProjectionHead`).

    Losses, averaged: video view 1 vs view 2, audio view 1 vs view 2 and, with ``cross_modal`` (default),
    video of one view vs audio of the other: a cross-modal positive is only recognisable from what the mouth
    and the sound share, the content sync rests on. Windows sharing a ``clip_id`` are never negatives.

    ``momentum=None`` (default): SimCLR, both views through the model, NT-Xent within each modality.
    ``momentum=m``: MoCo, view 2 through a momentum copy of the model and heads (built on the first call,
    no gradients, hidden from ``parameters()`` but moved by ``.to()`` and saved in ``state_dict``), updated
    by EMA in :meth:`update`, once per step; its keys also fill a FIFO queue of ``queue_size`` negatives per
    modality (queue entries carry their clip_id, so a past window of the query's own clip is no negative
    either). Keys are not gathered across DDP ranks: the queue is per process (rank 0's where DDP broadcasts
    buffers).
    """

    name = "contrastive"

    def __init__(self, embed_dim: int, proj_dim: int = 64, hidden: int = 128, temperature: float = 0.07,
                 cross_modal: bool = True, momentum: float | None = None, queue_size: int = 1024,
                 crop_scale: tuple[float, float] = (0.6, 1.0), flip: float = 0.5, brightness: float = 0.3,
                 contrast: float = 0.3, freq_mask_width: int = 3, time_mask_width: int = 4, time_masks: int = 2,
                 gain_db: float = 6.0, noise: float = 0.05, seed: int = 0) -> None:
        super().__init__(seed)
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if momentum is not None and not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1) or None, got {momentum}")
        if queue_size < 0:
            raise ValueError(f"queue_size must be >= 0, got {queue_size}")
        self.temperature, self.cross_modal, self.momentum = temperature, cross_modal, momentum
        self.gain_db, self.noise = gain_db, noise
        self.video_head = ProjectionHead(embed_dim, hidden, proj_dim)
        self.audio_head = ProjectionHead(embed_dim, hidden, proj_dim)
        self.video_transforms = [RandomResizedCrop(p=1.0, scale=crop_scale), HorizontalFlip(p=flip),
                                 ColourJitter(p=0.8, brightness=brightness, contrast=contrast, saturation=0.0)]
        self.audio_transforms = [FrequencyMask(p=0.5, max_width=freq_mask_width),
                                 TimeMask(p=0.5, max_width=time_mask_width, num_masks=time_masks)]
        self.queue_size = queue_size if momentum is not None else 0
        if momentum is not None:
            self.register_buffer("video_queue", torch.zeros(queue_size, proj_dim))
            self.register_buffer("audio_queue", torch.zeros(queue_size, proj_dim))
            self.register_buffer("queue_ids", torch.full((queue_size,), -1, dtype=torch.int64))
            self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.int64))
            self.register_buffer("queue_filled", torch.zeros((), dtype=torch.int64))
        # plain attributes, not submodules: the key encoder must stay out of parameters() and the optimizer
        object.__setattr__(self, "_key", None)
        object.__setattr__(self, "_pending_key_state", None)

    # --- views ---
    def augment(self, audio: torch.Tensor, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One random view of every clip of the batch (audio [B, 1, F, 4T], video [B, 3, T, S, S])."""
        audios, videos = [], []
        for i in range(audio.shape[0]):
            sample = {"audio": audio[i], "video": video[i]}
            for transform in [*self.video_transforms, *self.audio_transforms]:
                sample = transform(sample, self.generator)
            audios.append(sample["audio"])
            videos.append(sample["video"])
        a, v = torch.stack(audios), torch.stack(videos)
        b = a.shape[0]
        if self.gain_db:
            db = (torch.rand(b, generator=self.generator) * 2 - 1) * self.gain_db
            shift = (db * math.log(10.0) / 10.0).to(a.device, a.dtype).view(b, 1, 1)
            if a.shape[2] == N_MFCC:  # 20 log10(g) dB scales the power by g^2: log energy + 2 ln g
                a = torch.cat([a[:, :, :1] + shift[..., None], a[:, :, 1:]], dim=2)
            else:
                a = a + shift[..., None]
        if self.noise:
            spread = audio.std(dim=-1, keepdim=True)
            a = a + self.noise * spread * torch.randn(a.shape, generator=self.generator).to(a.device, a.dtype)
        return a, v

    # --- momentum encoder ---
    @property
    def key_encoder(self) -> nn.ModuleDict | None:
        """The momentum copy (``model``, ``video_head``, ``audio_head``), or None before the first MoCo call."""
        return self._key

    def _online(self, model: nn.Module) -> nn.ModuleDict:
        return nn.ModuleDict({"model": model, "video_head": self.video_head, "audio_head": self.audio_head})

    def _key_for(self, model: nn.Module) -> nn.ModuleDict:
        if self._key is None:
            key = copy.deepcopy(self._online(model))
            key.requires_grad_(False)
            if self._pending_key_state is not None:
                key.load_state_dict(self._pending_key_state)
                object.__setattr__(self, "_pending_key_state", None)
            object.__setattr__(self, "_key", key)
        return self._key

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """MoCo only: key <- m * key + (1 - m) * online for parameters; buffers (BatchNorm statistics) copied."""
        if self.momentum is None or self._key is None:
            return
        online = self._online(model)
        params = dict(online.named_parameters())
        for name, p in self._key.named_parameters():
            p.mul_(self.momentum).add_(params[name].detach(), alpha=1.0 - self.momentum)
        buffers = dict(online.named_buffers())
        for name, buf in self._key.named_buffers():
            buf.copy_(buffers[name])

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> "ContrastiveClip":
        """``.to()`` / ``.cuda()`` / ``.double()`` move the hidden key encoder too."""
        super()._apply(fn, recurse)
        if self._key is not None:
            self._key._apply(fn, recurse)
        return self

    def get_extra_state(self) -> dict[str, Any]:
        """The key encoder's weights, so a MoCo run resumes with its momentum copy, not a fresh one."""
        return {"key": None if self._key is None else self._key.state_dict()}

    def set_extra_state(self, state: Any) -> None:
        key_state = state.get("key") if isinstance(state, Mapping) else None
        if key_state is None:
            return
        if self._key is None:  # built lazily from the model: load once it exists
            object.__setattr__(self, "_pending_key_state", key_state)
        else:
            self._key.load_state_dict(key_state)

    @torch.no_grad()
    def _enqueue(self, video_keys: torch.Tensor, audio_keys: torch.Tensor, ids: torch.Tensor) -> None:
        if self.queue_size == 0:
            return
        n = min(video_keys.shape[0], self.queue_size)
        index = (self.queue_ptr + torch.arange(n, device=self.queue_ptr.device)) % self.queue_size
        self.video_queue[index] = video_keys[-n:].to(self.video_queue.dtype)
        self.audio_queue[index] = audio_keys[-n:].to(self.audio_queue.dtype)
        self.queue_ids[index] = ids[-n:].to(self.queue_ids.device)
        self.queue_ptr.copy_((self.queue_ptr + n) % self.queue_size)
        self.queue_filled.clamp_(max=self.queue_size - n).add_(n)

    # --- loss ---
    def loss(self, model: nn.Module, batch: Batch,
             shared: dict[str, Any] | None = None) -> tuple[torch.Tensor, Metrics]:
        audio, video = _check_batch(batch)
        b = audio.shape[0]
        clip_id = batch.get("clip_id")
        if clip_id is not None:
            ids = clip_id.to(audio.device, torch.int64).reshape(b)
            if bool((ids < 0).any()):
                raise ValueError("clip_id must be >= 0 (-1 marks queue entries of unknown clips)")
        else:
            ids = torch.arange(b, device=audio.device)
        a1, v1 = self.augment(audio, video)
        a2, v2 = self.augment(audio, video)
        parts: dict[str, tuple[torch.Tensor, float]] = {}
        if self.momentum is None:
            ea, ev = model.embed(torch.cat([a1, a2]), torch.cat([v1, v2]))
            za, zv = self.audio_head(ea), self.video_head(ev)
            (za1, za2), (zv1, zv2) = za.split(b), zv.split(b)
            parts["video"] = nt_xent(zv1, zv2, ids, self.temperature)
            parts["audio"] = nt_xent(za1, za2, ids, self.temperature)
            video_queue = audio_queue = queue_ids = None
        else:
            ea1, ev1 = model.embed(a1, v1)
            za1, zv1 = self.audio_head(ea1), self.video_head(ev1)
            key = self._key_for(model)
            key.train(model.training)
            with torch.no_grad():
                ea2, ev2 = key["model"].embed(a2, v2)
                za2, zv2 = key["audio_head"](ea2), key["video_head"](ev2)
            filled = int(self.queue_filled)
            # clones: the queue is updated in place below, after these joined the graph
            video_queue, audio_queue = self.video_queue[:filled].clone(), self.audio_queue[:filled].clone()
            queue_ids = self.queue_ids[:filled].clone()
            parts["video"] = info_nce(zv1, zv2, ids, self.temperature, video_queue, queue_ids)
            parts["audio"] = info_nce(za1, za2, ids, self.temperature, audio_queue, queue_ids)
        if self.cross_modal:
            va_loss, va_acc = info_nce(zv1, za2, ids, self.temperature, audio_queue, queue_ids)
            av_loss, av_acc = info_nce(za1, zv2, ids, self.temperature, video_queue, queue_ids)
            parts["cross"] = 0.5 * (va_loss + av_loss), 0.5 * (va_acc + av_acc)
        if self.momentum is not None and self.training:
            self._enqueue(zv2, za2, ids if clip_id is not None else torch.full_like(ids, -1))
        loss = torch.stack([value for value, _ in parts.values()]).mean()
        metrics: Metrics = {"top1": sum(acc for _, acc in parts.values()) / len(parts)}
        for part, (value, acc) in parts.items():
            metrics[f"{part}_loss"], metrics[f"{part}_top1"] = float(value.detach()), acc
        if self.momentum is not None:
            metrics["queue"] = float(self.queue_filled)
        return loss, metrics


OBJECTIVES: dict[str, Callable[..., SelfSupervisedObjective]] = {
    "correspondence": lambda dim, seed, **options: AVCorrespondence(dim, seed=seed, **options),
    "order": lambda dim, seed, **options: TemporalOrder(dim, seed=seed, **options),
    "infonce": lambda dim, seed, **options: AlignedInfoNCE(seed=seed, **options),
    "masked": lambda dim, seed, **options: MaskedAVPrediction(dim, seed=seed, **options),
    "contrastive": lambda dim, seed, **options: ContrastiveClip(dim, seed=seed, **options),
}
"""Objective name -> factory(embed_dim, seed, **options) (options: the objective's other constructor
arguments, defaults otherwise): what :meth:`SelfSupervisedPretrainer.from_names` builds from."""


# --- combination -------------------------------------------------------------------------------
class SelfSupervisedPretrainer(nn.Module):
    """The model plus weighted objectives; ``parameters()`` covers the trunks and every head, so one
    optimizer over the pretrainer trains them together. The aligned embeddings are computed once per step
    (by the first objective) and shared by the others."""

    def __init__(self, model: nn.Module, objectives: Mapping[str, SelfSupervisedObjective],
                 weights: Mapping[str, float] | None = None, grad_clip: float | None = 5.0) -> None:
        super().__init__()
        if not objectives:
            raise ValueError("give at least one objective")
        self.model = model
        self.objectives = nn.ModuleDict(dict(objectives))
        weights = dict(weights or {})
        unknown = set(weights) - set(objectives)
        if unknown:
            raise ValueError(f"weights for unknown objectives {sorted(unknown)}; objectives: {sorted(objectives)}")
        self.weights = {name: float(weights.get(name, 1.0)) for name in objectives}
        self.grad_clip = grad_clip

    @classmethod
    def default(cls, model: nn.Module, embed_dim: int | None = None, infonce: bool = True, order_audio: bool = False,
                weights: Mapping[str, float] | None = None, seed: int = 0) -> "SelfSupervisedPretrainer":
        """Correspondence + video order (+ audio order) (+ InfoNCE) with heads sized for ``model``."""
        dim = embed_dim or model.config.embed_dim
        objectives: dict[str, SelfSupervisedObjective] = {
            "correspondence": AVCorrespondence(dim, seed=seed),
            "order": TemporalOrder(dim, audio=order_audio, seed=seed + 1),
        }
        if infonce:
            objectives["infonce"] = AlignedInfoNCE(seed=seed + 2)
        return cls(model, objectives, weights)

    @classmethod
    def from_names(cls, model: nn.Module, names: Sequence[str], embed_dim: int | None = None, seed: int = 0,
                   weights: Mapping[str, float] | None = None,
                   options: Mapping[str, Mapping[str, Any]] | None = None) -> "SelfSupervisedPretrainer":
        """The objectives of :data:`OBJECTIVES` named in ``names`` (run in that order), heads sized for
        ``model``; default settings but for ``options`` (name -> constructor arguments, e.g.
        ``{"contrastive": {"momentum": 0.99}, "masked": {"audio_bands": 64}}`` for a log-mel model).
        Objective n of the registry gets seed ``seed + n``, so ``["correspondence", "order", "infonce"]``
        draws as :meth:`default` does."""
        names = [names] if isinstance(names, str) else list(names)
        options = dict(options or {})
        known = ", ".join(OBJECTIVES)
        unknown = [name for name in [*names, *options] if name not in OBJECTIVES]
        if unknown:
            raise ValueError(f"unknown self-supervised objective(s) {unknown}; known: {known}")
        if not names:
            raise ValueError(f"give at least one objective name; known: {known}")
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"objective(s) named more than once: {repeated}")
        unused = sorted(set(options) - set(names))
        if unused:
            raise ValueError(f"options for objectives this pretrainer does not use: {unused}; objectives: {names}")
        dim = embed_dim or model.config.embed_dim
        order = list(OBJECTIVES)
        objectives: dict[str, SelfSupervisedObjective] = {}
        for name in names:
            try:
                objectives[name] = OBJECTIVES[name](dim, seed + order.index(name), **dict(options.get(name, {})))
            except TypeError as err:
                raise ValueError(f"bad options for objective {name!r}: {err}") from None
        return cls(model, objectives, weights)

    def loss(self, batch: Batch) -> tuple[torch.Tensor, Metrics]:
        audio, _ = _check_batch(batch)
        shared: dict[str, Any] = {}
        total = torch.zeros((), device=audio.device)
        metrics: Metrics = {}
        for name, objective in self.objectives.items():
            weight = self.weights[name]
            if weight == 0.0:
                continue
            value, parts = objective.loss(self.model, batch, shared)
            total = total + weight * value
            metrics[f"{name}/loss"] = float(value.detach())
            metrics.update({f"{name}/{k}": v for k, v in parts.items()})
        metrics["loss"] = float(total.detach())
        return total, metrics

    def forward(self, batch: Batch) -> tuple[torch.Tensor, Metrics]:
        """Same as :meth:`loss`, so ``DistributedDataParallel(pretrainer)(batch)`` syncs trunk and head grads."""
        return self.loss(batch)

    def step(self, batch: Batch, optimizer: torch.optim.Optimizer) -> Metrics:
        """One optimisation step (train mode, zero grads, backward, optional clipping, step, :meth:`update`)."""
        self.train()
        optimizer.zero_grad(set_to_none=True)
        total, metrics = self.loss(batch)
        total.backward()
        if self.grad_clip is not None:
            metrics["grad_norm"] = float(nn.utils.clip_grad_norm_(self.parameters(), self.grad_clip))
        optimizer.step()
        self.update()
        return metrics

    def update(self) -> None:
        """Per-step state that gradients do not train (a MoCo key encoder): :meth:`step` calls it after
        ``optimizer.step()``; a custom loop (DDP, gradient accumulation) must call it once per optimiser step."""
        for objective in self.objectives.values():
            objective.update(self.model)
