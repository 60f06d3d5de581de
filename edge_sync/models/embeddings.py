"""A model with its per-frame embeddings as two more outputs (the contract's ``embeddings`` capability).

Every exporter wraps the model it converts with :func:`with_embeddings`; the PyTorch scorer of ``eval`` reads
the same outputs, so an artifact and its checkpoint measure the evidence null alike.

Why: ``sync_file`` measures every clip's evidence null (:mod:`edge_sync.runtimes.evidence`). Without the
embeddings it runs the model three more times, on the same crops against rolled sound, which doubles a file's
sync; with them the null is a few dot products of what the model computed anyway.

Only a model whose audio embedding of a frame depends on nearby sound alone qualifies ("separable"): rolling
its audio embeddings is then the same as embedding rolled sound, up to the encoder's few frames of context at
the wrap. Cross-modal attention mixes the two streams and a temporal transformer sees the whole window, so
models with either (and audio trunks that take raw waveforms, which the streaming runtime does not run) are
exported as before, and their artifacts stream the null.
"""
from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from edge_sync._deps import require

log = logging.getLogger(__name__)


def separable(model: Any) -> bool:
    """Its audio and video embeddings are computed apart, per frame from nearby input (see the module doc)."""
    return (callable(getattr(model, "embed", None)) and getattr(model, "attention", None) is None
            and getattr(model, "video_temporal", None) is None and model.contract.audio_input == "mfcc")


def with_embeddings(model: Any) -> Any:
    """``model`` wrapped to output (sync_probs, correlation, audio_emb, video_emb) under a contract that says so,
    where it is :func:`separable`; else ``model`` itself (logged). A model already wrapped is returned as it is."""
    if model.contract.embeddings:
        return model
    if not separable(model):
        log.info("this model's embeddings are not separable (cross-modal attention, a temporal transformer or a "
                 "waveform trunk): exported without them, its artifacts stream the evidence null")
        return model
    torch = require("torch", "export", "exporting embeddings")

    class WithEmbeddings(torch.nn.Module):
        """forward(audio, video) -> (sync_probs, correlation, audio_emb, video_emb); everything else is
        ``model``'s."""

        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner
            self.kind = getattr(inner, "kind", None)
            self.checkpoint_sha256 = getattr(inner, "checkpoint_sha256", None)

        @property
        def contract(self) -> Any:
            return replace(self.inner.contract, embeddings=True)

        def config_dict(self) -> dict[str, Any]:  # what the shared ONNX graph cache keys on (with the weights)
            return {**self.inner.config_dict(), "outputs": [t.name for t in self.contract.outputs]}

        def forward(self, audio: Any, video: Any) -> tuple[Any, Any, Any, Any]:
            out = self.inner.forward_features(audio, video)
            return torch.softmax(out["logits"], dim=1), out["correlation"], out["audio_emb"], out["video_emb"]

    return WithEmbeddings(model).eval()
