"""Optional imports that fail with the extra to install instead of a bare ImportError."""
from __future__ import annotations

import importlib
from types import ModuleType

from edge_sync.errors import MissingExtraError


def require(module: str, extra: str, purpose: str = "") -> ModuleType:
    """Import ``module`` or raise :class:`MissingExtraError` naming ``pip install 'edge-sync[extra]'``."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:  # a broken install of the module counts as missing too
        raise MissingExtraError(module, extra, purpose) from exc


def available(module: str) -> bool:
    """True when ``module`` imports cleanly."""
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True
