"""TensorRT backend: runs the engine (model.plan) that build_engine.py built on this device.

numpy + tensorrt only (never torch: a Jetson app installs neither PyTorch nor onnxruntime to use it). Device
buffers come from cuda-python (``cuda.bindings.runtime``, or the older ``cuda.cudart``) or, failing that, from
Polygraphy's CUDA wrapper; TensorRT's Python package has no allocator of its own.

Not run on any machine of this project: none has TensorRT (DESIGN.md). Its control flow is tested against a
stand-in engine and device in tests/runtimes/test_tensorrt_backend.py; the real-engine tests there skip here.
"""
from __future__ import annotations

import importlib
import json
import logging
import threading
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edge_sync._deps import require
from edge_sync.errors import EdgeSyncError, MissingExtraError
from edge_sync.runtimes.contract_check import reads_embeddings
from edge_sync.spec import output_names

log = logging.getLogger(__name__)
ENGINE_FILE = "model.plan"
ENGINE_INFO = "model.plan.json"
INPUTS = ("audio", "video")
BUILD_HINT = "build the engine on the device with build_engine.py (see manifest trtexec)"


class EngineError(EdgeSyncError, RuntimeError):
    """The TensorRT engine is missing, stale, built elsewhere, or refused an input."""


class Device(Protocol):
    """The few CUDA calls a session needs; pointers and the stream handle are ints."""

    stream: int

    def malloc(self, nbytes: int) -> int: ...
    def free(self, ptr: int) -> None: ...
    def to_device(self, ptr: int, host: np.ndarray) -> None: ...
    def to_host(self, host: np.ndarray, ptr: int) -> None: ...
    def synchronize(self) -> None: ...


class CudaPythonDevice:
    """cuda-python's runtime API: every call returns (error, *results)."""

    def __init__(self, cudart: Any) -> None:
        self.rt = cudart
        self._stream = self._call(cudart.cudaStreamCreate())  # cudaStream_t for cuda-python's own calls
        self.stream = int(self._stream)  # the handle TensorRT's execute_async_v3 takes

    def _call(self, result: Any) -> Any:
        err, *rest = result if isinstance(result, tuple) else (result,)
        if err != self.rt.cudaError_t.cudaSuccess:
            name = self.rt.cudaGetErrorName(err)[1]
            raise EngineError(f"CUDA call failed: {name.decode() if isinstance(name, bytes) else name}")
        return rest[0] if len(rest) == 1 else rest

    def malloc(self, nbytes: int) -> int:
        return int(self._call(self.rt.cudaMalloc(max(nbytes, 1))))

    def free(self, ptr: int) -> None:
        self._call(self.rt.cudaFree(ptr))

    def to_device(self, ptr: int, host: np.ndarray) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._call(self.rt.cudaMemcpyAsync(ptr, host.ctypes.data, host.nbytes, kind, self._stream))

    def to_host(self, host: np.ndarray, ptr: int) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._call(self.rt.cudaMemcpyAsync(host.ctypes.data, ptr, host.nbytes, kind, self._stream))

    def synchronize(self) -> None:
        self._call(self.rt.cudaStreamSynchronize(self._stream))


class PolygraphyDevice:
    """Polygraphy's ctypes wrapper around libcudart (ships with TensorRT's Python tooling)."""

    def __init__(self, pcuda: Any) -> None:
        self.cuda, self.kinds = pcuda.wrapper(), pcuda.MemcpyKind
        self._stream = pcuda.Stream()
        self.stream = int(self._stream.ptr)

    def malloc(self, nbytes: int) -> int:
        return int(self.cuda.malloc(max(nbytes, 1)))

    def free(self, ptr: int) -> None:
        self.cuda.free(ptr)

    def to_device(self, ptr: int, host: np.ndarray) -> None:
        self.cuda.memcpy(ptr, host.ctypes.data, host.nbytes, self.kinds.HostToDevice, self.stream)

    def to_host(self, host: np.ndarray, ptr: int) -> None:
        self.cuda.memcpy(host.ctypes.data, ptr, host.nbytes, self.kinds.DeviceToHost, self.stream)

    def synchronize(self) -> None:
        self._stream.synchronize()


