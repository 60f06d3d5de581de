"""onnxruntime backend: CPU, plus CUDA / TensorRT execution providers when the installed build has them."""
from __future__ import annotations

import numpy as np

from edge_sync.artifact import ArtifactError

PREFERRED_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


class OrtSession:
    def __init__(self, path: str, threads: int | None) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.enable_cpu_mem_arena = False  # the arena keeps the largest window's activations for the whole run
        if threads:
            opts.intra_op_num_threads = threads
        available = ort.get_available_providers()
        self.providers = [p for p in PREFERRED_PROVIDERS if p in available]
        try:
            self.session = ort.InferenceSession(path, sess_options=opts, providers=self.providers)
        except Exception as exc:  # onnxruntime's own errors (InvalidProtobuf, Fail, ...) derive from Exception only
            reason = " ".join(str(exc).split())[:300]
            raise ArtifactError(f"onnxruntime cannot load {path} ({reason}); re-export the artifact") from exc

    def io_shapes(self) -> dict[str, tuple[int | None, ...]]:
        """Each input's and output's shape as the model declares it (None where a dimension is dynamic)."""
        tensors = self.session.get_inputs() + self.session.get_outputs()
        return {t.name: tuple(d if isinstance(d, int) and d >= 0 else None for d in t.shape) for t in tensors}

    def run(self, audio: np.ndarray, video: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # InferenceSession.run is thread-safe: one session serves concurrent callers
        probs, corr = self.session.run(["sync_probs", "correlation"], {"audio": audio, "video": video})
        return probs, corr


def create(artifact, threads: int | None) -> OrtSession:
    return OrtSession(str(artifact.file("model")), threads)
