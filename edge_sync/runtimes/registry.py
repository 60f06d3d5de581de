"""Runtime backend registry: which artifact targets each backend runs, whether it is installed, preference.

``auto`` picks, for an artifact, the installed backend with the lowest preference number among those that
declare its target; the choice is logged and visible as ``engine.backend``.
"""
from __future__ import annotations

import importlib
import importlib.util
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np

from edge_sync.errors import EdgeSyncError, MissingExtraError

log = logging.getLogger(__name__)


class Session(Protocol):
    """What a backend's factory returns. A session that can tell its model's tensor shapes without running it
    also offers ``io_shapes() -> {name: dims}``; the Engine checks them against the manifest's contract at load
    (:mod:`edge_sync.runtimes.contract_check`)."""

    def run(self, audio: np.ndarray, video: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


def run_item_by_item(run_one: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, ...]], audio: np.ndarray,
                     video: np.ndarray) -> tuple[np.ndarray, ...]:
    """Each output of a batch-1 model over a batch: one call per item, concatenated along the batch.

    Why: TFLite and CoreML artifacts are converted at batch 1 (their converters fix the batch)."""
    if audio.shape[0] == 1:
        return tuple(run_one(audio, video))
    parts = [run_one(audio[i:i + 1], video[i:i + 1]) for i in range(audio.shape[0])]
    return tuple(np.concatenate(outputs) for outputs in zip(*parts))


@dataclass(frozen=True)
class BackendInfo:
    name: str
    targets: tuple[str, ...]
    module: str  # what must import for the backend to be usable ("a|b": either will do)
    extra: str  # pip extra that installs it
    preference: int  # lower wins under 'auto'
    factory: str  # "module:function" creating a Session from (artifact, threads, **options)
    platforms: tuple[str, ...] = ()  # sys.platform values it predicts on; empty: any
    install_hint: Callable[[], str | None] | None = None  # where pip is the wrong advice (None: pip's is right)
    options: tuple[str, ...] = ()  # load() options beyond threads that its factory takes (e.g. "providers")

    def runs_here(self) -> bool:
        return not self.platforms or sys.platform in self.platforms

    def installed(self) -> bool:
        return any(importlib.util.find_spec(m) is not None for m in self.module.split("|"))

    def missing(self, purpose: str) -> MissingExtraError:
        """The error for this backend not being installed, with this machine's way to install it."""
        hint = self.install_hint() if self.install_hint else None
        return MissingExtraError(self.module.replace("|", "' or '"), self.extra, purpose, hint)

    def create(self, artifact: Any, threads: int | None, **options: Any) -> Session:
        """A session for ``artifact``. ``options`` are load() options meant for one backend: one this backend
        does not take is refused (never silently dropped), naming the backends that take it."""
        for name in options:
            if name not in self.options:
                takers = [b.name for b in BACKENDS.values() if name in b.options] or ["none"]
                raise EdgeSyncError(f"the {self.name} backend takes no {name}= option (backends that do: "
                                    f"{', '.join(takers)}); leave it out, or load with one of those backends")
        if not self.installed():
            raise self.missing(f"the {self.name} backend")
        mod, fn = self.factory.split(":")
        make: Callable[..., Session] = getattr(importlib.import_module(mod), fn)
        return make(artifact, threads, **options)


BACKENDS: dict[str, BackendInfo] = {}


def register_backend(info: BackendInfo) -> BackendInfo:
    BACKENDS[info.name] = info
    return info


def on_jetson(root: Path = Path("/")) -> bool:
    """An NVIDIA Jetson (L4T): its TensorRT comes with JetPack, not from pip."""
    if (root / "etc/nv_tegra_release").is_file():
        return True
    model = root / "proc/device-tree/model"
    try:
        return "jetson" in model.read_text(errors="replace").lower()
    except OSError:
        return False


def tensorrt_install_hint(root: Path = Path("/")) -> str | None:
    """On a Jetson the pip wheel is the wrong advice: TensorRT's Python bindings come with JetPack."""
    if not on_jetson(root):
        return None
    return ("on a Jetson it comes with JetPack: sudo apt install python3-libnvinfer (or nvidia-jetpack), and a venv "
            "sees it only if made with --system-site-packages; without TensorRT, backend='onnxruntime' runs the "
            "same model.onnx on the CPU")


# a TensorRT artifact's model.onnx is an ordinary ONNX graph: onnxruntime runs it too (CPU parity checks)
register_backend(BackendInfo("onnxruntime", ("onnx", "tensorrt"), "onnxruntime", "onnxruntime", 10,
                             "edge_sync.runtimes.onnxruntime_backend:create", options=("providers",)))
register_backend(BackendInfo("tensorrt", ("tensorrt",), "tensorrt", "tensorrt", 5,
                             "edge_sync.runtimes.tensorrt_backend:create", install_hint=tensorrt_install_hint))
register_backend(BackendInfo("openvino", ("openvino",), "openvino", "openvino", 20,
                             "edge_sync.runtimes.openvino_backend:create"))
register_backend(BackendInfo("litert", ("tflite",), "ai_edge_litert|tflite_runtime", "litert", 30,
                             "edge_sync.runtimes.tflite_backend:create"))
register_backend(BackendInfo("coreml", ("coreml",), "coremltools", "coreml", 40,
                             "edge_sync.runtimes.coreml_backend:create", platforms=("darwin",)))


def choose_backend(artifact: Any, requested: str = "auto") -> BackendInfo:
    """The backend for an artifact: the requested one if it can run it, else the preferred installed one."""
    target = artifact.target
    if requested != "auto":
        if requested not in BACKENDS:
            raise EdgeSyncError(f"unknown backend {requested!r}; known: {', '.join(sorted(BACKENDS))}")
        info = BACKENDS[requested]
        if target not in info.targets:
            runners = [b.name for b in BACKENDS.values() if target in b.targets] or ["none yet"]
            raise EdgeSyncError(f"backend {requested} cannot run a {target} artifact; backends for {target}: "
                                f"{', '.join(runners)}")
        return info
    candidates = sorted((b for b in BACKENDS.values() if target in b.targets), key=lambda b: b.preference)
    if not candidates:
        raise EdgeSyncError(f"no runtime backend runs {target} artifacts yet")
    for info in candidates:
        if info.installed():
            log.info("backend auto -> %s for %s (%s)", info.name, artifact.path, target)
            return info
    raise candidates[0].missing(f"running {target} artifacts")
