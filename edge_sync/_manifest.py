"""Read a ``manifest.json`` that heads an edge-sync folder (artifacts, calibration sets): JSON, format, format
version and tensor-contract version, each refused with a message saying how to get a good one. Stdlib only."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edge_sync.spec import SPEC_VERSION

MANIFEST = "manifest.json"


def read_manifest(folder: Path, fmt: str, max_version: int, error: type[Exception], kind: str,
                  remake: str) -> dict[str, Any]:
    """The parsed manifest of ``folder``; ``kind`` names what the folder should be ('calibration set'),
    ``remake`` what the user runs to make a good one."""
    path = folder / MANIFEST
    if not path.is_file():
        raise error(f"{folder} has no {MANIFEST}: not an edge-sync {kind} (or an interrupted copy); {remake}")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise error(f"{path} is not valid JSON ({exc}); {remake}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != fmt:
        raise error(f"{path} is not an edge-sync {kind} manifest")
    if manifest.get("format_version", 0) > max_version:
        raise error(f"{folder} uses {kind} format {manifest['format_version']}; upgrade edge-sync (this one reads "
                    f"up to {max_version})")
    if manifest.get("spec_version") != SPEC_VERSION:
        raise error(f"{folder} was made for tensor contract v{manifest.get('spec_version')}, this edge-sync speaks "
                    f"v{SPEC_VERSION}; {remake}")
    return manifest
