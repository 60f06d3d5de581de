"""OpenVINO backend: runs ``openvino`` artifacts (IR .xml/.bin) on the CPU plugin, numpy in and out.

numpy + openvino only (a device app installs ``edge-sync[openvino]`` without PyTorch).

Why the precision hint: on CPUs with bfloat16 support (AVX512-BF16, AMX) the CPU plugin runs every float op in
bf16 unless told otherwise. bf16 keeps 8 significant bits: measured on the bundled students it moved sync_probs by
up to 0.05-0.11 and per-frame offset agreement with PyTorch fell as low as 86-88 % on some clip lengths. So float
work runs in f32 for FP32 and INT8 artifacts (INT8 quantises the convolutions; what NNCF leaves in float, the
correlation and the head's softmax, must stay precise), and FP16 artifacts compute in f16 only where the CPU does
f16 natively (e.g. ARM), else in f32 from the half-size weights.

Thread safety: one compiled model serves any number of threads. An ``InferRequest`` is not thread-safe, so each
call takes a request from a pool (creating one when all are busy) and returns it afterwards: concurrent callers
never share a request, and sequential calls reuse one (its buffers stay allocated between calls of the same T).
"""
from __future__ import annotations

import logging
import queue
from typing import Any

import numpy as np

from edge_sync.artifact import ArtifactError
from edge_sync.errors import EdgeSyncError
from edge_sync.runtimes.contract_check import reads_embeddings
from edge_sync.spec import output_names

log = logging.getLogger(__name__)
DEVICE = "CPU"


class OpenVINORunError(EdgeSyncError, RuntimeError):
    """OpenVINO refused the inputs or failed while running them."""


def inference_precision(precision: str, capabilities: list[str] | tuple[str, ...]) -> str:
    """The CPU plugin's INFERENCE_PRECISION_HINT for an artifact of ``precision`` (never bf16: see module doc)."""
    if precision == "fp16" and "FP16" in capabilities:
        return "f16"
    return "f32"


def compile_config(precision: str, threads: int | None, capabilities: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """compile_model properties: latency mode (one clip at a time), the precision hint, and ``threads``."""
    config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY",
                              "INFERENCE_PRECISION_HINT": inference_precision(precision, capabilities)}
    if threads:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    return config


def _dims(shape: Any) -> tuple[int | None, ...] | None:
    """An OpenVINO PartialShape as dims, None where unknown (what the contract check compares)."""
    if shape.rank.is_dynamic:
        return None
    return tuple(d.get_length() if d.is_static else None for d in shape)


class OpenVINOSession:
    """A compiled artifact; ``run`` is safe to call from several threads (a pool of infer requests)."""

    def __init__(self, xml: str, precision: str, threads: int | None, embeddings: bool = False) -> None:
        """``embeddings``: the model also has the contract's embedding outputs, and ``run`` returns them too."""
        import openvino as ov

        core = ov.Core()
        capabilities = core.get_property(DEVICE, "OPTIMIZATION_CAPABILITIES")
        self.config = compile_config(precision, threads, capabilities)
        try:
            self.compiled = core.compile_model(xml, DEVICE, self.config)
        except RuntimeError as exc:
            raise ArtifactError(f"OpenVINO cannot compile {xml} ({exc}); re-export the artifact with this "
                                "openvino version") from exc
        names = [set(o.get_names()) for o in self.compiled.outputs]
        self.embeddings = embeddings
        wanted = output_names(embeddings)
        try:
            self._out_index = [next(i for i, n in enumerate(names) if want in n) for want in wanted]
        except StopIteration:
            raise ArtifactError(f"{xml} does not have the outputs {wanted}; re-export the artifact") from None
        self.precision = precision
        self._free: queue.SimpleQueue = queue.SimpleQueue()
        log.info("openvino: %s on %s with %s", xml, DEVICE, self.config)

    def io_shapes(self) -> dict[str, tuple[int | None, ...] | None]:
        """Each input's and output's shape under every name it has (None where a dimension, or the rank, is
        dynamic)."""
        ports = list(self.compiled.inputs) + list(self.compiled.outputs)
        return {name: _dims(port.get_partial_shape()) for port in ports for name in port.get_names()}

    @property
    def inference_precision(self) -> str:
        return self.config["INFERENCE_PRECISION_HINT"]

    def _request(self):
        try:
            return self._free.get_nowait()
        except queue.Empty:
            return self.compiled.create_infer_request()

    def run(self, audio: np.ndarray, video: np.ndarray) -> tuple[np.ndarray, ...]:
        """(sync_probs, correlation) float32 [B, 2K+1, T] (then audio_emb, video_emb [B, D, T] with
        ``embeddings``) for audio [B,1,13,4T] and video [B,3,T,S,S]."""
        inputs = {"audio": np.ascontiguousarray(audio, np.float32), "video": np.ascontiguousarray(video, np.float32)}
        request = self._request()
        try:
            request.infer(inputs, share_inputs=True)  # zero-copy: the arrays outlive this synchronous call
            # copies: the request's output buffers are reused by the next call on this request
            outputs = tuple(np.array(request.get_output_tensor(i).data, np.float32, copy=True)
                            for i in self._out_index)
        except RuntimeError as exc:
            raise OpenVINORunError(f"OpenVINO could not run audio {audio.shape} / video {video.shape} ({exc}); "
                                   "inputs must be audio [B,1,13,4T] and video [B,3,T,S,S] float32") from exc
        finally:
            self._free.put(request)
        return outputs


def create(artifact, threads: int | None) -> OpenVINOSession:
    """Session factory for the backend registry (``artifact``: an :class:`edge_sync.artifact.Artifact`)."""
    if artifact.target != "openvino":
        raise ArtifactError(f"{artifact.path} is a {artifact.target} artifact, not openvino")
    return OpenVINOSession(str(artifact.file("model")), artifact.precision, threads,
                           embeddings=reads_embeddings(artifact))
