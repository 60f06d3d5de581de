"""Check an artifact's declared contract against the tensor shapes its model really has.

Why: the runtime builds every input and reads every output from the manifest's contract (audio kind, crop size,
2K+1 offsets). A manifest that disagrees with its model (edited, or copied from another export) would otherwise
fail inside the backend with the backend's own error, or run and report offsets on the wrong scale. Sessions that
can tell their shapes cheaply (without running the model) offer ``io_shapes()``; others are not checked here.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from edge_sync.artifact import ArtifactError
from edge_sync.spec import PREPROCESSING, ModelContract, TensorSpec


def contract_from_manifest(manifest: dict[str, Any]) -> ModelContract:
    """The :class:`ModelContract` a manifest declares (refused when a field it needs is missing or unknown)."""
    c = manifest.get("contract", {})
    try:
        video = PREPROCESSING[c["video_preprocessing"]["name"]]
        return ModelContract(audio_input=c["audio_input"], video=video, max_offset=int(c["max_offset"]),
                             min_frames=int(c.get("min_frames", 1)), embeddings=c.get("embeddings") is True)
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(f"the manifest's contract is incomplete or unknown ({exc}); "
                            "re-export the artifact") from exc


def reads_embeddings(artifact: Any) -> bool:
    """The artifact declares the embedding outputs (a backend that reads them fetches all four)."""
    return contract_from_manifest(artifact.manifest).embeddings


Dims = Sequence[int | None] | None  # None: a dynamic dimension, or a shape of dynamic rank


def _field(name: str, contract: ModelContract) -> tuple[str, Any]:
    """The manifest field that decides a tensor's declared shape, and its value."""
    if name == "audio":
        return "contract.audio_input", contract.audio_input
    if name == "video":
        return "contract.video_preprocessing.name", contract.video.name
    if name in ("audio_emb", "video_emb"):
        return "contract.embeddings", contract.embeddings
    return "contract.max_offset", contract.max_offset


def _fits(declared: Sequence[str], dims: Dims) -> bool:
    """Same rank, and the same size wherever both the contract and the model fix one."""
    if dims is None:
        return True
    return len(declared) == len(dims) and all(
        not d.isdigit() or m is None or int(d) == m for d, m in zip(declared, dims))


def _text(shape: Sequence[Any] | None) -> str:
    if shape is None:
        return "of any rank"
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def check_tensor(spec: TensorSpec, shapes: Mapping[str, Dims], contract: ModelContract, where: Path | str) -> None:
    """Refuse a model tensor missing or shaped otherwise than the contract says, naming the manifest field."""
    if spec.name not in shapes:
        raise ArtifactError(f"{where}: the model has no tensor '{spec.name}' (it has {', '.join(sorted(shapes))}), "
                            "so it does not follow the edge-sync contract; re-export the artifact")
    dims = shapes[spec.name]
    if not _fits(spec.shape, dims):
        field, value = _field(spec.name, contract)
        raise ArtifactError(f"{where}: manifest {field} = {value!r} means {spec.name} {_text(spec.shape)}, but the "
                            f"model's {spec.name} is {_text(dims)}; fix the manifest or re-export the artifact")


def check_model_io(contract: ModelContract, session: Any, where: Path | str) -> None:
    """Every contract input and output against the session's ``io_shapes()``, where the backend offers it."""
    io_shapes = getattr(session, "io_shapes", None)
    if io_shapes is None:
        return
    shapes = io_shapes()
    for spec in contract.inputs + contract.outputs:
        check_tensor(spec, shapes, contract, where)
