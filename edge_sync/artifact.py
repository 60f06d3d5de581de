"""Artifact bundles: a directory ``NAME.<target>-<precision>/`` with the backend's files and ``manifest.json``.

Stdlib + jsonschema (exporters write it, numpy-only runtimes read it). Written into a temp directory beside the
destination and renamed into place, so a crash never leaves half an artifact. Reading refuses anything a backend
would open unchecked: the manifest must pass its schema (:mod:`edge_sync.artifact_schema`), every path it names
must stay inside the directory and be hashed in its ``files`` table, every listed file must match its size and
sha256, and no unlisted file may sit beside them. Each refusal is one line that names the field or file.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Callable

from edge_sync import __version__
from edge_sync.errors import EdgeSyncError
from edge_sync._manifest import MANIFEST, read_manifest
from edge_sync.artifact_schema import FORMAT, PRECISIONS, TARGETS, manifest_problem
from edge_sync.spec import SPEC_VERSION

FORMAT_VERSION = 1
REMAKE = "re-export it with: edge-sync export -o DIR"
# Files a runtime makes on the device after export, so no manifest can list them: a TensorRT engine is specific to
# one GPU and TensorRT version. The tensorrt backend checks the engine's record against the hashed model.onnx.
DEVICE_BUILT = {"tensorrt": frozenset({"model.plan", "model.plan.json"})}
# Written by file managers and read by no backend: refusing them would refuse any artifact opened in Finder
OS_METADATA = frozenset({".DS_Store", "Thumbs.db", "desktop.ini"})


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


ABANDONED_AFTER_S = 3600  # a temp folder without a writer's pid in its name counts as abandoned after this


def _writer_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists but not ours, or the platform cannot tell: leave its folder alone
    return True


def _sweep_abandoned(out_dir: Path, final_name: str) -> None:
    """Remove temp folders that an export killed midway left beside ``final_name`` (``.NAME.<pid>.*``): their
    writer is gone. Folders of a live writer (an export running now) stay."""
    for folder in out_dir.glob(f".{final_name}.*"):
        if not folder.is_dir() or folder.name == f".{final_name}.old":
            continue
        pid = folder.name[len(final_name) + 2:].split(".", 1)[0]
        try:
            abandoned = not _writer_alive(int(pid))
        except ValueError:  # written before temp names carried a pid
            abandoned = time.time() - folder.stat().st_mtime > ABANDONED_AFTER_S
        if abandoned:
            shutil.rmtree(folder, ignore_errors=True)


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
    _sweep_abandoned(out_dir, final.name)
    tmp = Path(tempfile.mkdtemp(dir=out_dir, prefix=f".{final.name}.{os.getpid()}."))
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


def inside(path: Path, rel: str, field: str) -> Path:
    """``path / rel`` for a path named by the manifest, refused unless it stays inside the artifact directory.

    Absolute paths, drive letters, backslashes, '..' and symlinks that lead out are refused: a manifest must never
    make a backend open a file that the artifact's hashes do not cover.
    """
    pure = PurePosixPath(rel)
    if pure.is_absolute() or PureWindowsPath(rel).drive or "\\" in rel or "\x00" in rel or ".." in pure.parts:
        raise ArtifactError(f"{path}: {field} = {rel!r} must be a relative path inside the artifact directory; "
                            f"{REMAKE}")
    root = path.resolve()
    if not (root / rel).resolve().is_relative_to(root):
        raise ArtifactError(f"{path}: {field} = {rel!r} leads outside the artifact directory (through a symlink); "
                            f"copy the real file in or {REMAKE}")
    return path / rel


def _check_entries(path: Path, manifest: dict[str, Any]) -> None:
    """Each file a backend opens is named in ``entry``: it must be inside the artifact and hashed in ``files``
    (a directory entry, a CoreML package, through the files under it)."""
    files = manifest["files"]
    for role, rel in manifest["entry"].items():
        inside(path, rel, f"entry.{role}")
        prefix = rel.rstrip("/") + "/"
        if rel not in files and not any(name.startswith(prefix) for name in files):
            raise ArtifactError(f"{path}: entry.{role} = {rel!r} is not in the manifest's files table, so nothing "
                                f"checks it; {REMAKE}")


def _check_files(path: Path, files: dict[str, dict[str, Any]]) -> None:
    """Every listed file is present with its size and sha256 (size first: a swapped file is not hashed whole)."""
    for rel, info in files.items():
        file = inside(path, rel, f"files[{json.dumps(rel)}]")
        if not file.is_file():
            raise ArtifactError(f"{path} is incomplete: {rel} is missing; re-export or copy the whole directory")
        size = file.stat().st_size
        if size != info["bytes"]:
            raise ArtifactError(f"{path}: {rel} is {size} bytes where the manifest lists {info['bytes']} with its "
                                "sha256 (corrupted or modified); re-export the artifact")
        if sha256_file(file) != info["sha256"]:
            raise ArtifactError(f"{path}: {rel} does not match its sha256 in the manifest (corrupted or "
                                "modified); re-export the artifact")


def _check_unlisted(path: Path, manifest: dict[str, Any]) -> None:
    """No file beside the listed ones: a backend finds some files itself (OpenVINO's .bin beside the .xml, ONNX
    external data, a CoreML package's contents), so an unlisted file could be read without any check."""
    listed = set(manifest["files"]) | {MANIFEST} | DEVICE_BUILT.get(manifest["target"], frozenset())
    for folder, dirs, names in os.walk(path):  # linked folders are not followed, only checked as links
        here = Path(folder)
        for link in (here / n for n in dirs + names if (here / n).is_symlink()):
            inside(path, link.relative_to(path).as_posix(), "link")
        for name in names:
            rel = (here / name).relative_to(path).as_posix()
            if rel not in listed and name not in OS_METADATA:
                raise ArtifactError(f"{path}: {rel} is not in the manifest's files table, so a backend could read "
                                    f"it unchecked; remove it or {REMAKE}")


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

    @property
    def bytes(self) -> int:
        """Size of the files the manifest lists: what a device receives."""
        return int(sum(int(f["bytes"]) for f in self.manifest["files"].values()))

    def file(self, role: str = "model") -> Path:
        """The file the manifest names for ``role`` (e.g. 'model'), never one outside the artifact."""
        rel = self.manifest.get("entry", {}).get(role)
        if rel is None:
            raise ArtifactError(f"{self.path}: the manifest names no '{role}' file")
        return inside(self.path, rel, f"entry.{role}")


def read_artifact(path: str | Path, verify: bool = True) -> Artifact:
    """Open an artifact directory: the manifest's format, spec version and schema, its entry paths (inside and
    hashed), and with ``verify`` every file's size and sha256 and no unlisted file (``verify=False`` skips the
    reading and hashing, for callers that only want the manifest)."""
    path = Path(path)
    if not path.is_dir():
        raise ArtifactError(f"{path} is not an artifact directory; make one with: edge-sync export -o DIR")
    manifest = read_manifest(path, FORMAT, FORMAT_VERSION, ArtifactError, "artifact", REMAKE)
    problem = manifest_problem(manifest)
    if problem is not None:
        raise ArtifactError(f"{path / MANIFEST}: {problem}; {REMAKE}")
    _check_entries(path, manifest)
    if verify:
        _check_files(path, manifest["files"])
        _check_unlisted(path, manifest)
    return Artifact(path, manifest)
