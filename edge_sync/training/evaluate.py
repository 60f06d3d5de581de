"""Evaluate a PyTorch sync model on labelled clips: per-frame, per-clip and the LRS2 context protocol.

The context protocol feeds the model *only* the c frames of each window (not a longer clip whose head has
already pooled evidence from outside it), so a "5-frame" number means what it means in the literature.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from edge_sync.training.metrics import (DEFAULT_CONTEXTS, clip_metrics, context_accuracy, frame_metrics,
                                        predicted_offsets)


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
def _probs(model: nn.Module, audio: torch.Tensor, video: torch.Tensor, device: torch.device) -> np.ndarray:
    probs, _ = model(audio.to(device), video.to(device))
    return probs.float().cpu().numpy()


def _windows(audio: torch.Tensor, video: torch.Tensor, offsets: torch.Tensor, c: int, stride: int):
    """Cut a batch of clips into c-frame windows (each window is its own model input)."""
    frames = video.shape[2]
    starts = range(0, frames - c + 1, stride)
    a = torch.cat([audio[..., 4 * s:4 * (s + c)] for s in starts])
    v = torch.cat([video[:, :, s:s + c] for s in starts])
    y = torch.cat([offsets[:, s:s + c] for s in starts])
    return a, v, y


def evaluate(model: nn.Module, dataset: Dataset, batch_size: int = 8, contexts: Iterable[int] = DEFAULT_CONTEXTS,
             context_stride: int = 5, device: str | torch.device = "cpu", progress: bool = False) -> EvalResult:
    """Clip-level offset = argmax of the frame-averaged distribution; truth = the median per-frame offset."""
    from tqdm import tqdm

    device = torch.device(device)
    model = model.to(device).eval()
    contexts = tuple(contexts)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    clip_probs, clip_truth, preds, truths, valids = [], [], [], [], []
    window_scores: dict[int, list[np.ndarray]] = {c: [] for c in contexts}
    window_truth: dict[int, list[np.ndarray]] = {c: [] for c in contexts}
    frames = 0
    for batch in tqdm(loader, desc="evaluate", disable=not progress, unit="batch"):
        audio, video, offsets = batch["audio"], batch["video"], batch["offsets"]
        frames = video.shape[2]
        probs = _probs(model, audio, video, device)
        y = offsets.numpy()
        valid = batch["valid"].numpy() if "valid" in batch else np.ones_like(y, bool)
        preds.append(predicted_offsets(probs))
        truths.append(y)
        valids.append(valid)
        clip_probs.extend(list(probs))
        clip_truth.extend(int(np.median(t)) for t in y)
        for c in contexts:
            if frames < c:
                continue
            a, v, wy = _windows(audio, video, offsets, c, context_stride)
            wp = np.concatenate([_probs(model, a[i:i + 64], v[i:i + 64], device) for i in range(0, len(a), 64)])
            window_scores[c].extend(list(wp))
            window_truth[c].extend(list(wy.numpy()))
    frame = frame_metrics(np.concatenate(preds), np.concatenate(truths), np.concatenate(valids))
    clip = clip_metrics(clip_probs, clip_truth)
    context = {}
    for c in contexts:
        context.update(context_accuracy(window_scores[c], window_truth[c], contexts=(c,)) if window_scores[c]
                       else {c: float("nan")})
    return EvalResult(frame, clip, context, len(clip_probs), frames,
                      extra={"context_stride": context_stride})
