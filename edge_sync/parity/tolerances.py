"""One tolerance table per precision: numeric checks in Polygraphy's style plus task gates in MMDeploy's.

An output element fails only if it is off by more than ``atol`` AND by more than ``rtol`` x |reference| (as
Polygraphy compares TensorRT with onnxruntime); a precision allows a fraction of failing elements (0 for FP32).
Task gates: per-frame and clip-level offset agreement with the reference, and accuracy within ``max_acc_drop``
points of the reference on clips with ground truth (MMDeploy's regression tests use 1 point).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Tolerance:
    atol: float
    rtol: float
    max_fail_fraction: float  # of output elements outside atol AND rtol
    min_frame_agreement: float  # per-frame argmax offset equal to the reference's
    min_clip_agreement: float  # clip offset equal to the reference's
    max_acc_drop: float = 1.0  # clip accuracy, percentage points below the reference
    # whether the element check also covers random-noise inputs: INT8 scales come from real clips, and noise
    # outside that range saturates by design, so INT8 is held to the element check on real-like clips only
    numeric_on_random: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


TOLERANCES: dict[str, Tolerance] = {
    "fp32": Tolerance(atol=1e-4, rtol=1e-3, max_fail_fraction=0.0, min_frame_agreement=0.999,
                      min_clip_agreement=1.0),
    "fp16": Tolerance(atol=1e-2, rtol=5e-2, max_fail_fraction=1e-3, min_frame_agreement=0.995,
                      min_clip_agreement=0.995),
    # INT8: ~1/20 of the [-1, 1] range of a cosine; the embeddings carry the error of ~20 quantized layers
    "int8": Tolerance(atol=0.1, rtol=0.25, max_fail_fraction=1e-2, min_frame_agreement=0.95,
                      min_clip_agreement=0.99, numeric_on_random=False),
}


def tolerance_table_markdown() -> str:
    """The table as the README shows it."""
    rows = ["| precision | atol | rtol | max failing elements | frame agreement | clip agreement | accuracy drop |",
            "|---|---|---|---|---|---|---|"]
    for name, t in TOLERANCES.items():
        rows.append(f"| {name} | {t.atol:g} | {t.rtol:g} | {t.max_fail_fraction:.1%} | >= {t.min_frame_agreement:.1%} "
                    f"| >= {t.min_clip_agreement:.1%} | <= {t.max_acc_drop:g} pt |")
    return "\n".join(rows)
