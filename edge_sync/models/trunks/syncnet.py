"""The teacher's default trunks: SyncNet-style conv stacks that keep the time axis.

Video: Conv3d with 'same' temporal padding and spatial strides only, so frame t's feature sees
frames t-4..t+4. Audio: 2D convs over (MFCC coefficient, time) with two time strides of 2, so 4 MFCC
steps become one frame, then the coefficient axis is collapsed by a conv spanning it.
"""
from __future__ import annotations

import torch
from torch import nn

from edge_sync.models.blocks import conv_bn_act
from edge_sync.models.trunks import register_audio_trunk, register_video_trunk
from edge_sync.spec import N_MFCC


def _ch(base: int, width: float) -> int:
    return max(8, int(round(base * width / 8)) * 8)


@register_video_trunk("syncnet_conv3d")
class SyncNetVideoTrunk(nn.Module):
    """[B,3,T,112,112] -> [B,C,T]."""

    def __init__(self, width: float = 1.0) -> None:
        super().__init__()
        c1, c2, c3, c4, c5 = (_ch(c, width) for c in (24, 48, 96, 192, 256))
        self.features = nn.Sequential(
            conv_bn_act(3, 3, c1, (3, 5, 5), stride=(1, 2, 2), padding=(1, 2, 2)),  # 56
            nn.MaxPool3d((1, 2, 2)),  # 28
            conv_bn_act(3, c1, c2, (3, 3, 3), padding=1),
            conv_bn_act(3, c2, c3, (3, 3, 3), stride=(1, 2, 2), padding=1),  # 14
            conv_bn_act(3, c3, c4, (3, 3, 3), stride=(1, 2, 2), padding=1),  # 7
            conv_bn_act(3, c4, c5, (1, 3, 3), padding=(0, 1, 1)),
        )
        self.out_channels = c5

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.features(video).mean(dim=(3, 4))


@register_audio_trunk("syncnet_mfcc")
class SyncNetAudioTrunk(nn.Module):
    """[B,1,13,4T] -> [B,C,T]."""

    audio_input = "mfcc"

    def __init__(self, width: float = 1.0) -> None:
        super().__init__()
        c1, c2, c3, c4 = (_ch(c, width) for c in (64, 128, 192, 256))
        self.features = nn.Sequential(
            conv_bn_act(2, 1, c1, 3, padding=1),
            conv_bn_act(2, c1, c2, 3, stride=(1, 2), padding=1),  # time 4T -> 2T
            conv_bn_act(2, c2, c3, 3, stride=(2, 2), padding=1),  # coeffs 13 -> 7, time 2T -> T
            conv_bn_act(2, c3, c4, 3, padding=1),
            conv_bn_act(2, c4, c4, ((N_MFCC + 1) // 2, 1)),  # collapse the 7 coefficient rows
        )
        self.out_channels = c4

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return self.features(audio).squeeze(2)