def default_device() -> Device:
    """cuda-python if installed, else Polygraphy; else say what to install (TensorRT brings neither)."""
    for module in ("cuda.bindings.runtime", "cuda.cudart"):
        try:
            return CudaPythonDevice(importlib.import_module(module))
        except ImportError:
            continue
    try:
        return PolygraphyDevice(importlib.import_module("polygraphy.cuda"))
    except ImportError:
        pass
    from edge_sync.runtimes.registry import on_jetson

    hint = ("on a Jetson install the cuda-python that matches JetPack's CUDA (nvcc --version), e.g. "
            "pip install 'cuda-python==12.6.*' on JetPack 6.1/6.2" if on_jetson() else None)
    raise MissingExtraError("cuda-python", "tensorrt", "GPU buffers for the TensorRT backend (or install "
                            "polygraphy); TensorRT's own package cannot allocate device memory", hint)


class _Buffer:
    """A device allocation that grows to the largest request and is reused (clips vary in length)."""

    def __init__(self, device: Device) -> None:
        self.device, self.ptr, self.nbytes = device, 0, 0

    def ensure(self, nbytes: int) -> int:
        if nbytes > self.nbytes:
            self.release()
            self.ptr, self.nbytes = self.device.malloc(nbytes), nbytes
        return self.ptr

    def release(self) -> None:
        if self.nbytes:
            self.device.free(self.ptr)
            self.ptr, self.nbytes = 0, 0


class TensorRTSession:
    """One engine, one execution context, one stream. Calls are serialised with a lock: a TensorRT execution
    context must not run two inferences at once."""

    def __init__(self, trt: Any, plan: bytes, device: Device, embeddings: bool = False) -> None:
        """``embeddings``: the artifact declares the contract's embedding outputs, and ``run`` returns them too."""
        self.trt, self.device = trt, device
        self.embeddings = embeddings
        self.names = output_names(embeddings)
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        self.engine = self.runtime.deserialize_cuda_engine(plan)
        if self.engine is None:
            raise EngineError(f"TensorRT {trt.__version__} could not load model.plan: engines only run on the GPU "
                              f"model and TensorRT version that built them; {BUILD_HINT}")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        missing = [n for n in INPUTS + self.names if n not in names]
        if missing:
            raise EngineError(f"the engine has no tensor(s) {', '.join(missing)} (has {', '.join(names)}); "
                              f"rebuild it from this artifact's model.onnx: {BUILD_HINT}")
        # every output the engine has gets an address (TensorRT runs only with all of them bound), read or not
        self.outputs = [n for n in names if n not in INPUTS]
        self.buffers = {name: _Buffer(device) for name in INPUTS + tuple(self.outputs)}
        self.batch_range, self.frame_range = self._profile_ranges()
        self._lock = threading.Lock()

    def _profile_ranges(self) -> tuple[tuple[int, int], tuple[int, int]]:
        """Batch sizes and video frames the engine's optimisation profile 0 accepts."""
        lo, _, hi = self.engine.get_tensor_profile_shape("video", 0)
        return (int(lo[0]), int(hi[0])), (int(lo[2]), int(hi[2]))

    def _check_frames(self, video: np.ndarray) -> None:
        (b_lo, b_hi), (lo, hi) = self.batch_range, self.frame_range
        if not b_lo <= video.shape[0] <= b_hi:
            raise EngineError(f"batch {video.shape[0]} is outside the engine's profile ({b_lo}..{b_hi}); run one clip "
                              "per call")
        frames = video.shape[2]
        if not lo <= frames <= hi:
            raise EngineError(f"{frames} frames is outside the engine's profile ({lo}..{hi} frames); run shorter "
                              f"windows (load(..., window_frames=...)) or rebuild with python build_engine.py "
                              f"--max-frames {frames}")

    def _bind_inputs(self, arrays: dict[str, np.ndarray]) -> None:
        for name, array in arrays.items():
            if not self.context.set_input_shape(name, tuple(array.shape)):
                raise EngineError(f"the engine refused {name} of shape {list(array.shape)}")
            ptr = self.buffers[name].ensure(array.nbytes)
            self.device.to_device(ptr, array)
            self.context.set_tensor_address(name, ptr)

    def _bind_outputs(self) -> dict[str, np.ndarray]:
        out = {}
        for name in self.outputs:
            shape = tuple(int(d) for d in self.context.get_tensor_shape(name))
            dtype = np.dtype(self.trt.nptype(self.engine.get_tensor_dtype(name)))
            out[name] = np.empty(shape, dtype)
            self.context.set_tensor_address(name, self.buffers[name].ensure(out[name].nbytes))
        return out

    def run(self, audio: np.ndarray, video: np.ndarray) -> tuple[np.ndarray, ...]:
        """sync_probs, correlation (then audio_emb, video_emb with ``embeddings``) as float32."""
        self._check_frames(video)
        arrays = {"audio": np.ascontiguousarray(audio, np.float32), "video": np.ascontiguousarray(video, np.float32)}
        with self._lock:
            self._bind_inputs(arrays)
            out = self._bind_outputs()
            if not self.context.execute_async_v3(self.device.stream):
                raise EngineError("TensorRT failed to run the engine (see TensorRT's log above)")
            for name in self.names:
                self.device.to_host(out[name], self.buffers[name].ptr)
            self.device.synchronize()  # also keeps the input arrays alive until their copies are done
        return tuple(out[name].astype(np.float32, copy=False) for name in self.names)

    def close(self) -> None:
        for buffer in self.buffers.values():
            buffer.release()


