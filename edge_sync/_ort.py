"""onnxruntime session options every edge-sync session shares (the model's and the face detector's)."""
from __future__ import annotations

from typing import Any

# Idle intra-op threads sleep instead of spinning ("0"; onnxruntime's default is "1"): on a device the model shares its
# cores with decoding, the face tracker and the app, and spinning threads took those cores (on 2 cores: sync 16.4x ->
# 20.9x real time; a model call beside another busy process 2600 -> 3750 frames/s; docs/runtime_cpu.md).
ALLOW_SPINNING = "0"


def session_options(intra_threads: int | None = None, inter_threads: int | None = None) -> Any:
    """``onnxruntime.SessionOptions``: all graph optimisations, no memory arena (it keeps the largest call's
    activations for the whole run), threads that sleep when idle; thread counts where given."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.enable_cpu_mem_arena = False
    opts.add_session_config_entry("session.intra_op.allow_spinning", ALLOW_SPINNING)
    if intra_threads:
        opts.intra_op_num_threads = intra_threads
    if inter_threads:
        opts.inter_op_num_threads = inter_threads
    return opts
