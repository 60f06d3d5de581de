"""edge-sync: a SyncNet-family lip-sync model on edge devices, with proof that it still works there."""
from __future__ import annotations

__version__ = "0.1.0"  # the only place the version is written: pyproject.toml reads it ([tool.setuptools.dynamic])

from typing import TYPE_CHECKING, Any

from edge_sync.errors import CheckpointError, EdgeSyncError, MediaError, MissingExtraError, NoFaceError

if TYPE_CHECKING:  # type checkers and IDEs see the real signatures and docstrings
    from edge_sync.runtimes.api import Engine, FileSync, TrackSync, load
    from edge_sync.runtimes.result import SyncResult

__all__ = ["__version__", "load", "Engine", "FileSync", "TrackSync", "SyncResult", "EdgeSyncError", "MediaError",
           "MissingExtraError", "NoFaceError", "CheckpointError"]

# imported on first use, so `import edge_sync` (the CLI, --version) stays light; edge_sync.load *is*
# edge_sync.runtimes.api.load, with its typed, documented options (no wrapper hiding them behind **kwargs)
_RUNTIME = {"load": "edge_sync.runtimes.api", "Engine": "edge_sync.runtimes.api",
            "FileSync": "edge_sync.runtimes.api", "TrackSync": "edge_sync.runtimes.api",
            "SyncResult": "edge_sync.runtimes.result"}


def __getattr__(name: str) -> Any:
    if name in _RUNTIME:
        import importlib

        value = getattr(importlib.import_module(_RUNTIME[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'edge_sync' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_RUNTIME))