def engine_path(artifact: Any) -> Path:
    """model.plan of the artifact, or the actionable error saying how to build it."""
    entry = artifact.manifest.get("entry", {})
    rel = entry.get("engine", ENGINE_FILE)
    # a listed engine is checked like every entry; an unlisted one was built here (artifact.DEVICE_BUILT)
    path = artifact.file("engine") if "engine" in entry else Path(artifact.path) / ENGINE_FILE
    if not path.is_file():
        raise EngineError(f"{artifact.path} has no TensorRT engine ({rel}): {BUILD_HINT}: cd {artifact.path} && "
                          "python build_engine.py")
    return path


def check_engine_info(artifact: Any, plan: Path, trt_version: str) -> None:
    """Refuse an engine built from another model.onnx or by another TensorRT (build_engine.py records both)."""
    info_path = plan.with_name(plan.name + ".json")
    if not info_path.is_file():
        log.warning("%s has no %s: cannot verify which model.onnx and TensorRT built it", plan, info_path.name)
        return
    info = json.loads(info_path.read_text())
    onnx_sha = artifact.manifest.get("files", {}).get(artifact.manifest.get("entry", {}).get("model", ""), {})
    if onnx_sha.get("sha256") and info.get("onnx_sha256") not in (None, onnx_sha["sha256"]):
        raise EngineError(f"{plan} was built from a different model.onnx than this artifact's; {BUILD_HINT}")
    if info.get("tensorrt") and info["tensorrt"] != trt_version:
        raise EngineError(f"{plan} was built with TensorRT {info['tensorrt']}, this is {trt_version}; engines do not "
                          f"move between TensorRT versions: {BUILD_HINT}")


def create(artifact: Any, threads: int | None = None, device: Device | None = None) -> TensorRTSession:
    """Session over the artifact's engine. ``threads`` is unused (the GPU runs it); ``device`` is for tests."""
    plan = engine_path(artifact)  # before importing TensorRT: the fix is the same on any machine
    trt = require("tensorrt", "tensorrt", "the TensorRT backend")
    check_engine_info(artifact, plan, trt.__version__)
    return TensorRTSession(trt, plan.read_bytes(), device or default_device(), embeddings=reads_embeddings(artifact))
