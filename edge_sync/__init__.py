"""edge-sync: a SyncNet-family lip-sync model on edge devices, with proof that it still works there."""
from __future__ import annotations

__version__ = "0.1.0"

from edge_sync.errors import CheckpointError, EdgeSyncError, MediaError, MissingExtraError, NoFaceError

__all__ = ["__version__", "EdgeSyncError", "MediaError", "MissingExtraError", "NoFaceError", "CheckpointError"]
