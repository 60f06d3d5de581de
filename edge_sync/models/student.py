"""The X3D-style student distilled from the teacher: same inputs and outputs, <= 1/10 of its parameters."""
from __future__ import annotations

from dataclasses import dataclass

from edge_sync.models.base import SyncModel, SyncModelConfig


@dataclass
class StudentConfig(SyncModelConfig):
    video_trunk: str = "x3d_2plus1d"
    audio_trunk: str = "x3d_mfcc"
    embed_dim: int = 64
    head_hidden: int = 32


class X3DStudent(SyncModel):
    """Built only from Conv1d/Conv2d, BatchNorm, hardswish/hardsigmoid, mean, reshape, pad, slice and
    softmax: ops that ONNX, OpenVINO, CoreML and TFLite all support and quantise to INT8."""

    kind = "student"
    config_class = StudentConfig

    def __init__(self, config: StudentConfig | None = None) -> None:
        super().__init__(config or StudentConfig())
