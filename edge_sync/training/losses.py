"""Training losses for sync models: per-frame offset classification, embedding losses, distillation.

Shapes follow :mod:`edge_sync.spec`: logits and correlations are ``[B, 2K+1, T]`` (class index ``k + K``
for offset ``k``, ``k > 0`` = sound late); embeddings are ``[B, D, T]``; per-frame ground truth is an
int64 offset tensor ``[B, T]`` plus a bool ``valid`` mask ``[B, T]`` for frames that have ground truth.

Every loss is a mean over the frames (or frame pairs) it uses, so the loss scale does not depend on how
many frames in a batch are padded or unlabelled; when a batch has no usable frame the loss is an exact
zero that still belongs to the autograd graph (``backward()`` works and gives zero gradients).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping

import torch
import torch.nn.functional as F

from edge_sync.spec import MAX_OFFSET

__all__ = [
    "offset_cross_entropy",
    "focal_loss",
    "triplet_loss",
    "info_nce",
    "temporal_consistency_loss",
    "distillation_kl",
    "self_similarity_distill",
    "LossWeights",
    "combined_loss",
]


# --- helpers ----------------------------------------------------------------------------------
def _valid_mask(valid: torch.Tensor | None, shape: tuple[int, int], device: torch.device) -> torch.Tensor:
    """A bool [B, T] mask; None means every frame has ground truth."""
    if valid is None:
        return torch.ones(shape, dtype=torch.bool, device=device)
    if tuple(valid.shape) != tuple(shape):
        raise ValueError(f"valid must be [B, T] = {list(shape)}, got {list(valid.shape)}")
    return valid.to(device=device, dtype=torch.bool)


def _masked_mean(values: torch.Tensor, mask: torch.Tensor, anchor: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` where ``mask``; an exact, graph-connected zero when nothing is selected.

    ``torch.where`` (not multiplication) keeps NaN/inf produced at masked frames out of the result and
    out of the gradients; ``anchor`` ties the empty case to the graph so ``backward()`` still works.
    """
    n = mask.sum()
    if int(n) == 0:
        return anchor.sum() * 0.0
    picked = torch.where(mask, values, torch.zeros_like(values))
    return picked.sum() / n


def _check_logits(logits: torch.Tensor, max_offset: int, name: str = "logits") -> None:
    if logits.dim() != 3 or logits.shape[1] != 2 * max_offset + 1:
        raise ValueError(f"{name} must be [B, 2K+1, T] with 2K+1 = {2 * max_offset + 1}, "
                         f"got {list(logits.shape)}")


def _target_distribution(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor,
                         max_offset: int) -> torch.Tensor:
    """Targets as a probability tensor [B, 2K+1, T], whatever form they came in.

    Integer targets are offsets ``k`` (class ``k + K``); frames outside the mask may hold anything
    (e.g. a padding sentinel). Offsets outside -K..K on a valid frame are a data bug, so they raise.
    Float targets must already be [B, 2K+1, T] probabilities (e.g. soft labels from AV mixup).
    """
    b, c, t = logits.shape
    if targets.is_floating_point():
        if tuple(targets.shape) != (b, c, t):
            raise ValueError(f"soft targets must be [B, 2K+1, T] = {[b, c, t]}, got {list(targets.shape)}")
        return targets.to(dtype=logits.dtype)
    if tuple(targets.shape) != (b, t):
        raise ValueError(f"offset targets must be [B, T] = {[b, t]}, got {list(targets.shape)}")
    k = targets.to(device=logits.device, dtype=torch.long)
    bad = mask & ((k < -max_offset) | (k > max_offset))
    if bool(bad.any()):
        raise ValueError(f"offset targets must lie in -{max_offset}..{max_offset} on valid frames; "
                         f"got values {sorted(set(k[bad].tolist()))[:5]}")
    cls = torch.where(mask, k + max_offset, torch.zeros_like(k))
    return F.one_hot(cls, c).permute(0, 2, 1).to(dtype=logits.dtype)


