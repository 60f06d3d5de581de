"""Read a ``manifest.json`` that heads an edge-sync folder (artifacts, calibration sets): JSON, format, format
version and tensor-contract version, each refused with a message saying how to get a good one. Stdlib only."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edge_sync.spec import SPEC_VERSION

MANIFEST = "manifest.json"
# far above any real manifest (a few KB; a large calibration set's is well under 1 MB): a bigger one is not ours,
# and reading it whole would let a hostile folder set this process's memory
MAX_MANIFEST_BYTES = 16 << 20


def _parse(path: Path, error: type[Exception], remake: str) -> Any:
    """The JSON in ``path``, refusing oversized, undecodable or absurdly nested files with one line."""
    size = path.stat().st_size
    if size > MAX_MANIFEST_BYTES:
        raise error(f"{path} is {size} bytes, more than any edge-sync manifest ({MAX_MANIFEST_BYTES}); {remake}")
    try:
        return json.loads(path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise error(f"{path} is not valid JSON ({exc}); {remake}") from exc
    except RecursionError as exc:
        raise error(f"{path} nests JSON too deeply to be an edge-sync manifest; {remake}") from exc


def read_manifest(folder: Path, fmt: str, max_version: int, error: type[Exception], kind: str,
                  remake: str) -> dict[str, Any]:
    """The parsed manifest of ``folder``; ``kind`` names what the folder should be ('calibration set'),
    ``remake`` what the user runs to make a good one."""
    path = folder / MANIFEST
    if not path.is_file():
        raise error(f"{folder} has no {MANIFEST}: not an edge-sync {kind} (or an interrupted copy); {remake}")
    manifest = _parse(path, error, remake)
    if not isinstance(manifest, dict) or manifest.get("format") != fmt:
        raise error(f"{path} is not an edge-sync {kind} manifest")
    version = manifest.get("format_version", 0)
    if isinstance(version, bool) or not isinstance(version, int):
        raise error(f"{path}: format_version must be an integer, got {version!r}; {remake}")
    if version > max_version:
        raise error(f"{folder} uses {kind} format {version}; upgrade edge-sync (this one reads up to {max_version})")
    if manifest.get("spec_version") != SPEC_VERSION:
        raise error(f"{folder} was made for tensor contract v{manifest.get('spec_version')!r}, this edge-sync speaks "
                    f"v{SPEC_VERSION}; {remake}")
    return manifest
