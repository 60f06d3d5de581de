"""Small fitted heads over sync features: standardised logistic regression, stored as JSON per model.

The heads are fitted offline (``scripts/fit_usecases.py``, scikit-learn) on synthetic clips with known answers;
applying one is a dot product, so the runtime stays numpy-only. Sync features are model-specific (each model's
correlation has its own scale), so a head file names the checkpoint it was fitted for and is found by the
``source.checkpoint_sha256`` of an artifact's manifest: every target and precision of one model shares it.
"""
from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_sync._atomic import atomic_write_text
from edge_sync.errors import EdgeSyncError

log = logging.getLogger(__name__)
HEADS_DIR = Path(__file__).resolve().parent.parent / "weights" / "usecases"
HEADS_FORMAT = "edge-sync-usecase-heads"


@dataclass(frozen=True)
class LogisticHead:
    """p = sigmoid(w . (x - mean) / scale + b), with the decision ``threshold`` chosen when it was fitted."""

    features: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: float
    threshold: float = 0.5

    def probability(self, x: np.ndarray) -> np.ndarray:
        """x: [..., len(features)] -> probabilities [...]."""
        x = np.asarray(x, np.float64)
        if x.shape[-1] != len(self.features):
            raise ValueError(f"expected {len(self.features)} features {self.features}, got {x.shape[-1]}")
        z = ((x - self.mean) / self.scale) @ self.weights + self.bias
        return 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))

    def to_dict(self) -> dict[str, Any]:
        return {"features": list(self.features), "mean": self.mean.tolist(), "scale": self.scale.tolist(),
                "weights": self.weights.tolist(), "bias": self.bias, "threshold": self.threshold}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "LogisticHead":
        return cls(tuple(d["features"]), np.asarray(d["mean"], np.float64), np.asarray(d["scale"], np.float64),
                   np.asarray(d["weights"], np.float64), float(d["bias"]), float(d.get("threshold", 0.5)))


@dataclass(frozen=True)
class UsecaseHeads:
    """The heads fitted for one model, with how well they did on hold-out clips (``evaluation``).

    ``evidence_floor``: the LSE-C (confidence) below which this model's reading of a clip carries too little sync
    evidence for a verdict; fitted on real clips with known offsets (``scripts/fit_evidence_floor.py``), which
    records how in ``evidence_fit`` (rule, data, models, right answers). Stored once, as the file's top-level
    ``evidence_floor`` object."""

    checkpoint_sha256: str
    heads: dict[str, LogisticHead]
    evaluation: dict[str, Any]
    path: Path | None = None
    evidence_floor: float | None = None
    evidence_fit: dict[str, Any] | None = None

    def get(self, name: str) -> LogisticHead | None:
        return self.heads.get(name)

    def write(self, path: Path) -> Path:
        payload = {"format": HEADS_FORMAT, "format_version": 1, "checkpoint_sha256": self.checkpoint_sha256,
                   "heads": {k: h.to_dict() for k, h in self.heads.items()}, "evaluation": self.evaluation}
        if self.evidence_floor is not None:
            payload["evidence_floor"] = {**(self.evidence_fit or {}), "lse_c": self.evidence_floor}
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(payload, indent=2) + "\n")
        return path


def read_heads(path: str | Path) -> UsecaseHeads:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        if data.get("format") != HEADS_FORMAT:
            raise ValueError(f"format is {data.get('format')!r}, not {HEADS_FORMAT!r}")
        heads = {k: LogisticHead.from_dict(v) for k, v in data["heads"].items()}
        floor = data.get("evidence_floor")
        if isinstance(floor, dict):  # {"lse_c": ..., how it was fitted}
            fit = {k: v for k, v in floor.items() if k != "lse_c"}
            floor = floor["lse_c"]
        else:  # a bare number, as session 12's files stored it
            fit = None
        return UsecaseHeads(str(data["checkpoint_sha256"]), heads, dict(data.get("evaluation", {})), path,
                            None if floor is None else float(floor), fit)
    except FileNotFoundError:
        raise EdgeSyncError(f"no use-case heads at {path}") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise EdgeSyncError(f"{path} is not a use-case heads file ({exc}); refit with scripts/fit_usecases.py") \
            from exc


def heads_path(checkpoint_sha256: str) -> Path:
    return HEADS_DIR / f"{checkpoint_sha256[:16]}.json"


def heads_for(manifest: dict[str, Any], override: str | Path | None = None) -> UsecaseHeads | None:
    """The heads fitted for the model an artifact was exported from (None: none fitted; scores stay raw)."""
    if override is not None:
        return read_heads(override)
    sha = (manifest.get("source") or {}).get("checkpoint_sha256")
    if not sha or not heads_path(sha).is_file():
        return None
    heads = read_heads(heads_path(sha))
    return heads if heads.checkpoint_sha256 == sha else None


def resolve_heads(manifest: dict[str, Any], heads: UsecaseHeads | str | Path | None = "auto") -> UsecaseHeads | None:
    """What a use-case call's ``heads`` argument means: 'auto' -> those fitted for the artifact's model, a path ->
    that file, None -> no heads (raw scores and rules), heads -> themselves."""
    if heads is None or isinstance(heads, UsecaseHeads):
        return heads
    return heads_for(manifest, None if isinstance(heads, str) and heads == "auto" else heads)


def with_floor_of(heads: UsecaseHeads, previous: UsecaseHeads | None) -> UsecaseHeads:
    """``heads`` keeping the evidence floor of ``previous`` when both belong to the same checkpoint: refitting the
    heads of a model does not change how much evidence its readings carry."""
    if previous is None or previous.checkpoint_sha256 != heads.checkpoint_sha256 or heads.evidence_floor is not None:
        return heads
    return dataclasses.replace(heads, evidence_floor=previous.evidence_floor, evidence_fit=previous.evidence_fit)


def evidence_floor_of(engine: Any) -> float | None:
    """The evidence floor fitted beside the use-case heads of an engine's model (None: no heads, or no floor; a
    broken heads file costs the floor, with a warning, never the sync that asks for it)."""
    manifest = getattr(engine, "manifest", None)
    try:
        heads = heads_for(manifest) if isinstance(manifest, dict) else None
    except EdgeSyncError as err:
        log.warning("no evidence floor: %s", err)
        return None
    return heads.evidence_floor if heads else None
