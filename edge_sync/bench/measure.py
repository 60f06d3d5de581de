"""Latency, throughput and memory of artifacts and PyTorch baselines, measured in one run.

Each artifact is measured in its own child process, so its peak RSS and load time are its own (not the parent's
torch, nor another backend's). Timings are medians and p90 of ``repeat`` calls after ``warmup`` calls; the
machine is noisy, so compare rows of one run, never runs of different days.
"""
from __future__ import annotations

import logging
import multiprocessing as mp
import resource
import statistics
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edge_sync.artifact import parse_artifact_dirname
from edge_sync.spec import VIDEO_FPS, example_inputs

log = logging.getLogger(__name__)


@dataclass
class BenchRow:
    """One (model, clip length, batch) measurement."""

    name: str
    target: str
    precision: str
    backend: str
    frames: int
    batch: int
    median_ms: float = float("nan")
    p90_ms: float = float("nan")
    peak_rss_mb: float = float("nan")
    load_s: float = float("nan")
    size_mb: float = float("nan")
    status: str = "ok"  # ok | parity failed | failed | n/a | skipped (this OS runs no backend for it)
    detail: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def frames_per_s(self) -> float:
        return self.frames * self.batch / (self.median_ms / 1e3) if self.median_ms == self.median_ms else float("nan")

    @property
    def real_time_factor(self) -> float:
        """Seconds of compute per second of video (< 1: faster than real time)."""
        return (self.median_ms / 1e3) / (self.frames * self.batch / VIDEO_FPS)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "frames_per_s": self.frames_per_s, "real_time_factor": self.real_time_factor}


def timed(fn: Callable[[], Any], warmup: int, repeat: int) -> tuple[float, float]:
    """(median, p90) seconds of ``fn`` after warm-up calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), float(np.percentile(times, 90))


def peak_rss_mb() -> float:
    """This process's peak resident memory. Linux: VmHWM, which starts afresh at exec; ru_maxrss would carry the
    forking parent's size into a spawned child (it survives exec), so a child measured under a parent that had
    imported torch would report torch's memory."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024 if sys.platform != "darwin" else kb / 2**20


def _measure_artifact_child(path: str, lengths: list[int], batches: list[int], threads: int | None, warmup: int,
                            repeat: int, backend: str) -> list[dict[str, Any]]:
    from edge_sync.runtimes.api import load

    start = time.perf_counter()
    engine = load(path, backend=backend, threads=threads)
    load_s = time.perf_counter() - start
    art = engine.artifact
    size = art.bytes / 1e6
    rows = []
    # smallest calls first, RSS read after each: a row's peak RSS is what the process needed up to that size
    for frames, batch in sorted(((t, b) for t in lengths for b in batches), key=lambda tb: tb[0] * tb[1]):
        row = BenchRow(Path(path).name, art.target, art.precision, engine.backend, frames, batch, load_s=load_s,
                       size_mb=size)
        audio, video = example_inputs(engine.contract, frames, batch)
        # batch 1: the full runtime path (checks, windows, SyncResult); batches: the backend session directly,
        # since the Engine takes one clip per call
        run = engine.run if batch == 1 else engine._session.run
        try:
            med, p90 = timed(lambda: run(audio, video), warmup, repeat)
            row.median_ms, row.p90_ms = med * 1e3, p90 * 1e3
        except Exception as exc:  # a row the backend cannot run is reported, not fatal
            row.status, row.detail = ("n/a" if batch > 1 else "failed"), str(exc).splitlines()[0][:200]
        row.peak_rss_mb = peak_rss_mb()
        rows.append(row)
    rows.sort(key=lambda r: (r.frames, r.batch))
    return [r.to_dict() for r in rows]


def _child(queue: Any, fn: Callable[..., list[dict[str, Any]]], args: tuple) -> None:
    try:
        queue.put(("ok", fn(*args)))
    except BaseException as exc:  # the parent turns this into 'failed' rows
        queue.put(("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}"))


