"""Artifacts this machine cannot run at all, and why: parity and bench report them as ``skipped`` (not failed).

An artifact is skipped when every backend that could run its target predicts only on other operating systems
(CoreML: macOS). A backend that is merely not installed is not a reason to skip: that is an error naming the
extra to install, since installing it fixes it."""
from __future__ import annotations

import sys
from pathlib import Path

from edge_sync.runtimes.registry import BACKENDS

PLATFORM_NAMES = {"darwin": "macOS", "linux": "Linux", "win32": "Windows"}


def platform_name(platform: str) -> str:
    return PLATFORM_NAMES.get(platform, platform)


def skip_reason(target: str, backend: str = "auto", platform: str = sys.platform) -> str | None:
    """Why no backend (``backend``, or any under 'auto') runs ``target`` artifacts on ``platform``; None if one can
    (or if none is registered for the target: loading reports that)."""
    runners = [b for b in BACKENDS.values() if target in b.targets and backend in ("auto", b.name)]
    if not runners or any(not b.platforms or platform in b.platforms for b in runners):
        return None
    where = ", ".join(sorted({platform_name(p) for b in runners for p in b.platforms}))
    return f"{target} artifacts run on {where} only (this machine: {platform_name(platform)})"


def artifact_skip_reason(path: str | Path, backend: str = "auto", platform: str = sys.platform) -> str | None:
    """:func:`skip_reason` for the artifact at ``path``; None when it cannot be read (loading it reports why)."""
    from edge_sync.artifact import read_artifact
    from edge_sync.errors import EdgeSyncError

    try:
        target = read_artifact(path).target
    except (EdgeSyncError, OSError, ValueError):
        return None
    return skip_reason(target, backend, platform)
