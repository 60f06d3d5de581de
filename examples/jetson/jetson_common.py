"""What both Jetson scripts share: open an artifact on a backend, and turn the SDK's errors into one line.

A device script should never answer a missing TensorRT with a traceback: the fix (JetPack, a venv that sees
it, or the CPU fallback) is what the user needs to read, so every failure is ``PROG: error: ...`` on stderr and
a non-zero exit status.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, NoReturn

EXIT_FAILED, EXIT_USAGE, EXIT_NO_TENSORRT = 1, 2, 3  # 3: as the artifact's build_engine.py, TensorRT absent
JETPACK_HINT = ("(that is for an x86 PC with an NVIDIA GPU); on a Jetson, TensorRT's Python package comes with "
                "JetPack (sudo apt install nvidia-jetpack, or just python3-libnvinfer) and a venv sees it only if "
                "made with --system-site-packages; without TensorRT, --backend onnxruntime runs the same model.onnx "
                "on the CPU")
CUDA_HINT = ("; TensorRT needs cuda-python (or polygraphy) for GPU buffers: pip install 'cuda-python==12.6.*' on "
             "JetPack 6.1/6.2 (match the major.minor of nvcc --version)")


def fail(prog: str, message: str, code: int = EXIT_FAILED) -> NoReturn:
    """One line on stderr, then exit ``code``."""
    print(f"{prog}: error: {' '.join(message.split())}", file=sys.stderr)
    sys.exit(code)


def open_engine(prog: str, artifact: Path, backend: str, **options: Any) -> Any:
    """``edge_sync.load(artifact, backend)``, or a one-line error naming what to install or build."""
    try:
        import edge_sync
        from edge_sync.errors import EdgeSyncError, MissingExtraError
    except ImportError as exc:
        fail(prog, f"edge-sync is not importable ({exc}); install its wheel: pip install edge_sync-*.whl")
    try:
        return edge_sync.load(artifact, backend=backend, **options)
    except MissingExtraError as exc:
        if exc.extra != "tensorrt":
            fail(prog, str(exc))
        hint = JETPACK_HINT if exc.module == "tensorrt" else CUDA_HINT
        fail(prog, f"the TensorRT backend cannot start: {exc} {hint}", EXIT_NO_TENSORRT)
    except EdgeSyncError as exc:
        fail(prog, str(exc))


def describe(engine: Any) -> str:
    """Which file runs: the engine (with the TensorRT that built it) or model.onnx on another backend."""
    m = engine.manifest
    head = f"{engine.artifact.path} ({m.get('target')}, {m.get('precision')})"
    if engine.backend != "tensorrt":
        return f"{head}: model.onnx on {engine.backend} (the graph TensorRT builds from; CPU figures, not the GPU's)"
    info = Path(engine.artifact.path) / "model.plan.json"
    if info.is_file():
        import json

        built = json.loads(info.read_text())
        return f"{head}: model.plan, TensorRT {built.get('tensorrt')}, {built.get('typing')} typing"
    return f"{head}: model.plan (built by trtexec: no model.plan.json record)"
