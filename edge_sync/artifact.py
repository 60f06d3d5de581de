"""Artifact bundles: a directory ``NAME.<target>-<precision>/`` with the backend's files and ``manifest.json``.

Stdlib only (exporters write it, numpy-only runtimes read it). Written into a temp directory beside the
destination and renamed into place, so a crash never leaves half an artifact; reading checks the format, the
sha256 of every file and the tensor contract, and fails with a message that says what to do.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from edge_sync import __version__
from edge_sync.errors import EdgeSyncError
from edge_sync._manifest import MANIFEST, read_manifest
from edge_sync.spec import SPEC_VERSION

FORMAT = "edge-sync-artifact"
FORMAT_VERSION = 1
TARGETS = ("onnx", "openvino", "coreml", "tflite", "tensorrt")
PRECISIONS = ("fp32", "fp16", "int8")


class ArtifactError(EdgeSyncError, ValueError):
    """An artifact directory is missing, incomplete, corrupted or made for another contract."""


def artifact_dirname(name: str, target: str, precision: str) -> str:
    return f"{name}.{target}-{precision}"


def parse_artifact_dirname(dirname: str) -> tuple[str, str]:
    """(target, precision) from ``NAME.target-precision`` (for reporting on a directory that will not load);
    '?' where the name does not say."""
    target, _, precision = dirname.rpartition(".")[2].partition("-")
    return target or "?", precision or "?"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _file_table(root: Path) -> dict[str, dict[str, Any]]:
    files = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.name != MANIFEST):
        rel = path.relative_to(root).as_posix()
        files[rel] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
    return files


def write_artifact(out_dir: str | Path, name: str, target: str, precision: str,
                   write_files: Callable[[Path], dict[str, Any]], manifest: dict[str, Any]) -> Path:
    """Create ``out_dir/NAME.target-precision`` atomically.

    ``write_files(tmp_dir)`` writes the backend's files and returns manifest fields it wants to add
    (e.g. opset, time range); hashes, sizes, versions and the format header are added here.
    """
    if target not in TARGETS or precision not in PRECISIONS:
        raise ArtifactError(f"unknown target/precision {target}/{precision}; targets {TARGETS}, "
                            f"precisions {PRECISIONS}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    final = out_dir / artifact_dirname(name, target, precision)
    tmp = Path(tempfile.mkdtemp(dir=out_dir, prefix=f".{final.name}."))
    try:
        extra = write_files(tmp) or {}
        body = {
            "format": FORMAT, "format_version": FORMAT_VERSION, "spec_version": SPEC_VERSION,
            "name": name, "target": target, "precision": precision,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "edge_sync": __version__, **manifest, **extra, "files": _file_table(tmp),
        }
        (tmp / MANIFEST).write_text(json.dumps(body, indent=2, sort_keys=False, default=str) + "\n")
        os.chmod(tmp, 0o755)  # mkdtemp makes 0700; artifacts are meant to be copied to devices and shared
        backup = None
        if final.exists():
            backup = out_dir / f".{final.name}.old"
            shutil.rmtree(backup, ignore_errors=True)
            os.replace(final, backup)
        os.replace(tmp, final)
        if backup is not None:
            shutil.rmtree(backup, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


@dataclass(frozen=True)
class Artifact:
    """A verified artifact on disk."""

    path: Path
    manifest: dict[str, Any]

    @property
    def target(self) -> str:
        return self.manifest["target"]

    @property
    def precision(self) -> str:
        return self.manifest["precision"]

    def file(self, role: str = "model") -> Path:
        """The file the manifest names for ``role`` (e.g. 'model')."""
        rel = self.manifest.get("entry", {}).get(role)
        if rel is None:
            raise ArtifactError(f"{self.path}: the manifest names no '{role}' file")
        return self.path / rel


def read_artifact(path: str | Path, verify: bool = True) -> Artifact:
    """Open an artifact directory, checking format, spec version and (``verify``) every file's sha256."""
    path = Path(path)
    if not path.is_dir():
        raise ArtifactError(f"{path} is not an artifact directory; make one with: edge-sync export -o DIR")
    manifest = read_manifest(path, FORMAT, FORMAT_VERSION, ArtifactError, "artifact",
                             "re-export it with: edge-sync export -o DIR")
    if verify:
        for rel, info in manifest.get("files", {}).items():
            file = path / rel
            if not file.is_file():
                raise ArtifactError(f"{path} is incomplete: {rel} is missing; re-export or copy the whole directory")
            if sha256_file(file) != info["sha256"]:
                raise ArtifactError(f"{path}: {rel} does not match its sha256 in the manifest (corrupted or "
                                    "modified); re-export the artifact")
    return Artifact(path, manifest)
