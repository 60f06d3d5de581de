"""Uniform runtime: one numpy-only Engine over every backend (no torch import anywhere in here)."""
from __future__ import annotations

from edge_sync.runtimes.api import Engine, FileSync, TrackSync, load
from edge_sync.runtimes.live import LiveFrame, LiveSegment, LiveSyncer, MicrophoneLagError
from edge_sync.runtimes.registry import BACKENDS, BackendInfo, register_backend
from edge_sync.runtimes.result import SyncResult

__all__ = ["Engine", "FileSync", "TrackSync", "SyncResult", "load", "BACKENDS", "BackendInfo", "register_backend",
           "LiveSyncer", "LiveFrame", "LiveSegment", "MicrophoneLagError"]
