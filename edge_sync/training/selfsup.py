"""Self-supervised pre-training on unlabeled user videos: the encoders learn sync cues without offset labels.

A user's own footage is (nearly always) in sync, so it is free supervision: an aligned window is a positive,
and the same window with its audio moved by a few frames, or with another clip's audio, is a negative. The
objectives below read only the model's embeddings (``SyncModel.embed`` -> audio, video [B, D, T],
L2-normalised), so they pre-train teacher and student trunks alike before supervised offset training:

* :class:`AVCorrespondence`: aligned vs out-of-sync (shifted >= ``min_shift`` frames within the clip, or
  another clip's audio), from the per-frame products of the embeddings plus their pooled means;
* :class:`TemporalOrder`: is the video (and optionally the audio) in its true order, or reversed /
  chunk-shuffled; forces the trunks to encode motion, which lip sync is made of;
* :class:`AlignedInfoNCE`: audio frame t must pick video frame t among all frames of the batch.

Batches are dicts as :class:`~edge_sync.data.folders.VideoFolderDataset` (``labels=False``) collates them:
``audio`` [B, 1, 13, 4T] and ``video`` [B, 3, T, S, S] in sync, optionally ``negative_audio`` with its true
``negative_offset`` [B] (real audio from outside the window) and ``clip_id`` [B] (so two windows of one file
are never used as each other's negatives). Without ``negative_audio`` the shifted negatives are circular
rolls of the window's own audio, which still put every frame >= ``min_shift`` frames out of sync.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from edge_sync.spec import MFCC_PER_FRAME

__all__ = ["roll_audio", "shuffle_chunks", "CorrespondenceHead", "OrderHead", "SelfSupervisedObjective",
           "AVCorrespondence", "TemporalOrder", "AlignedInfoNCE", "SelfSupervisedPretrainer"]

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
        """One optimisation step (train mode, zero grads, backward, optional clipping, step)."""
        self.train()
        optimizer.zero_grad(set_to_none=True)
        total, metrics = self.loss(batch)
        total.backward()
        if self.grad_clip is not None:
            metrics["grad_norm"] = float(nn.utils.clip_grad_norm_(self.parameters(), self.grad_clip))
        optimizer.step()
        return metrics
