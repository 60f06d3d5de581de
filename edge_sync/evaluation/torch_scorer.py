"""A PyTorch checkpoint as a scorer for the real-footage protocol: the same windows and SyncResult as an Engine."""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from edge_sync.models.embeddings import separable, with_embeddings
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
        # a separable model gives its embeddings too, as its exported artifacts do (the evidence null reads them)
        self.embeddings = separable(model)
        self.model_outputs = with_embeddings(model) if self.embeddings else self.model
        self.output_names = tuple(t.name for t in self.model_outputs.contract.outputs)

    def _forward(self, audio: np.ndarray, video: np.ndarray) -> tuple[np.ndarray, ...]:
        import torch

        with torch.inference_mode():
            return tuple(o.numpy() for o in self.model_outputs(torch.from_numpy(audio), torch.from_numpy(video)))

    def run(self, audio: np.ndarray, video: np.ndarray) -> SyncResult:
        return self.run_with_outputs(audio, video)[0]

    def run_with_outputs(self, audio: np.ndarray, video: np.ndarray) -> tuple[SyncResult, dict[str, np.ndarray]]:
        """The clip's SyncResult and the stitched outputs [C, T] it came from (with the embeddings where
        :attr:`embeddings`)."""
        start = time.perf_counter()
        outputs = dict(zip(self.output_names, run_windows(self._forward, audio, lambda lo, hi: video[:, :, lo:hi],
                                                          video.shape[2], self.window_frames, self.context_frames)))
        result = SyncResult.from_outputs(outputs["sync_probs"], outputs["correlation"], backend=self.backend,
                                         seconds=time.perf_counter() - start)
        return result, outputs
