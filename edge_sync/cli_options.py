"""The choices `edge-sync` offers, taken from the registries, so `--help`, shell completion and validation list
exactly what this install has registered (a new exporter, backend or detector appears here without a CLI edit).

Each is a ``Literal`` of the registry's names: typer shows them as ``<a|b|c>`` in ``--help``, completes them, and
refuses anything else as a usage error (exit 2). None of these registries imports torch or a backend."""
from __future__ import annotations

from typing import Literal

from edge_sync._paths import BUNDLED_ARTIFACTS
from edge_sync.exporters import EXPORTERS
from edge_sync.exporters.onnx_int8 import METHODS as CALIB_METHODS
from edge_sync.exporters.onnx_int8 import STEMS as INT8_STEMS
from edge_sync.features.faces import DETECTORS
from edge_sync.runtimes.registry import BACKENDS
from edge_sync.spec import PREPROCESSING


def _choice(names: tuple[str, ...]) -> object:
    return Literal[names]  # Literal[("a", "b")] is Literal["a", "b"]


TARGET_NAMES = (*EXPORTERS, "all")
PRECISION_NAMES = tuple(dict.fromkeys(p for e in EXPORTERS.values() for p in e.precisions))
BACKEND_NAMES = ("auto", *sorted(BACKENDS, key=lambda b: BACKENDS[b].preference))
DETECTOR_NAMES = tuple(sorted(DETECTORS))

Target = _choice(TARGET_NAMES)
Precision = _choice(PRECISION_NAMES)
Backend = _choice(BACKEND_NAMES)
Detector = _choice(DETECTOR_NAMES)
CalibMethod = _choice(tuple(CALIB_METHODS))
Int8Stems = _choice(tuple(INT8_STEMS))
Preprocessing = _choice(tuple(PREPROCESSING))

BACKEND_HELP = "Runtime backend; auto picks, per artifact, the preferred installed one that runs its target."
ARTIFACT_HELP = ("Artifact directory, or a bundled artifact by name: " + ", ".join(BUNDLED_ARTIFACTS)
                 + " (default: student-fp32).")

NULL_CHECK_HELP = ("Also score the clip against its own soundtrack rolled out of any alignment (the evidence null) and "
                   "call a reading under 1.5x it UNSURE; --no-null-check: the evidence floor alone, up to ~2x faster.")
