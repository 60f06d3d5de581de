"""One checkpoint format for legacy, teacher and student: config + state_dict + content hash.

A checkpoint is a torch-saved dict; its ``state_sha256`` covers every tensor's name, dtype, shape and bytes,
so exporters can pin the exact weights an artifact came from and a corrupted file is caught on load.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from edge_sync import __version__
from edge_sync._atomic import atomic_torch_save
from edge_sync._paths import BUNDLED_CHECKPOINTS, bundled_checkpoint
from edge_sync.errors import CheckpointError
from edge_sync.models._files import load_torch_file
from edge_sync.models.legacy import LegacySyncNetFCN
from edge_sync.models.student import StudentConfig, X3DStudent
from edge_sync.models.teacher import SyncNetFCN, TeacherConfig
from edge_sync.spec import contract_dict

log = logging.getLogger(__name__)

FORMAT = "edge-sync-checkpoint"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class ModelKind:
    """How to rebuild one kind of model from the config stored in its checkpoint."""

    name: str
    model_class: type[nn.Module]
    build: Callable[[dict[str, Any]], nn.Module]


MODEL_KINDS: dict[str, ModelKind] = {}


def register_kind(kind: ModelKind) -> None:
    MODEL_KINDS[kind.name] = kind


register_kind(ModelKind("teacher", SyncNetFCN, lambda c: SyncNetFCN(TeacherConfig.from_dict(c))))
register_kind(ModelKind("student", X3DStudent, lambda c: X3DStudent(StudentConfig.from_dict(c))))
register_kind(ModelKind("legacy", LegacySyncNetFCN, lambda c: LegacySyncNetFCN(**c)))


def state_hash(state: dict[str, torch.Tensor]) -> str:
    """sha256 over sorted (name, dtype, shape, bytes): stable across save/load and devices."""
    h = hashlib.sha256()
    for key in sorted(state):
        t = state[key].detach().cpu().contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def kind_of(model: nn.Module) -> str:
    for kind in MODEL_KINDS.values():
        if type(model) is kind.model_class:
            return kind.name
    raise CheckpointError(f"no checkpoint kind registered for {type(model).__name__}")


def save_checkpoint(model: nn.Module, path: str | Path, meta: dict[str, Any] | None = None,
                    half: bool = False) -> str:
    """Write atomically (temp file + rename) and return the state hash.

    ``half`` stores floating tensors as float16 (bundled weights stay a few MB); loading casts back.
    """
    state = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu().clone()
             for k, v in model.state_dict().items()}
    digest = state_hash(state)
    payload = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "kind": kind_of(model),
        "config": model.config_dict(), "contract": contract_dict(model.contract),
        "state_dict": state, "state_sha256": digest, "meta": meta or {}, "edge_sync_version": __version__,
    }
    atomic_torch_save(payload, path)
    return digest


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load and verify a checkpoint payload (format, kind, hash) without building the model."""
    return _verify_payload(load_torch_file(path), Path(path))


def _verify_payload(payload: Any, path: Path) -> dict[str, Any]:
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an edge-sync checkpoint; a syncnet_python model file can be "
                              "converted with: edge-sync import-syncnet PATH -o OUT.pt")
    if payload.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{path} has format version {payload['format_version']}; this edge-sync reads "
                              f"up to {FORMAT_VERSION}: upgrade edge-sync")
    if payload.get("kind") not in MODEL_KINDS:
        raise CheckpointError(f"{path} holds an unknown model kind {payload.get('kind')!r}")
    if state_hash(payload["state_dict"]) != payload.get("state_sha256"):
        raise CheckpointError(f"{path} is corrupted: its weights do not match the stored sha256")
    return payload


def _is_public_syncnet(obj: Any) -> bool:
    return isinstance(obj, dict) and "netcnnaud.0.weight" in obj


def bundled_path(name: str) -> Path:
    return bundled_checkpoint(name)


def load(path_or_name: str | Path = "student") -> nn.Module:
    """Build a model in eval mode from a checkpoint path, a bundled name ('teacher', 'student', 'teacher-real'), or a
    syncnet_python public checkpoint (converted on the fly to the FCN form)."""
    candidate = Path(path_or_name)
    if not candidate.exists() and str(path_or_name) in BUNDLED_CHECKPOINTS:
        candidate = bundled_path(str(path_or_name))
        if not candidate.is_file():
            hint = ("legacy weights are not bundled: pass syncnet_python's model file or convert it with "
                    "'edge-sync import-syncnet'" if path_or_name == "legacy" else
                    "train them with 'edge-sync train' or pass a checkpoint path")
            raise CheckpointError(f"no bundled '{path_or_name}' weights at {candidate}; {hint}")
    obj = load_torch_file(candidate)  # read once: it is either syncnet_python's format or ours
    if _is_public_syncnet(obj):
        log.info("loading %s as a syncnet_python checkpoint", candidate)
        return LegacySyncNetFCN.from_state_dict(obj, source=str(candidate)).eval()
    payload = _verify_payload(obj, candidate)
    kind = MODEL_KINDS[payload["kind"]]
    model = kind.build(payload["config"])
    state = {k: v.float() if v.is_floating_point() else v for k, v in payload["state_dict"].items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(f"{candidate}: weights do not fit a {kind.name} with its stored config: {exc}") from exc
    model.checkpoint_sha256 = payload["state_sha256"]
    model.checkpoint_meta = payload.get("meta", {})
    log.info("loaded %s (%s, sha256 %s)", candidate, kind.name, payload["state_sha256"][:12])
    return model.eval()


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
