"""onnxruntime backend: CPU, plus CUDA / TensorRT execution providers when the installed build has them.

``load(..., providers=[...])`` picks the execution providers instead (CoreML, NNAPI, QNN, XNNPACK, CUDA, ...), in
the order given, as onnxruntime's own ``providers=`` does; each must be in this install's
``onnxruntime.get_available_providers()`` (each build ships a different set).
"""
from __future__ import annotations

import logging
from typing import Any, Sequence, TypeAlias

import numpy as np

from edge_sync._ort import session_options
from edge_sync.artifact import ArtifactError
from edge_sync.errors import EdgeSyncError
from edge_sync.runtimes.contract_check import reads_embeddings
from edge_sync.spec import output_names

log = logging.getLogger(__name__)

PREFERRED_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
# a provider's name, or (name, its options) as onnxruntime.InferenceSession takes them
Provider: TypeAlias = str | tuple[str, dict[str, Any]]


def provider_name(provider: Provider) -> str:
    return provider if isinstance(provider, str) else provider[0]


def resolve_providers(requested: str | Sequence[Provider] | None, available: Sequence[str]) -> list[Provider]:
    """The providers to pass to onnxruntime: ``requested`` checked against ``available``, or (None) the preferred
    ones this build has. Refused in one line listing what is available: onnxruntime would otherwise fail deep
    inside, or (for some builds) quietly run on the CPU."""
    if requested is None:
        return [p for p in PREFERRED_PROVIDERS if p in available]
    chosen: list[Provider] = [requested] if isinstance(requested, str) else list(requested)
    listed = ", ".join(available)
    bad = [p for p in chosen if not (isinstance(p, str) or (isinstance(p, tuple) and len(p) == 2
                                                            and isinstance(p[0], str) and isinstance(p[1], dict)))]
    if not chosen or bad:
        raise EdgeSyncError(f"providers must be a non-empty list of onnxruntime execution provider names (or "
                            f"(name, options) pairs), got {requested!r}; available here: {listed}")
    missing = [provider_name(p) for p in chosen if provider_name(p) not in available]
    if missing:
        raise EdgeSyncError(f"this onnxruntime build has no {', '.join(missing)} (providers=); available: {listed}")
    return chosen


class OrtSession:
    def __init__(self, path: str, threads: int | None, providers: str | Sequence[Provider] | None = None,
                 embeddings: bool = False) -> None:
        """``embeddings``: the graph also has the contract's embedding outputs, and ``run`` returns them too."""
        import onnxruntime as ort

        self.embeddings = embeddings
        self.outputs = list(output_names(embeddings))

        opts = session_options(threads)
        chosen = resolve_providers(providers, ort.get_available_providers())
        try:
            self.session = ort.InferenceSession(path, sess_options=opts, providers=chosen)
        except Exception as exc:  # onnxruntime's own errors (InvalidProtobuf, Fail, ...) derive from Exception only
            reason = " ".join(str(exc).split())[:300]
            raise ArtifactError(f"onnxruntime cannot load {path} ({reason}); re-export the artifact") from exc
        # what onnxruntime really uses: a provider that fails to initialise is dropped with only its own warning
        self.providers = list(self.session.get_providers())
        dropped = [provider_name(p) for p in chosen if provider_name(p) not in self.providers]
        if providers is not None and dropped:
            log.warning("onnxruntime could not use %s for %s; running on %s", ", ".join(dropped), path,
                        ", ".join(self.providers))

    def io_shapes(self) -> dict[str, tuple[int | None, ...]]:
        """Each input's and output's shape as the model declares it (None where a dimension is dynamic)."""
        tensors = self.session.get_inputs() + self.session.get_outputs()
        return {t.name: tuple(d if isinstance(d, int) and d >= 0 else None for d in t.shape) for t in tensors}

    def run(self, audio: np.ndarray, video: np.ndarray) -> tuple[np.ndarray, ...]:
        """sync_probs, correlation (then audio_emb, video_emb with ``embeddings``) for one batch."""
        # InferenceSession.run is thread-safe: one session serves concurrent callers
        return tuple(self.session.run(self.outputs, {"audio": audio, "video": video}))


def create(artifact, threads: int | None, providers: str | Sequence[Provider] | None = None) -> OrtSession:
    return OrtSession(str(artifact.file("model")), threads, providers, embeddings=reads_embeddings(artifact))