def in_child(fn: Callable[..., list[dict[str, Any]]], *args: Any, timeout: float = 1800) -> list[dict[str, Any]]:
    """Run ``fn(*args)`` in a fresh spawned process; raises RuntimeError with the child's error."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(queue, fn, args))
    proc.start()
    try:
        status, payload = queue.get(timeout=timeout)
    finally:
        proc.join(timeout=30)
        if proc.is_alive():
            proc.kill()
    if status != "ok":
        raise RuntimeError(payload)
    return payload


def measure_artifact(path: str | Path, lengths: list[int], batches: list[int], threads: int | None = None,
                     warmup: int = 2, repeat: int = 10, backend: str = "auto") -> list[BenchRow]:
    try:
        dicts = in_child(_measure_artifact_child, str(path), lengths, batches, threads, warmup, repeat, backend)
    except RuntimeError as exc:
        msg = str(exc).splitlines()[0][:200]
        target, precision = parse_artifact_dirname(Path(path).name)
        return [BenchRow(Path(path).name, target, precision, backend, t, b, status="failed", detail=msg)
                for t in lengths for b in batches]
    rows = []
    for d in dicts:
        d.pop("frames_per_s"), d.pop("real_time_factor")
        rows.append(BenchRow(**d))
    return rows


# --- PyTorch baselines ---------------------------------------------------------------------------------
BASELINES = {"pytorch teacher": "teacher", "pytorch student": "student", "original SyncNet S": "legacy"}


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _measure_baselines_child(lengths: list[int], batches: list[int], threads: int | None, warmup: int,
                             repeat: int, device: str = "cpu", half: bool = False) -> list[dict[str, Any]]:
    import torch

    from edge_sync.models.io import load
    from edge_sync.models.legacy import SyncNetS

    if threads:
        torch.set_num_threads(threads)
    precisions = [("fp32", torch.float32)] + ([("fp16", torch.float16)] if half else [])
    rows = []
    for name, which in BASELINES.items():
        for precision, dtype in precisions:
            for frames in lengths:
                for batch in batches if which != "legacy" else [1]:  # the original is slow: batch 1 is enough
                    if which == "legacy":
                        # syncnet_python's way: the original network on 5-frame windows, one per output frame
                        net = SyncNetS().eval().to(device, dtype)
                        a = torch.randn(batch, 1, 13, 4 * frames + 16, device=device, dtype=dtype)
                        v = torch.rand(batch, 3, frames + 4, 224, 224, device=device, dtype=dtype) * 255

                        def fn(net=net, a=a, v=v):
                            out = [net.sliding_embeddings(a[i:i + 1], v[i:i + 1]) for i in range(a.shape[0])]
                            _sync(device)
                            return out
                        label = f"{precision} (random weights: speed only)"
                    else:
                        net = load(which).to(device, dtype)
                        a = torch.randn(batch, 1, 13, 4 * frames, device=device, dtype=dtype) * 10
                        v = torch.rand(batch, 3, frames, 112, 112, device=device, dtype=dtype) * 2 - 1

                        def fn(net=net, a=a, v=v):
                            out = net(a, v)
                            _sync(device)
                            return out
                        label = precision
                    slow = which == "legacy" and device == "cpu"
                    calls = (min(warmup, 1), max(2, repeat // 4)) if slow else (warmup, repeat)
                    with torch.inference_mode():
                        med, p90 = timed(fn, *calls)
                    backend = f"torch {torch.__version__} {device}"
                    if device.startswith("cuda"):
                        backend += f" ({torch.cuda.get_device_name()})"
                    rows.append(BenchRow(name, "pytorch", label, backend, frames, batch, med * 1e3,
                                         p90 * 1e3).to_dict())
    rss = peak_rss_mb()
    for r in rows:
        r["peak_rss_mb"] = rss
    return rows


def measure_baselines(lengths: list[int], batches: list[int], threads: int | None = None, warmup: int = 2,
                      repeat: int = 10, device: str = "cpu", half: bool = False) -> list[BenchRow]:
    """PyTorch teacher, student and original SyncNet S on ``device`` (FP32, and FP16 too with ``half``)."""
    rows = []
    for d in in_child(_measure_baselines_child, lengths, batches, threads, warmup, repeat, device, half):
        d.pop("frames_per_s"), d.pop("real_time_factor")
        rows.append(BenchRow(**d))
    return rows
