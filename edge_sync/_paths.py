"""Where the bundled weights and artifacts live inside the installed package (stdlib only)."""
from __future__ import annotations

from pathlib import Path

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
BUNDLED_ARTIFACT = WEIGHTS_DIR / "student.onnx-fp32"
