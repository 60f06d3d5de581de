"""A PyTorch checkpoint as a scorer for the real-footage protocol: the same windows and SyncResult as an Engine."""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from edge_sync.runtimes.api import DEFAULT_CONTEXT_FRAMES, WINDOW_FRAMES
from edge_sync.runtimes.result import SyncResult
from edge_sync.runtimes.windows import run_windows


class TorchScorer:
    """``run(audio, video) -> SyncResult`` for a torch sync model (teacher, student, legacy), windowed as the
    runtime windows artifacts, so a checkpoint and its artifacts are scored the same way."""

    backend = "pytorch"

    def __init__(self, model: Any, window_frames: int = WINDOW_FRAMES,
                 context_frames: int = DEFAULT_CONTEXT_FRAMES) -> None:
        self.model = model.eval()
        self.contract = model.contract
        self.window_frames, self.context_frames = window_frames, context_frames

    def _forward(self, audio: np.ndarray, video: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import torch

        with torch.inference_mode():
            probs, corr = self.model(torch.from_numpy(audio), torch.from_numpy(video))
        return probs.numpy(), corr.numpy()

    def run(self, audio: np.ndarray, video: np.ndarray) -> SyncResult:
        start = time.perf_counter()
        frames = video.shape[2]
        probs, corr = run_windows(self._forward, audio, lambda lo, hi: video[:, :, lo:hi], frames,
                                  self.window_frames, self.context_frames)
        return SyncResult.from_outputs(probs, corr, backend=self.backend, seconds=time.perf_counter() - start)
