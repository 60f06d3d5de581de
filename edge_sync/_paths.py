"""Where the bundled weights and artifacts live inside the installed package (stdlib only)."""
from __future__ import annotations

from pathlib import Path

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
BUNDLED_ARTIFACT = WEIGHTS_DIR / "student.onnx-fp32"
# Bundled checkpoints by name: one per model kind, plus the real-footage teacher 'teacher-real' (Light-ASD's real-face
# encoders, MIT, fine-tuned with a sync head on real clips; `scripts/train_bundled.sh teacher-real-ft`; NOTICE keeps
# Light-ASD's licence). None of them is in the wheel.
BUNDLED_CHECKPOINTS = {"teacher": "teacher.pt", "student": "student.pt", "legacy": "legacy.pt",
                       "teacher-real": "teacher_real.pt"}


def bundled_checkpoint(name: str) -> Path:
    """Where the bundled checkpoint ``name`` lives (it may be absent: the wheel carries only the runtime artifact)."""
    return WEIGHTS_DIR / BUNDLED_CHECKPOINTS.get(name, f"{name}.pt")