# --- classification losses ----------------------------------------------------------------------
def offset_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor | None = None,
                         max_offset: int = MAX_OFFSET, label_smoothing: float = 0.0) -> torch.Tensor:
    """Per-frame cross-entropy over the 2K+1 offset classes, mean over valid frames.

    For frame (b, t) with target distribution q (one-hot at ``k + K`` for int targets, or the given
    soft labels), smoothed as ``q' = (1 - eps) q + eps / (2K+1)``::

        loss(b, t) = - sum_c q'_c * log_softmax(logits[b, :, t])_c

    Why: the sync head is a classifier over offsets; cross-entropy is its maximum-likelihood loss, and
    accepting soft targets lets mixed-up clips (AV mixup) and smoothed labels use the same code path.
    """
    _check_logits(logits, max_offset)
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
    mask = _valid_mask(valid, (logits.shape[0], logits.shape[2]), logits.device)
    q = _target_distribution(logits, targets, mask, max_offset)
    if label_smoothing > 0.0:
        q = (1.0 - label_smoothing) * q + label_smoothing / logits.shape[1]
    per_frame = -(q * F.log_softmax(logits, dim=1)).sum(dim=1)
    return _masked_mean(per_frame, mask, logits)


def focal_loss(logits: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor | None = None,
               gamma: float = 2.0, max_offset: int = MAX_OFFSET) -> torch.Tensor:
    """Focal loss (Lin et al. 2017) over offset classes, mean over valid frames.

    With p = softmax(logits[b, :, t]) and target distribution q::

        loss(b, t) = - sum_c q_c * (1 - p_c)^gamma * log p_c

    For a one-hot target this is the usual ``-(1 - p_y)^gamma log p_y``. Why: most frames of talking
    clips are easy (clear lip motion); down-weighting confident frames spends the gradient on the
    ambiguous ones (silence, occlusion) that decide the hard context lengths. gamma = 0 is cross-entropy.
    """
    _check_logits(logits, max_offset)
    if gamma < 0:
        raise ValueError(f"gamma must be >= 0, got {gamma}")
    mask = _valid_mask(valid, (logits.shape[0], logits.shape[2]), logits.device)
    q = _target_distribution(logits, targets, mask, max_offset)
    logp = F.log_softmax(logits, dim=1)
    weight = (1.0 - logp.exp()).clamp_min(1e-12).pow(gamma)  # floor: finite gradient when gamma < 1, p = 1
    per_frame = -(q * weight * logp).sum(dim=1)
    return _masked_mean(per_frame, mask, logits)


