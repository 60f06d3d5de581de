"""Where the bundled weights and artifacts live inside the installed package (stdlib only)."""
from __future__ import annotations

import json
import os
from pathlib import Path

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
BUNDLED_ARTIFACT = WEIGHTS_DIR / "student.onnx-fp32"
# Bundled runtime artifacts by name (the wheel carries them): the FP32 one is the default; the INT8 one is the
# artifact the real-footage targets are scored on (calibrated on the real training clips; scripts/bundle_weights.py),
# for devices where INT8 runs faster (ARM CPUs, NPUs). `--artifact student-int8` picks it.
BUNDLED_ARTIFACTS = {"student-fp32": "student.onnx-fp32", "student-int8": "student.onnx-int8"}
# Bundled checkpoints by name: one per model kind, plus the real-footage teacher 'teacher-real' (Light-ASD's real-face
# encoders, MIT, fine-tuned with a sync head on real clips; `scripts/train_bundled.sh teacher-real-ft`; NOTICE keeps
# Light-ASD's licence). None of them is in the wheel.
BUNDLED_CHECKPOINTS = {"teacher": "teacher.pt", "student": "student.pt", "legacy": "legacy.pt",
                       "teacher-real": "teacher_real.pt"}


def bundled_checkpoint(name: str) -> Path:
    """Where the bundled checkpoint ``name`` lives (it may be absent: the wheel carries only the runtime artifact)."""
    return WEIGHTS_DIR / BUNDLED_CHECKPOINTS.get(name, f"{name}.pt")


def bundled_checkpoint_with_sha(sha256: str | None) -> str | None:
    """The name of the bundled checkpoint whose weights hash to ``sha256`` (its sidecar JSON records it), or None.
    Why: an artifact's manifest names the checkpoint it came from by a path of the machine that exported it; the
    hash finds that checkpoint in any other checkout."""
    if not sha256:
        return None
    for name, file in BUNDLED_CHECKPOINTS.items():
        try:
            sidecar = json.loads((WEIGHTS_DIR / file).with_suffix(".json").read_text())
        except (OSError, ValueError):
            continue
        if isinstance(sidecar, dict) and sidecar.get("sha256") == sha256:
            return name
    return None


def recorded_model_path(model: str | Path) -> str:
    """How a manifest names the checkpoint an artifact came from: a bundled name as given (when no file shadows it) or
    for the bundled file given by its path (a shipped manifest must not name the exporting machine's checkout),
    anything else as an absolute path, which holds from any working directory of this machine (other machines find a
    bundled checkpoint by its weights hash, :func:`bundled_checkpoint_with_sha`)."""
    text = str(model)
    if text in BUNDLED_CHECKPOINTS and not Path(text).exists():
        return text
    absolute = os.path.abspath(text)
    resolved = Path(absolute).resolve()
    return next((name for name in BUNDLED_CHECKPOINTS if bundled_checkpoint(name).resolve() == resolved), absolute)


def bundled_artifact_named(path: str | Path) -> Path | None:
    """The bundled artifact a bare name means (a key of BUNDLED_ARTIFACTS), or None: any other path, or a name that
    a file or folder in the working directory shadows."""
    if str(path) in BUNDLED_ARTIFACTS and not Path(path).exists():
        return WEIGHTS_DIR / BUNDLED_ARTIFACTS[str(path)]
    return None


def artifact_path(path: str | Path | None) -> Path:
    """Where an ``--artifact`` argument points: None is the default bundled artifact, a bundled artifact's name is
    that one (:func:`bundled_artifact_named`), anything else is a path."""
    if path is None:
        return BUNDLED_ARTIFACT
    return bundled_artifact_named(path) or Path(path)
