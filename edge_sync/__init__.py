"""edge-sync: a SyncNet-family lip-sync model on edge devices, with proof that it still works there."""
from __future__ import annotations

__version__ = "0.1.0"  # the only place the version is written: pyproject.toml reads it ([tool.setuptools.dynamic])

from edge_sync.errors import CheckpointError, EdgeSyncError, MediaError, MissingExtraError, NoFaceError

__all__ = ["__version__", "load", "EdgeSyncError", "MediaError", "MissingExtraError", "NoFaceError", "CheckpointError"]


def load(path=None, backend: str = "auto", **options):
    """Load an artifact into an :class:`edge_sync.runtimes.Engine` (numpy only; see runtimes.api.load)."""
    from edge_sync.runtimes.api import load as _load

    return _load(path, backend=backend, **options)
