"""Evaluate a PyTorch sync model on labelled clips: per-frame, per-clip and the LRS2 context protocol.

Context protocol, two forms (both search offsets -15..15 over real audio only: windows at least K frames from
the clip's ends, see :func:`~edge_sync.training.metrics.full_search_starts`; correct within +-1 frame):

- ``context``: the evidence is the per-frame audio-video similarity of the whole clip (our ``correlation``
  output) averaged over c consecutive frames. The encoders see about 9 frames around each frame, so a
  5-frame window draws on 13 frames of video; that is how the models run on clips.
- ``context_strict``: the published form. The model sees only the c-frame window's video (and the audio from
  K frames before to K after it) through ``window_scores``; SyncNet S gives c - 4 embeddings there, as in
  syncnet_python. Models without ``window_scores`` (exported artifacts) report none.

The per-frame protocol on all windows, the clip's ends included, is kept as ``context_all_windows``
(there the true offset's audio is partly missing for large offsets, in about 17% of 5-frame windows), and on
the sync head's probabilities (which already pool ~31 frames) as ``context_head``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from edge_sync.training.metrics import (
    DEFAULT_CONTEXTS,
    ContextResult,
    clip_metrics,
    context_accuracy,
    frame_metrics,
    full_search_starts,
    predicted_offsets,
    window_hits,
    window_truths,
)
from edge_sync.training.windows import cut_window

STRICT_CONTEXTS: tuple[int, ...] = (5, 15)


@dataclass
class EvalResult:
    frame: dict[str, float]
    clip: dict[str, float]
    context: dict[int, float]
    clips: int
    frames_per_clip: int
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"frame": self.frame, "clip": self.clip, "context": {str(k): v for k, v in self.context.items()},
                "clips": self.clips, "frames_per_clip": self.frames_per_clip, **self.extra}

    def summary_row(self) -> dict[str, float]:
        """The four headline numbers of the issue's table."""
        return {"accuracy": self.clip["accuracy"], "accuracy_pm1": self.clip["accuracy_pm1"],
                "frame_accuracy": self.frame["accuracy"], "temporal_consistency": self.frame["temporal_consistency"],
                "mae_frames": self.frame["mae_frames"]}


@torch.inference_mode()
def _outputs(model: nn.Module, audio: torch.Tensor, video: torch.Tensor, device: torch.device):
    probs, corr = model(audio.to(device), video.to(device))
    return probs.float().cpu().numpy(), corr.float().cpu().numpy()


@torch.inference_mode()
def strict_context_evaluation(model: nn.Module, clips: Iterable[dict], contexts: Iterable[int] = STRICT_CONTEXTS,
                              tolerance: int = 1, stride: int = 1, device: str | torch.device = "cpu",
                              batch_windows: int = 32) -> dict[int, ContextResult]:
    """The published context protocol: each full-search window of c frames scored by ``model.window_scores`` on
    that window alone (video frames s..s+c-1, audio frames s-K..s+c-1+K), correct within ``tolerance``."""
    device = torch.device(device)
    k = model.contract.max_offset
    contexts = tuple(int(c) for c in contexts)
    windows = dict.fromkeys(contexts, 0)
    correct = dict.fromkeys(contexts, 0)
    for clip in clips:
        audio, video, truth = clip["audio"], clip["video"], np.asarray(clip["offsets"])
        frames = video.shape[1]
        for c in contexts:
            starts = full_search_starts(frames, c, k, stride)
            for i in range(0, starts.size, batch_windows):
                chunk = starts[i:i + batch_windows]
                cuts = [cut_window(audio, video, int(s), c, k) for s in chunk]
                aud = torch.stack([a for a, _ in cuts]).to(device)
                vid = torch.stack([v for _, v in cuts]).to(device)
                scores = model.window_scores(aud, vid).float().cpu().numpy()
                windows[c] += int(chunk.size)
                correct[c] += window_hits(scores, window_truths(truth, chunk, c), tolerance)
    return {c: ContextResult(c, windows[c], correct[c]) for c in contexts}


def evaluate(model: nn.Module, dataset: Dataset, batch_size: int = 8, contexts: Iterable[int] = DEFAULT_CONTEXTS,
             context_stride: int = 1, device: str | torch.device = "cpu", progress: bool = False,
             strict_contexts: Iterable[int] = STRICT_CONTEXTS) -> EvalResult:
    """Clip-level offset = argmax of the frame-averaged distribution; truth = the median per-frame offset.
    ``strict_contexts`` (default 5 and 15; empty to skip) are scored by :func:`strict_context_evaluation` where the
    model has ``window_scores``."""
    from tqdm import tqdm

    device = torch.device(device)
    model = model.to(device).eval()
    contexts = tuple(contexts)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    clip_probs, clip_corr, clip_truth, frame_truth, preds, truths, valids = [], [], [], [], [], [], []
    frames = 0
    strict_contexts = tuple(strict_contexts) if hasattr(model, "window_scores") else ()
    strict_parts: list[dict[int, ContextResult]] = []
    for batch in tqdm(loader, desc="evaluate", disable=not progress, unit="batch"):
        frames = batch["video"].shape[2]
        probs, corr = _outputs(model, batch["audio"], batch["video"], device)
        y = batch["offsets"].numpy()
        valid = batch["valid"].numpy() if "valid" in batch else np.ones_like(y, bool)
        preds.append(predicted_offsets(probs))
        truths.append(y)
        valids.append(valid)
        clip_probs.extend(list(probs))
        clip_corr.extend(list(corr))
        frame_truth.extend(list(y))
        clip_truth.extend(int(np.median(t)) for t in y)
        if strict_contexts:
            clips = ({"audio": a, "video": v, "offsets": t} for a, v, t in zip(batch["audio"], batch["video"], y))
            strict_parts.append(strict_context_evaluation(model, clips, strict_contexts, stride=context_stride,
                                                          device=device))
    frame = frame_metrics(np.concatenate(preds), np.concatenate(truths), np.concatenate(valids))
    clip = clip_metrics(clip_probs, clip_truth)
    context = context_accuracy(clip_corr, frame_truth, contexts=contexts, stride=context_stride)
    context_all = context_accuracy(clip_corr, frame_truth, contexts=contexts, stride=context_stride,
                                   full_search=False)
    context_head = context_accuracy(clip_probs, frame_truth, contexts=contexts, stride=context_stride)
    extra = {"context_stride": context_stride, "context_evidence": "correlation",
             "context_all_windows": {str(k): v for k, v in context_all.items()},
             "context_head": {str(k): v for k, v in context_head.items()}}
    if strict_parts:
        extra["context_strict"] = {str(c): ContextResult(c, sum(p[c].windows for p in strict_parts),
                                                         sum(p[c].correct for p in strict_parts)).accuracy
                                   for c in strict_contexts}
    return EvalResult(frame, clip, context, len(clip_probs), frames, extra=extra)
