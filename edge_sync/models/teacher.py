"""SyncNetFCN, the teacher: fully convolutional encoders that keep time, correlation over -K..K, sync head."""
from __future__ import annotations

from dataclasses import dataclass

from edge_sync.models.base import SyncModel, SyncModelConfig


@dataclass
class TeacherConfig(SyncModelConfig):
    """Defaults are the bundled teacher; the options (attention, transformer_layers, pyramid, other trunks
    such as r3d_18 / vggish / wav2vec2 / hubert) are switched on here."""

    video_trunk: str = "syncnet_conv3d"
    audio_trunk: str = "syncnet_mfcc"
    embed_dim: int = 128
    head_hidden: int = 64


class SyncNetFCN(SyncModel):
    """The teacher. Any T >= 1 frame works (every conv pads time; nothing strides it)."""

    kind = "teacher"
    config_class = TeacherConfig

    def __init__(self, config: TeacherConfig | None = None) -> None:
        super().__init__(config or TeacherConfig())
