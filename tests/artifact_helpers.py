"""Shared test helpers for artifacts: a real artifact copied, then edited the way a user or an attacker would."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Callable

from edge_sync._paths import BUNDLED_ARTIFACT
from edge_sync.artifact import sha256_file

Change = Callable[[dict[str, Any]], Any]


def edit_manifest(art: Path, change: Change) -> Path:
    """Apply ``change(manifest)`` to the artifact's manifest.json in place."""
    manifest = json.loads((art / "manifest.json").read_text())
    change(manifest)
    (art / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return art


def edited_copy(dst: Path, change: Change = lambda m: None, src: Path = BUNDLED_ARTIFACT) -> Path:
    """``src`` (default: the bundled student ONNX) copied to ``dst`` with ``change(manifest)`` applied."""
    shutil.copytree(src, dst)
    return edit_manifest(dst, change)


def forge_model(art: Path, data: bytes, name: str = "model.onnx") -> Path:
    """Replace a file with ``data`` and list its true size and sha256: a consistent forgery, which only the
    backend (or the contract check) can catch."""
    (art / name).write_bytes(data)
    info = {"sha256": sha256_file(art / name), "bytes": len(data)}
    return edit_manifest(art, lambda m: m["files"].__setitem__(name, info))


def set_contract(field: str, value: Any) -> Change:
    """A manifest change that sets ``contract[field]``."""
    return lambda m: m["contract"].__setitem__(field, value)
