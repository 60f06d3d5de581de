"""Run artifacts through the runtime API and a PyTorch reference on the same inputs; check the tolerances.

Inputs: random real-like tensors at several clip lengths (numeric parity, dynamic axes), synthetic hold-out
clips with ground truth (numeric + task parity), and the face tracks of real video files when given (agreement).
A student artifact is compared with the PyTorch model it was exported from (numeric parity: what export and
precision lose) and, for task parity, with the PyTorch teacher (what distillation + export lose together).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from edge_sync._paths import BUNDLED_CHECKPOINTS, bundled_checkpoint_with_sha
from edge_sync.artifact import parse_artifact_dirname
from edge_sync.errors import EdgeSyncError
from edge_sync.parity.tolerances import TOLERANCES, Tolerance

log = logging.getLogger(__name__)
DEFAULT_LENGTHS = (25, 100, 250)
HOLDOUT_SEED = 1000
CLIP_FRAMES = 50


@dataclass
class ParityCase:
    """One clip: model inputs, and per-frame ground-truth offsets when known."""

    kind: str  # random | synthetic | file
    name: str
    audio: np.ndarray  # [1, 1, F, 4T] float32
    video: np.ndarray  # [1, 3, T, S, S] float32
    truth: np.ndarray | None = None  # [T] int

    @property
    def frames(self) -> int:
        return int(self.video.shape[2])


@dataclass
class Check:
    """One gate: ``value`` against ``limit``; ``passed`` says whether it holds."""

    name: str
    value: float
    limit: float
    passed: bool
    detail: str = ""

    def message(self) -> str:
        return f"{self.name} = {self.value:.4g} (limit {self.limit:g}){': ' + self.detail if self.detail else ''}"


@dataclass
class ArtifactParity:
    artifact: str
    target: str
    precision: str
    backend: str
    reference: str
    numeric: dict[str, dict[str, float]] = field(default_factory=dict)  # per length / case kind
    task: dict[str, Any] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    error: str | None = None
    skipped: str | None = None  # why this machine cannot run the artifact at all (not a failure)

    @property
    def passed(self) -> bool:
        return self.error is None and self.skipped is None and all(c.passed for c in self.checks)

    @property
    def status(self) -> str:
        return "error" if self.error else "skipped" if self.skipped else ("pass" if self.passed else "fail")

    def failures(self) -> list[str]:
        return [self.error] if self.error else [c.message() for c in self.checks if not c.passed]

    def to_dict(self) -> dict[str, Any]:
        return {"artifact": self.artifact, "target": self.target, "precision": self.precision,
                "backend": self.backend, "reference": self.reference, "status": self.status,
                "numeric": self.numeric, "task": self.task, "error": self.error, "skipped": self.skipped,
                "checks": [{"name": c.name, "value": c.value, "limit": c.limit, "passed": c.passed,
                            "detail": c.detail} for c in self.checks]}


# --- inputs ------------------------------------------------------------------------------------------
def random_cases(model: Any, lengths: tuple[int, ...], seed: int = 0) -> Iterator[ParityCase]:
    from edge_sync.exporters.onnx import sample_inputs

    for i, t in enumerate(lengths):
        audio, video = sample_inputs(model, t, batch=1, seed=seed + i)
        yield ParityCase("random", f"random T={t}", audio.numpy(), video.numpy())


def synthetic_cases(count: int, seed: int = HOLDOUT_SEED, frames: int = CLIP_FRAMES) -> Iterator[ParityCase]:
    """The hold-out clips `edge-sync eval` scores (constant offsets, so a clip has one true offset)."""
    from edge_sync.data.synthetic import make_clip

    for i in range(count):
        clip = make_clip(seed, i, "holdout", frames, drift_prob=0.0)
        yield ParityCase("synthetic", f"holdout {seed}/{i}", clip.audio[None], clip.video[None], clip.offsets)


def file_cases(root: Path, preprocessing: Any) -> Iterator[ParityCase]:
    from edge_sync.features.media import find_videos
    from edge_sync.features.clip import prepare_clip

    videos = [root] if root.is_file() else find_videos(root)
    for path in videos:
        try:
            prepared = prepare_clip(path, preprocessing=preprocessing)
        except EdgeSyncError as exc:
            log.warning("parity: skipped %s (%s)", path, exc)
            continue
        for seg in prepared.segments:
            yield ParityCase("file", f"{path.name} track {seg.track_id}@{seg.start}", seg.audio, seg.video)


def build_cases(model: Any, lengths: tuple[int, ...], count: int, data: str | None = "synthetic",
                buckets: tuple[int, ...] = ()) -> list[ParityCase]:
    """Random cases at ``lengths`` (for static-shape artifacts: their buckets and a windowed length, since a
    padded clip is not meant to be exact), synthetic hold-out clips, and files under ``data`` if it is a path."""
    if buckets:
        lengths = tuple(sorted(set(buckets) | {2 * max(buckets) + 17}))
    cases = list(random_cases(model, lengths))
    if data == "synthetic" and count:
        cases += list(synthetic_cases(count, frames=max(CLIP_FRAMES, min(buckets)) if buckets else CLIP_FRAMES))
    elif data and data != "none":
        cases += list(file_cases(Path(data), model.contract.video))
    return cases


# --- comparison --------------------------------------------------------------------------------------
def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    denom = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / denom) if denom > 0 else float(np.array_equal(a, b))


def failing_fraction(out: np.ndarray, ref: np.ndarray, tol: Tolerance) -> float:
    """Fraction of elements off by more than atol AND more than rtol x |ref| (Polygraphy's rule)."""
    diff = np.abs(out.astype(np.float64) - ref)
    return float(np.mean((diff > tol.atol) & (diff > tol.rtol * np.abs(ref))))


def reference_outputs(model: Any, case: ParityCase) -> tuple[np.ndarray, np.ndarray]:
    import torch

    with torch.inference_mode():
        probs, corr = model(torch.from_numpy(case.audio), torch.from_numpy(case.video))
    return probs[0].numpy().astype(np.float64), corr[0].numpy().astype(np.float64)


def _clip_accuracy(probs: list[np.ndarray], truths: list[np.ndarray]) -> float:
    from edge_sync.training.metrics import clip_metrics

    return 100.0 * clip_metrics(probs, [int(np.median(t)) for t in truths])["accuracy"]


def compare(engine: Any, model: Any, cases: list[ParityCase], tol: Tolerance, reference_name: str,
            teacher: Any = None, progress: Callable[[Iterator], Iterator] = iter) -> ArtifactParity:
    """All metrics and gates for one loaded artifact against one reference model."""
    art = engine.artifact
    res = ArtifactParity(str(art.path), art.target, art.precision, engine.backend, reference_name)
    per_kind: dict[str, dict[str, list[float]]] = {}
    fails = {"sync_probs": [], "correlation": []}
    frame_agree, clip_agree = [], []
    probs_art, probs_ref, probs_teacher, truths = [], [], [], []
    for case in progress(cases):
        out = engine.run(case.audio, case.video)
        ref_p, ref_c = reference_outputs(model, case)
        key = case.name if case.kind == "random" else case.kind
        stats = per_kind.setdefault(key, {})
        for name, o, r in (("sync_probs", out.frame_probs, ref_p), ("correlation", out.correlation, ref_c)):
            diff = np.abs(o.astype(np.float64) - r)
            stats.setdefault(f"{name}_max_abs", []).append(float(diff.max()))
            stats.setdefault(f"{name}_mean_abs", []).append(float(diff.mean()))
            stats.setdefault(f"{name}_cosine", []).append(_cosine(o, r))
            if case.kind != "random" or tol.numeric_on_random:
                fails[name].append(failing_fraction(o, r, tol))
        if case.kind == "random":
            continue  # noise has no offset to agree on: random inputs check numbers and shapes only
        frame_agree.append(float(np.mean(out.frame_probs.argmax(0) == ref_p.argmax(0))))
        clip_agree.append(float(out.frame_probs.mean(1).argmax() == ref_p.mean(1).argmax()))
        if case.truth is not None:
            probs_art.append(out.frame_probs)
            probs_ref.append(ref_p)
            truths.append(case.truth)
            if teacher is not None:
                probs_teacher.append(reference_outputs(teacher, case)[0])
    for key, stats in per_kind.items():
        res.numeric[key] = {k: (max(v) if k.endswith("max_abs") else min(v) if k.endswith("cosine")
                                else float(np.mean(v))) for k, v in stats.items()}
    for name, values in fails.items():
        if values:
            worst = max(values)
            res.checks.append(Check(f"{name} failing elements", worst, tol.max_fail_fraction,
                                    worst <= tol.max_fail_fraction, f"atol {tol.atol:g} and rtol {tol.rtol:g}"))
    if frame_agree:
        res.checks.append(Check("frame offset agreement", float(np.mean(frame_agree)), tol.min_frame_agreement,
                                float(np.mean(frame_agree)) >= tol.min_frame_agreement))
        res.checks.append(Check("clip offset agreement", float(np.mean(clip_agree)), tol.min_clip_agreement,
                                float(np.mean(clip_agree)) >= tol.min_clip_agreement))
    if truths:
        acc, acc_ref = _clip_accuracy(probs_art, truths), _clip_accuracy(probs_ref, truths)
        res.task = {"clips": len(truths), "accuracy": acc, "reference_accuracy": acc_ref,
                    "delta": acc - acc_ref}
        if probs_teacher:
            acc_t = _clip_accuracy(probs_teacher, truths)
            res.task.update({"teacher_accuracy": acc_t, "delta_to_teacher": acc - acc_t})
        res.checks.append(Check("accuracy drop (points)", acc_ref - acc, tol.max_acc_drop,
                                acc_ref - acc <= tol.max_acc_drop))
    return res


# --- driver --------------------------------------------------------------------------------------------
def _reference_for(manifest: dict[str, Any], reference: str | None) -> str:
    """The checkpoint to compare an artifact with: ``--reference``, else the bundled checkpoint with the weights hash
    the manifest records (whatever path the exporting machine wrote), else the recorded path."""
    if reference:
        return reference
    source = manifest.get("source", {})
    bundled = bundled_checkpoint_with_sha(source.get("checkpoint_sha256"))
    if bundled:
        return bundled
    model = source.get("model")
    if not model:
        raise EdgeSyncError(f"{manifest.get('name')}: the manifest names no source model; pass --reference")
    if not (Path(model).exists() or model in BUNDLED_CHECKPOINTS):
        raise EdgeSyncError(f"{manifest.get('name')}: its source model {model} is not here and no bundled checkpoint "
                            f"has its weights; pass --reference")
    return str(model)


def _check_reference(manifest: dict[str, Any], reference: str | None, model: Any) -> None:
    """Refuse a reference found by the manifest whose weights are not the ones the artifact was exported from (a
    checkpoint retrained at the same path): its parity would only measure the retraining."""
    sha = manifest.get("source", {}).get("checkpoint_sha256")
    found = getattr(model, "checkpoint_sha256", None)
    if reference is None and sha and found and found != sha:
        raise EdgeSyncError(f"{manifest.get('name')}: the recorded source model {manifest['source'].get('model')} now "
                            f"holds other weights (sha256 {found[:12]}, exported from {sha[:12]}); pass --reference")


def run_parity(artifacts: list[str | Path], reference: str | None = None, data: str | None = "synthetic",
               count: int = 100, lengths: tuple[int, ...] = DEFAULT_LENGTHS, backend: str = "auto",
               teacher: str | None = "teacher", progress: bool = True) -> list[ArtifactParity]:
    """Parity of each artifact; one that cannot load or run is reported with its error, not raised, and one that no
    backend runs on this OS (CoreML off macOS) is ``skipped`` with the reason."""
    from tqdm import tqdm

    from edge_sync.models.io import load as load_model
    from edge_sync.runtimes.api import load as load_engine
    from edge_sync.runtimes.platforms import artifact_skip_reason

    models: dict[str, Any] = {}

    def model_for(name: str) -> Any:
        if name not in models:
            models[name] = load_model(name)
        return models[name]

    results = []
    for path in artifacts:
        reason = artifact_skip_reason(path, backend)
        if reason:
            target, precision = parse_artifact_dirname(Path(path).name)
            results.append(ArtifactParity(str(path), target, precision, backend, reference or "-", skipped=reason))
            continue
        try:
            engine = load_engine(path, backend=backend)
            ref_name = _reference_for(engine.manifest, reference)
            model = model_for(ref_name)
            _check_reference(engine.manifest, reference, model)
            kind = getattr(model, "kind", None)
            task_teacher = model_for(teacher) if teacher and kind == "student" else None
            cases = build_cases(model, lengths, count, data, engine.buckets)
            tol = TOLERANCES[engine.artifact.precision]
            bar = (lambda it: tqdm(it, total=len(cases), desc=Path(path).name, unit="clip")) if progress else iter
            results.append(compare(engine, model, cases, tol, ref_name, task_teacher, bar))
        except (EdgeSyncError, ValueError, OSError, RuntimeError) as exc:
            target, precision = parse_artifact_dirname(Path(path).name)
            results.append(ArtifactParity(str(path), target, precision, backend, reference or "?",
                                          error=str(exc)))
    return results

