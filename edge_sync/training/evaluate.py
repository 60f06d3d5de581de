"""Evaluate a PyTorch sync model on labelled clips: per-frame, per-clip and the LRS2 context protocol.

Context protocol: as for SyncNet on LRS2, the evidence is the per-frame audio-video similarity at each offset
(our ``correlation`` output, whose encoders see about 9 frames, like SyncNet's 5-frame windows), averaged over
c consecutive frames, with the audio of every offset -15..15 available around the window. The same protocol
on the sync head's per-frame probabilities (which already pool ~31 frames) is reported as ``context_head``.
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
def _outputs(model: nn.Module, audio: torch.Tensor, video: torch.Tensor, device: torch.device):
    probs, corr = model(audio.to(device), video.to(device))
    return probs.float().cpu().numpy(), corr.float().cpu().numpy()


def evaluate(model: nn.Module, dataset: Dataset, batch_size: int = 8, contexts: Iterable[int] = DEFAULT_CONTEXTS,
             context_stride: int = 1, device: str | torch.device = "cpu", progress: bool = False) -> EvalResult:
    """Clip-level offset = argmax of the frame-averaged distribution; truth = the median per-frame offset."""
    from tqdm import tqdm

    device = torch.device(device)
    model = model.to(device).eval()
    contexts = tuple(contexts)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    clip_probs, clip_corr, clip_truth, frame_truth, preds, truths, valids = [], [], [], [], [], [], []
    frames = 0
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
    frame = frame_metrics(np.concatenate(preds), np.concatenate(truths), np.concatenate(valids))
    clip = clip_metrics(clip_probs, clip_truth)
    context = context_accuracy(clip_corr, frame_truth, contexts=contexts, stride=context_stride)
    context_head = context_accuracy(clip_probs, frame_truth, contexts=contexts, stride=context_stride)
    return EvalResult(frame, clip, context, len(clip_probs), frames,
                      extra={"context_stride": context_stride, "context_evidence": "correlation",
                             "context_head": {str(k): v for k, v in context_head.items()}})
