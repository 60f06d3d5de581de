"""What every exporter shares: the time range an artifact accepts, its calibration set, its base manifest."""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from edge_sync.errors import EdgeSyncError
from edge_sync.info import dist_version

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TimeRange:
    """Clip lengths (video frames) an artifact accepts: an optimisation profile for TensorRT, a documented range
    for dynamic targets. ``max_frames`` None means unbounded (the runtime windows long clips anyway)."""

    min_frames: int = 1
    opt_frames: int = 100
    max_frames: int | None = None

    def __post_init__(self) -> None:
        hi = self.max_frames if self.max_frames is not None else self.opt_frames
        if not 1 <= self.min_frames <= self.opt_frames <= hi:
            raise EdgeSyncError(f"need 1 <= min-frames <= opt-frames <= max-frames, got {self.min_frames}, "
                                f"{self.opt_frames}, {self.max_frames}")

    def to_dict(self, dynamic: bool = True, buckets: tuple[int, ...] | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {**asdict(self), "dynamic": dynamic}
        if buckets:
            out["buckets"] = list(buckets)  # static-shape targets: the runtime runs exactly these lengths
        return out


def resolve_calibration(model: Any, calib: Any = None, progress: bool = True) -> Any:
    """The calibration set for an INT8 export: the one given (a path or a loaded set, checked against the model's
    contract), or the default synthetic set, built once and shared (logged, since the user did not choose it)."""
    from edge_sync.calibration import CalibrationSet, default_calibration_set, load_calibration_set

    if calib is None:
        log.warning("INT8 export without --calib: using the default synthetic calibration set")
        return default_calibration_set(model.contract, progress=progress)
    if isinstance(calib, CalibrationSet):
        calib.check_contract(model.contract)
        return calib
    return load_calibration_set(calib, model.contract)


def check_precision(target: str, precision: str, supported: tuple[str, ...]) -> None:
    if precision not in supported:
        raise EdgeSyncError(f"{target} export supports precisions {', '.join(supported)}, not {precision!r}")


def base_manifest(model: Any, source: dict[str, Any] | None, tools: tuple[str, ...], runs_on: list[str],
                  time_range: TimeRange | None = None, dynamic: bool = True,
                  buckets: tuple[int, ...] | None = None, calibration: Any = None) -> dict[str, Any]:
    """Manifest fields every exporter writes (write_artifact adds format, hashes and sizes)."""
    time_range = time_range or TimeRange(min_frames=model.contract.min_frames)
    out: dict[str, Any] = {
        "contract": model.contract.to_dict(),
        "time_range": time_range.to_dict(dynamic=dynamic, buckets=buckets),
        "source": source or {},
        "tools": {k: dist_version(k) for k in ("torch",) + tools},
        "runs_on": runs_on,
    }
    if calibration is not None:
        out["calibration"] = calibration.reference()
    return out


def model_digest(model: Any) -> str:
    """sha256 of the config and the weights (:func:`edge_sync.models.io.state_hash`): the key under which a
    conversion can be reused."""
    import hashlib
    import json

    from edge_sync.models.io import state_hash

    config = json.dumps(getattr(model, "config_dict", dict)(), sort_keys=True, default=str)
    return hashlib.sha256(f"{config}|{state_hash(model.state_dict())}".encode()).hexdigest()


DEFAULT_MAX_FRAMES = 1000  # 40 s per call where a target needs a bound; the runtime windows longer clips


def bounded_time_range(model: Any, time_range: TimeRange | None, why: str) -> TimeRange:
    """The caller's range with a finite max (``why``: the target that needs one), no shorter than the model's
    minimum."""
    min_frames = model.contract.min_frames
    if time_range is None:
        return TimeRange(min_frames=min_frames, opt_frames=100, max_frames=DEFAULT_MAX_FRAMES)
    if time_range.min_frames < min_frames:
        raise EdgeSyncError(f"this model needs at least {min_frames} frames; raise --min-frames to {min_frames}")
    if time_range.max_frames is None:
        top = max(DEFAULT_MAX_FRAMES, time_range.opt_frames)
        log.info("%s: max-frames set to %d", why, top)
        return TimeRange(time_range.min_frames, time_range.opt_frames, top)
    return time_range


def quick_parity(model: Any, run: Callable[[np.ndarray, np.ndarray], Any], frames: Iterable[int], backend: str,
                 seed: int = 100) -> dict[str, Any]:
    """Max abs error of every contract output vs PyTorch and per-frame offset agreement at several T, on real-like
    random inputs; ``run(audio, video)`` returns the outputs in contract order, or a dict of them by name, from
    the target's runtime."""
    import torch

    from edge_sync.exporters.onnx import sample_inputs

    frames = list(frames)
    worst = {t.name: 0.0 for t in model.contract.outputs}
    agree = []
    for i, t in enumerate(frames):
        audio, video = sample_inputs(model, t, batch=1, seed=seed + i)
        with torch.inference_mode():
            ref = dict(zip(worst, (x.numpy() for x in model(audio, video))))
        out = run(audio.numpy(), video.numpy())
        out = out if isinstance(out, dict) else dict(zip(worst, out))
        for name, r in ref.items():
            if name not in out:
                raise EdgeSyncError(f"{backend} gives no output {name}, which the contract declares")
            o = np.asarray(out[name], np.float32)
            if o.shape != r.shape:
                raise EdgeSyncError(f"{backend} output {name} has shape {o.shape} at T={t}, PyTorch gives {r.shape}")
            if not np.isfinite(o).all():
                raise EdgeSyncError(f"{backend} output {name} holds NaN or inf at T={t}")
            worst[name] = max(worst[name], float(np.abs(o - r).max()))
        agree.append(float((np.asarray(out["sync_probs"]).argmax(1) == ref["sync_probs"].argmax(1)).mean()))
    return {"status": "ran", "backend": backend, "frames": frames, "max_abs_err": worst,
            "frame_offset_agreement": float(np.mean(agree))}