# --- embedding losses ---------------------------------------------------------------------------
def _positive_index(offsets: torch.Tensor, mask: torch.Tensor, frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Audio index ``t + k_t`` of each video frame's positive, and the mask of frames whose positive is
    inside the clip (the others cannot be supervised and are skipped)."""
    t = torch.arange(frames, device=offsets.device).unsqueeze(0)
    pos = t + offsets.to(dtype=torch.long)
    usable = mask & (pos >= 0) & (pos < frames)
    return pos.clamp(0, frames - 1), usable


def _check_embeddings(video_emb: torch.Tensor, audio_emb: torch.Tensor, offsets: torch.Tensor) -> None:
    if video_emb.dim() != 3 or video_emb.shape != audio_emb.shape:
        raise ValueError(f"video_emb and audio_emb must both be [B, D, T], got {list(video_emb.shape)} "
                         f"and {list(audio_emb.shape)}")
    b, _, t = video_emb.shape
    if tuple(offsets.shape) != (b, t):
        raise ValueError(f"offsets must be [B, T] = {[b, t]}, got {list(offsets.shape)}")


def triplet_loss(video_emb: torch.Tensor, audio_emb: torch.Tensor, offsets: torch.Tensor,
                 valid: torch.Tensor | None = None, margin: float = 0.2,
                 max_offset: int = MAX_OFFSET) -> torch.Tensor:
    """Hardest-negative triplet loss on cosine distance, within the offset search window.

    Anchor: video frame t; positive: audio frame ``p = t + k_t``; negatives: in-clip audio frames
    ``s = t + j`` with ``|j| <= K`` and ``|s - p| >= 2``. With ``d(x, y) = 1 - cos(x, y)``::

        loss(b, t) = max(0, d(v_t, a_p) - min_s d(v_t, a_s) + margin)

    Why: these are exactly the candidates the correlation layer compares at test time, so the
    embedding is trained to rank the true offset above the others it will compete with. Frames one
    step from the positive are excluded because neighbouring audio frames overlap (MFCC windows and
    receptive fields) and are near-duplicates, not wrong answers. Frames whose positive falls outside
    the clip, or with no negative candidate, are skipped; the mean is over the frames used.
    """
    _check_embeddings(video_emb, audio_emb, offsets)
    b, _, t = video_emb.shape
    mask = _valid_mask(valid, (b, t), video_emb.device)
    pos, usable = _positive_index(offsets.to(video_emb.device), mask, t)
    v = F.normalize(video_emb, dim=1, eps=1e-6)
    a = F.normalize(audio_emb, dim=1, eps=1e-6)
    sim = torch.einsum("bdt,bds->bts", v, a)  # sim[b, t, s] = cos(v_t, a_s)
    dist = 1.0 - sim
    d_pos = dist.gather(2, pos.unsqueeze(2)).squeeze(2)
    frame = torch.arange(t, device=video_emb.device)
    in_window = (frame.view(1, 1, t) - frame.view(1, t, 1)).abs() <= max_offset  # |s - t| <= K
    far_from_pos = (frame.view(1, 1, t) - pos.unsqueeze(2)).abs() >= 2
    candidates = in_window & far_from_pos
    d_neg = torch.where(candidates, dist, torch.full_like(dist, math.inf)).amin(dim=2)
    usable = usable & candidates.any(dim=2)
    d_neg = torch.where(usable, d_neg, torch.zeros_like(d_neg))  # keep inf out of the arithmetic
    per_frame = F.relu(d_pos - d_neg + margin)
    return _masked_mean(per_frame, usable, video_emb)


def info_nce(video_emb: torch.Tensor, audio_emb: torch.Tensor, offsets: torch.Tensor,
             valid: torch.Tensor | None = None, temperature: float = 0.07,
             symmetric: bool = False) -> torch.Tensor:
    """InfoNCE over every audio frame in the batch, mean over valid video frames.

    For each usable video frame i = (b, t) (valid, and ``p = t + k_t`` inside the clip), with
    ``s(x, y) = cos(x, y) / temperature`` and j ranging over all B*T audio frames of the batch::

        loss_v2a(i) = - log( exp s(v_i, a_pos(i)) / sum_j exp s(v_i, a_j) )

    With ``symmetric=True`` the audio->video direction is added (anchor a_pos(i), candidates all B*T
    video frames, positive v_i) and the two means are averaged. Why: other clips give easy negatives
    (different speakers, content) and the same clip's other frames give hard ones (same face, shifted
    speech), so one softmax learns both identity-free and time-precise alignment. If two video frames
    share a positive audio frame, each is a negative in the other's audio->video term.
    """
    _check_embeddings(video_emb, audio_emb, offsets)
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    b, d, t = video_emb.shape
    mask = _valid_mask(valid, (b, t), video_emb.device)
    pos, usable = _positive_index(offsets.to(video_emb.device), mask, t)
    if int(usable.sum()) == 0:
        return (video_emb.sum() + audio_emb.sum()) * 0.0
    v = F.normalize(video_emb, dim=1, eps=1e-6).permute(0, 2, 1).reshape(b * t, d)
    a = F.normalize(audio_emb, dim=1, eps=1e-6).permute(0, 2, 1).reshape(b * t, d)
    rows = usable.reshape(-1).nonzero(as_tuple=True)[0]  # flat video index b*T + t
    clip = rows // t
    targets = clip * t + pos.reshape(-1)[rows]  # flat audio index b*T + t + k_t
    scores = v[rows] @ a.T / temperature  # [N, B*T]
    loss = F.cross_entropy(scores, targets)
    if symmetric:
        back = a[targets] @ v.T / temperature  # [N, B*T]: audio anchor vs every video frame
        loss = 0.5 * (loss + F.cross_entropy(back, rows))
    return loss


# --- regularisers and distillation ---------------------------------------------------------------
def temporal_consistency_loss(logits: torch.Tensor, valid: torch.Tensor | None = None,
                              divergence: str = "js") -> torch.Tensor:
    """Mean divergence between the offset distributions of adjacent frames (t, t+1), both valid.

    With p = softmax(logits[b, :, t]), q = softmax(logits[b, :, t+1]) and m = (p + q) / 2::

        "js":     JS(p, q)  = (KL(p || m) + KL(q || m)) / 2      (bounded by log 2)
        "sym_kl": KL(p || q) + KL(q || p)

    Why: the true offset of a clip changes rarely and slowly, so per-frame predictions that jump are
    noise; penalising it smooths the head without a post-hoc filter (which would cost latency on
    device). JS is the default because it stays bounded when the two distributions disagree sharply.
    """
    if logits.dim() != 3:
        raise ValueError(f"logits must be [B, 2K+1, T], got {list(logits.shape)}")
    if divergence not in ("js", "sym_kl"):
        raise ValueError(f"divergence must be 'js' or 'sym_kl', got {divergence!r}")
    b, _, t = logits.shape
    mask = _valid_mask(valid, (b, t), logits.device)
    if t < 2:
        return logits.sum() * 0.0
    logp = F.log_softmax(logits, dim=1)
    lp, lq = logp[:, :, :-1], logp[:, :, 1:]
    p, q = lp.exp(), lq.exp()
    if divergence == "js":
        lm = torch.log((0.5 * (p + q)).clamp_min(1e-30))
        per_pair = 0.5 * ((p * (lp - lm)).sum(dim=1) + (q * (lq - lm)).sum(dim=1))
    else:
        per_pair = ((p - q) * (lp - lq)).sum(dim=1)  # KL(p||q) + KL(q||p)
    pair_mask = mask[:, :-1] & mask[:, 1:]
    return _masked_mean(per_pair, pair_mask, logits)


def distillation_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                    valid: torch.Tensor | None = None, temperature: float = 4.0) -> torch.Tensor:
    """Hinton-style distillation: ``T^2 * KL(softmax(teacher/T) || softmax(student/T))`` over the
    offset axis (dim 1) per frame, mean over valid frames.

    Why: the teacher's soft distribution says which wrong offsets are plausible (neighbours, periodic
    speech); a temperature above 1 exposes that ranking, and the T^2 factor keeps the gradient scale
    independent of T so the weight against the task loss need not be retuned. The teacher is detached.
    """
    if student_logits.shape != teacher_logits.shape or student_logits.dim() != 3:
        raise ValueError(f"student and teacher logits must both be [B, 2K+1, T], got "
                         f"{list(student_logits.shape)} and {list(teacher_logits.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    b, _, t = student_logits.shape
    mask = _valid_mask(valid, (b, t), student_logits.device)
    log_p_teacher = F.log_softmax(teacher_logits.detach().to(student_logits.dtype) / temperature, dim=1)
    log_p_student = F.log_softmax(student_logits / temperature, dim=1)
    per_frame = (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(dim=1) * temperature ** 2
    return _masked_mean(per_frame, mask, student_logits)


def self_similarity_distill(student_emb: torch.Tensor, teacher_emb: torch.Tensor,
                            valid: torch.Tensor | None = None) -> torch.Tensor:
    """Relational distillation of one modality's embeddings: the mean squared difference between the student's and
    the teacher's frame-by-frame cosine similarity matrices ``[B, T, T]`` over pairs of valid frames.

    Why: correlation distillation only says how each video frame matches the sound; this says which frames of the
    face look alike to the teacher (same mouth shape, different mouth shape), a feature-level target that needs no
    adapter between the two models' embedding sizes. The teacher is detached.
    """
    if student_emb.dim() != 3 or teacher_emb.dim() != 3 or student_emb.shape[0] != teacher_emb.shape[0] \
            or student_emb.shape[2] != teacher_emb.shape[2]:
        raise ValueError(f"student and teacher embeddings must be [B, D, T] with the same B and T, got "
                         f"{list(student_emb.shape)} and {list(teacher_emb.shape)}")
    b, _, t = student_emb.shape
    mask = _valid_mask(valid, (b, t), student_emb.device)
    s = F.normalize(student_emb, dim=1)
    q = F.normalize(teacher_emb.detach().to(student_emb.dtype), dim=1)
    per_pair = (torch.einsum("bdt,bds->bts", s, s) - torch.einsum("bdt,bds->bts", q, q)).pow(2)
    return _masked_mean(per_pair, mask[:, :, None] & mask[:, None, :], student_emb)


def _taught_frames(valid: torch.Tensor | None, teacher_mask: torch.Tensor | None,
                   like: torch.Tensor) -> torch.Tensor | None:
    """The frames distillation learns from: valid ones of samples that have a teacher (``teacher_mask`` [B] is
    False for synthetic clips mixed into a distillation on cached teacher features)."""
    if teacher_mask is None:
        return valid
    b, _, t = like.shape
    return _valid_mask(valid, (b, t), like.device) & teacher_mask.to(like.device).bool()[:, None]


def window_context_loss(window_video_emb: torch.Tensor, window_audio_emb: torch.Tensor, video_emb: torch.Tensor,
                        audio_emb: torch.Tensor, start: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
    """Mean cosine distance between a window's embeddings seen alone and the same frames' embeddings in the
    whole clip (held fixed), video frames s..s+c-1 and audio frames s-K..s+c-1+K.

    Why: on the strict context protocol the student's video encoder, seeing 5 frames, loses what it reads from
    its neighbours (its clip evidence reaches ~96% where the window alone gives ~72%). The whole-clip embedding of
    each frame is a dense per-frame target for what the window should still say; the window loss gives one
    31-way label per window. The whole clip is the model's own view (stop-gradient), so no second model is needed.
    Measured in session 17 (docs/real_footage.md): it did not lift a warm-started student's strict figure.
    """
    b, _, c = window_video_emb.shape
    k = (window_audio_emb.shape[-1] - c) // 2
    if video_emb.shape[:2] != window_video_emb.shape[:2] or tuple(start.shape) != (b,):
        raise ValueError(f"window embeddings {list(window_video_emb.shape)} do not fit the clip's "
                         f"{list(video_emb.shape)} and starts {list(start.shape)}")
    if int(start.min()) < k or int(start.max()) + c + k > video_emb.shape[-1]:  # before the move: no device sync
        raise ValueError(f"window starts must leave K={k} frames of audio either side inside the clip")
    start = start.to(video_emb.device)

    def frames(emb: torch.Tensor, first: torch.Tensor, count: int) -> torch.Tensor:
        index = first[:, None] + torch.arange(count, device=emb.device)[None]
        return emb.detach().gather(2, index.unsqueeze(1).expand(-1, emb.shape[1], -1))

    video_gap = 1.0 - (window_video_emb * frames(video_emb, start, c)).sum(dim=1).mean(dim=1)
    audio_gap = 1.0 - (window_audio_emb * frames(audio_emb, start - k, c + 2 * k)).sum(dim=1).mean(dim=1)
    per_window = video_gap + audio_gap
    keep = torch.ones_like(per_window, dtype=torch.bool) if keep is None else keep.to(per_window.device)
    return _masked_mean(per_window, keep, per_window)


# --- what the trainer calls ----------------------------------------------------------------------
@dataclass
class LossWeights:
    """Weights (0 = off) and hyper-parameters of :func:`combined_loss`; stored with each checkpoint."""

    ce: float = 1.0
    focal: float = 0.0
    triplet: float = 0.0
    info_nce: float = 0.0
    temporal: float = 0.0
    distill: float = 0.0
    label_smoothing: float = 0.0
    focal_gamma: float = 2.0
    triplet_margin: float = 0.2
    nce_temperature: float = 0.07
    nce_symmetric: bool = True
    temporal_divergence: str = "js"
    distill_temperature: float = 4.0
    corr_ce: float = 0.0  # cross-entropy on the correlation itself (the context protocol's evidence)
    corr_temperature: float = 0.1
    window_ce: float = 0.0  # cross-entropy on window_scores of short windows seen alone (strict context protocol)
    window_min_frames: int = 5
    window_max_frames: int = 15
    # cosine distance of the windows' embeddings (seen alone) to the whole clip's (window_context_loss); draws
    # windows of window_min_frames..window_max_frames as window_ce does
    window_context: float = 0.0
    # KL between the teacher's and the student's per-frame correlation over offsets (both / corr_temperature): the
    # evidence the clip readout averages, taken from a teacher that sees real faces better than the student can
    corr_distill: float = 0.0
    # self_similarity_distill of the video / audio embeddings: which frames the teacher sees (hears) as alike
    video_relation: float = 0.0
    audio_relation: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def combined_loss(outputs: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor],
                  weights: LossWeights, teacher_logits: torch.Tensor | None = None,
                  teacher_outputs: Mapping[str, torch.Tensor] | None = None,
                  ) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted sum of the enabled losses for one batch.

    ``outputs`` is :meth:`SyncModel.forward_features`' dict (``logits``, ``audio_emb``, ``video_emb``);
    ``batch`` carries ``offsets`` [B, T], optional ``valid`` [B, T] and optional ``target_probs``
    [B, 2K+1, T]. Classification losses use ``target_probs`` when present (soft labels after mixup),
    else ``offsets``; the embedding losses always use ``offsets``. Returns the total (for backward) and
    the unweighted value of each enabled part plus ``total``, as floats for logging.
    """
    logits = outputs["logits"]
    max_offset = (logits.shape[1] - 1) // 2
    valid = batch.get("valid")
    offsets = batch["offsets"].to(logits.device)
    if valid is not None:
        valid = valid.to(logits.device)
    targets = batch.get("target_probs")
    targets = offsets if targets is None else targets.to(logits.device)

    parts: dict[str, torch.Tensor] = {}
    if weights.ce:
        parts["ce"] = offset_cross_entropy(logits, targets, valid, max_offset, weights.label_smoothing)
    if weights.corr_ce:
        # the per-frame cosine similarities as offset logits: trains the evidence the LRS2 context protocol averages
        # (the sync head's input) to rank the true offset first by itself, not only through the head
        parts["corr_ce"] = offset_cross_entropy(outputs["correlation"] / weights.corr_temperature, targets, valid,
                                                max_offset)
    if weights.window_ce and "window_scores" in outputs:
        # window_scores sum c cosine similarities: their mean over the window, sharpened as corr_ce's are
        frames = batch["window_video"].shape[2]
        per_window = F.cross_entropy(outputs["window_scores"] / (frames * weights.corr_temperature),
                                     batch["window_offsets"].to(logits.device) + max_offset, reduction="none")
        keep = batch.get("window_valid")
        keep = torch.ones_like(per_window, dtype=torch.bool) if keep is None else keep.to(logits.device)
        parts["window_ce"] = _masked_mean(per_window, keep, per_window)
    if weights.window_context:
        if "window_video_emb" not in outputs or "window_start" not in batch:
            raise ValueError("weights.window_context > 0 needs a model with window_features (SyncModel) and "
                             "the batch's windows")
        parts["window_context"] = window_context_loss(outputs["window_video_emb"], outputs["window_audio_emb"],
                                                      outputs["video_emb"], outputs["audio_emb"],
                                                      batch["window_start"], batch.get("window_valid"))
    if weights.focal:
        parts["focal"] = focal_loss(logits, targets, valid, weights.focal_gamma, max_offset)
    if weights.triplet:
        parts["triplet"] = triplet_loss(outputs["video_emb"], outputs["audio_emb"], offsets, valid,
                                        weights.triplet_margin, max_offset)
    if weights.info_nce:
        parts["info_nce"] = info_nce(outputs["video_emb"], outputs["audio_emb"], offsets, valid,
                                     weights.nce_temperature, weights.nce_symmetric)
    if weights.temporal:
        parts["temporal"] = temporal_consistency_loss(logits, valid, weights.temporal_divergence)
    if teacher_outputs is not None and teacher_logits is None:
        teacher_logits = teacher_outputs["logits"]
    taught = _taught_frames(valid, batch.get("teacher_mask"), logits)
    if weights.distill:
        if teacher_logits is None:
            raise ValueError("weights.distill > 0 needs teacher_logits; pass the teacher's logits for this "
                             "batch or set distill=0")
        parts["distill"] = distillation_kl(logits, teacher_logits.to(logits.device), taught,
                                           weights.distill_temperature)
    if weights.corr_distill:
        if teacher_outputs is None or "correlation" not in teacher_outputs:
            raise ValueError("weights.corr_distill > 0 needs the teacher's outputs (its correlation) for this batch")
        teacher_correlation = teacher_outputs["correlation"].to(logits.device)
        parts["corr_distill"] = distillation_kl(outputs["correlation"] / weights.corr_temperature,
                                                teacher_correlation / weights.corr_temperature, taught, temperature=1.0)
    for modality in ("video", "audio"):
        if getattr(weights, f"{modality}_relation"):
            emb = f"{modality}_emb"
            if teacher_outputs is None or emb not in teacher_outputs:
                raise ValueError(f"weights.{modality}_relation > 0 needs the teacher's outputs (its {emb}) for this "
                                 "batch")
            teacher_emb = teacher_outputs[emb].to(logits.device)
            related = taught if "relation_mask" not in batch else _taught_frames(valid, batch["relation_mask"], logits)
            parts[f"{modality}_relation"] = self_similarity_distill(outputs[emb], teacher_emb, related)
    if not parts:
        raise ValueError("every loss weight is 0; enable at least one of ce, corr_ce, window_ce, window_context, "
                         "focal, triplet, info_nce, temporal, distill, corr_distill, video_relation, audio_relation")
    total = sum(getattr(weights, name) * value for name, value in parts.items())
    log = {name: float(value.detach()) for name, value in parts.items()}
    log["total"] = float(total.detach())
    return total, log
