"""Exceptions a user can act on. The CLI prints their message as one line and exits non-zero."""
from __future__ import annotations


class EdgeSyncError(Exception):
    """Base class: every error edge-sync raises on purpose."""


class MissingExtraError(EdgeSyncError, ImportError):
    """An optional backend or toolchain is not installed."""

    def __init__(self, module: str, extra: str, purpose: str = "", hint: str | None = None) -> None:
        self.module, self.extra, self.hint = module, extra, hint
        what = f" (needed for {purpose})" if purpose else ""
        how = hint or f"install it with: pip install 'edge-sync[{extra}]'"
        super().__init__(f"'{module}' is not installed{what}; {how}")


class MediaError(EdgeSyncError, ValueError):
    """A media file cannot be decoded as asked (missing stream, corrupt, empty, unsupported)."""


class NoFaceError(EdgeSyncError, ValueError):
    """No usable face track was found in a video."""


class CheckpointError(EdgeSyncError, ValueError):
    """A checkpoint is missing, malformed or does not match the model it is loaded into."""
