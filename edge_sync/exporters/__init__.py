"""Exporter registry: one module per target, each declaring its precisions and the extra it needs.

``export(model, target, precision, out_dir)`` looks the target up here (no if-chains over backends) and
returns the artifact directory written by :mod:`edge_sync.artifact`.
"""
from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from edge_sync.errors import EdgeSyncError


@dataclass(frozen=True)
class ExporterInfo:
    """What one target can do and how to call it."""

    target: str
    precisions: tuple[str, ...]
    extra: str  # pip extra that installs the toolchain
    modules: tuple[str, ...]  # importable modules the toolchain needs
    export: Callable[..., Path]
    notes: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    # the user options it reads (calib, calib_method, time_range, buckets) -> the precisions it reads them at;
    # any other given option is refused (edge_sync.exporters.applicable), never silently ignored
    takes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # work it reuses from other targets of one run ("onnx-graph": torch.onnx's export, see
    # exporters.onnx.shared_exports); the export runner runs targets that share work one after another
    shares: str = ""

    def available(self) -> bool:
        return all(importlib.util.find_spec(m) is not None for m in self.modules)


EXPORTERS: dict[str, ExporterInfo] = {}


def register_exporter(info: ExporterInfo) -> ExporterInfo:
    EXPORTERS[info.target] = info
    return info


def get_exporter(target: str) -> ExporterInfo:
    if target not in EXPORTERS:
        raise EdgeSyncError(f"unknown export target {target!r}; known: {', '.join(sorted(EXPORTERS))}")
    return EXPORTERS[target]


_BUILTIN = ("onnx", "openvino", "coreml", "tflite", "tensorrt")
for _name in _BUILTIN:
    importlib.import_module(f"{__name__}.{_name}")
