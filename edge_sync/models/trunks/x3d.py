"""The student's trunks: X3D ideas in factorised (2+1)D form.

Per-frame 2D convs (patchify stem, X3D bottlenecks with depthwise 3x3, squeeze-excite, hardswish,
progressive channel expansion, width/depth multipliers), then 1D temporal convs. No Conv3d and no
temporal stride: LiteRT has no INT8 CONV_3D, onnxruntime's INT8 Conv3d is single-threaded and
TensorRT's Q/DQ Conv3d is fragile, while 2D/1D convs quantise well on every target.
"""
from __future__ import annotations

import torch
from torch import nn

from edge_sync.models.blocks import (FrameMotion2d, TemporalBlock1d, X3DBlock2d, batch_to_sequence, conv_bn_act,
                                     frames_to_batch, frames_to_grid, grid_to_frames)
from edge_sync.models.trunks import register_audio_trunk, register_video_trunk


def _ch(base: int, width: float) -> int:
    return max(8, int(round(base * width / 8)) * 8)


def _depth(base: int, depth: float) -> int:
    return max(1, int(round(base * depth)))


@register_video_trunk("x3d_2plus1d")
class X3DVideoTrunk(nn.Module):
    """[B,3,T,112,112] -> [B,C,T]; per-frame cost ~ a few MMACs so the student runs >1000 frames/s on CPU."""

    def __init__(self, width: float = 1.0, depth: float = 1.0, stage_channels: tuple[int, ...] = (24, 48, 96),
                 stage_blocks: tuple[int, ...] = (1, 2, 2), stem_channels: int = 16, out_channels: int = 128,
                 temporal_blocks: int = 2, temporal_kernel: int = 5, act: str = "hswish", se: bool = True,
                 motion_stages: tuple[int, ...] = (), motion_kernel: int = 3) -> None:
        """``motion_stages``: stages (0-based) after whose last block a :class:`FrameMotion2d` mixes neighbouring
        frames at every spatial position (none by default, as in the bundled student)."""
        super().__init__()
        stem = _ch(stem_channels, width)
        layers: list[nn.Module] = [conv_bn_act(2, 3, stem, 4, stride=4, act=act)]  # 112 -> 28 patchify
        cin = stem
        motion: dict[str, nn.Module] = {}
        for i, (c, n) in enumerate(zip(stage_channels, stage_blocks)):
            cout = _ch(c, width)
            for j in range(_depth(n, depth)):
                layers.append(X3DBlock2d(cin, cout, stride=2 if j == 0 else 1, se=se and j % 2 == 0, act=act))
                cin = cout
            if i in motion_stages:  # keyed by the spatial layer it follows, so older checkpoints' keys still fit
                motion[str(len(layers) - 1)] = FrameMotion2d(cout, motion_kernel)
        if set(motion_stages) - set(range(len(stage_channels))):
            raise ValueError(f"motion_stages {motion_stages} name stages outside 0..{len(stage_channels) - 1}")
        layers.append(conv_bn_act(2, cin, _ch(out_channels, width), 1, act=act))
        self.spatial = nn.Sequential(*layers)
        self.motion = nn.ModuleDict(motion)
        self.out_channels = _ch(out_channels, width)
        self.temporal = nn.Sequential(*[TemporalBlock1d(self.out_channels, temporal_kernel, act=act)
                                        for _ in range(temporal_blocks)])

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        x = frames_to_batch(video)
        for index, layer in enumerate(self.spatial):
            x = layer(x)
            if str(index) in self.motion:
                grid = self.motion[str(index)](frames_to_grid(x, video.shape[0]))
                x = grid_to_frames(grid, x.shape[2], x.shape[3])
        per_frame = x.mean(dim=(2, 3))  # [B*T, C]
        return self.temporal(batch_to_sequence(per_frame, video.shape[0]))


@register_audio_trunk("x3d_mfcc")
class X3DAudioTrunk(nn.Module):
    """[B,1,13,4T] -> [B,C,T] with depthwise-separable 2D convs, then temporal 1D blocks."""

    audio_input = "mfcc"

    def __init__(self, width: float = 1.0, channels: tuple[int, int, int] = (32, 48, 64),
                 temporal_blocks: int = 2, temporal_kernel: int = 5, act: str = "hswish") -> None:
        super().__init__()
        c1, c2, c3 = (_ch(c, width) for c in channels)
        self.features = nn.Sequential(
            conv_bn_act(2, 1, c1, 3, stride=(1, 2), padding=1, act=act),  # time 4T -> 2T
            conv_bn_act(2, c1, c1, 3, stride=(2, 2), padding=1, groups=c1, act=None),  # 13 -> 7, 2T -> T
            conv_bn_act(2, c1, c2, 1, act=act),
            conv_bn_act(2, c2, c2, 3, stride=(2, 1), padding=1, groups=c2, act=None),  # 7 -> 4
            conv_bn_act(2, c2, c3, 1, act=act),
        )
        self.out_channels = c3
        self.temporal = nn.Sequential(*[TemporalBlock1d(c3, temporal_kernel, act=act) for _ in range(temporal_blocks)])

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return self.temporal(self.features(audio).mean(dim=2))
