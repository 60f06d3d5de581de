"""R3D-18 video trunk: torchvision's ``r3d_18`` with the time axis kept, loadable from its checkpoints.

The network is written here (torchvision is not a dependency, and on some torch builds it does not even
import) but uses *exactly* torchvision's module tree, so its state_dict keys and shapes are those of
``torchvision.models.video.r3d_18``: ``stem.0.weight``, ``stem.1.*``, ``layerL.B.conv1.0.weight``,
``layerL.B.conv1.1.*``, ``layerL.B.conv2.{0,1}.*``, ``layerL.0.downsample.{0,1}.*``. A user's local R3D-18
checkpoint (e.g. Kinetics-400 weights saved with ``torch.save(model.state_dict(), path)``) loads with
``weights=PATH``; its ``fc.*`` classifier keys are dropped because the trunk has no classifier.

Architecture (R3D-18 of Tran et al. 2018, as torchvision builds it): stem Conv3d(3, 64, (3,7,7),
stride (1,2,2), padding (1,3,3), no bias) + BN + ReLU; four stages of two BasicBlocks with 3x3x3 convs
(padding 1, no bias) and 64/128/256/512 channels; stages 2-4 open with a stride-2 block whose shortcut is a
1x1x1 conv + BN. The one change for sync: torchvision strides time by 2 in stages 2-4 (T -> T/8), which
would merge frames the correlation must tell apart, so those strides (and their shortcut strides) are
(1, 2, 2) here. Kernel shapes do not depend on the stride, so pretrained weights still fit. With 17 convs of
temporal kernel 3 at stride 1 the temporal receptive field is 1 + 17*2 = 35 frames ('same' padding, so any
T >= 1 works; frames beyond the clip are zeros).

Output: mean over the remaining 7x7 spatial grid -> [B, 512, T]. Parameters: 33,166,272 (torchvision's
33,371,472 minus the 205,200 of the Kinetics-400 ``fc``).
"""
from __future__ import annotations

import os

import torch
from torch import nn

from edge_sync.models.trunks import he_init_3d, load_local_weights, register_video_trunk

STAGE_CHANNELS = (64, 128, 256, 512)
BLOCKS_PER_STAGE = (2, 2, 2, 2)
# torchvision's VideoClassification preset for its Kinetics-400 video models (RGB in [0, 1]).
KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)
INPUT_NORMS = ("none", "kinetics")


def _conv3x3x3(cin: int, cout: int, spatial_stride: int = 1) -> nn.Conv3d:
    return nn.Conv3d(cin, cout, kernel_size=(3, 3, 3), stride=(1, spatial_stride, spatial_stride),
                     padding=(1, 1, 1), bias=False)


class BasicBlock3d(nn.Module):
    """Two 3x3x3 conv-BN layers with an identity (or 1x1x1 conv-BN) shortcut; torchvision's key layout."""

    def __init__(self, cin: int, cout: int, spatial_stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(_conv3x3x3(cin, cout, spatial_stride), nn.BatchNorm3d(cout), nn.ReLU(inplace=True))
        self.conv2 = nn.Sequential(_conv3x3x3(cout, cout), nn.BatchNorm3d(cout))
        self.downsample: nn.Module | None = None
        if spatial_stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv3d(cin, cout, kernel_size=1, stride=(1, spatial_stride, spatial_stride), bias=False),
                nn.BatchNorm3d(cout))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(self.conv2(self.conv1(x)) + shortcut)


@register_video_trunk("r3d_18")
class R3D18Trunk(nn.Module):
    """[B, 3, T, H, W] -> [B, 512, T]. H, W >= 1 (112 normally; 16x spatial reduction, then a mean).

    Args:
        weights: local path of a torchvision-layout R3D-18 state_dict (``fc.*`` keys are ignored).
        input_norm: ``"none"`` feeds the input as is (train from scratch on edge-sync's [-1, 1] crops);
            ``"kinetics"`` maps [-1, 1] RGB crops to the [0, 1] + mean/std normalisation that torchvision's
            Kinetics-400 weights were trained with, so those weights see the statistics they expect.
    """

    out_channels = STAGE_CHANNELS[-1]

    def __init__(self, weights: str | os.PathLike[str] | None = None, input_norm: str = "none") -> None:
        super().__init__()
        if input_norm not in INPUT_NORMS:
            raise ValueError(f"input_norm must be one of {INPUT_NORMS}, got {input_norm!r}")
        self.input_norm = input_norm
        # Not persistent: keeps the state_dict exactly torchvision's.
        self.register_buffer("norm_mean", torch.tensor(KINETICS_MEAN).view(1, 3, 1, 1, 1), persistent=False)
        self.register_buffer("norm_std", torch.tensor(KINETICS_STD).view(1, 3, 1, 1, 1), persistent=False)
        self.stem = nn.Sequential(
            nn.Conv3d(3, STAGE_CHANNELS[0], kernel_size=(3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3), bias=False),
            nn.BatchNorm3d(STAGE_CHANNELS[0]),
            nn.ReLU(inplace=True))
        cin = STAGE_CHANNELS[0]
        for i, (cout, n) in enumerate(zip(STAGE_CHANNELS, BLOCKS_PER_STAGE), start=1):
            stride = 1 if i == 1 else 2
            blocks = [BasicBlock3d(cin, cout, stride)] + [BasicBlock3d(cout, cout) for _ in range(n - 1)]
            setattr(self, f"layer{i}", nn.Sequential(*blocks))
            cin = cout
        he_init_3d(self)
        if weights is not None:
            load_local_weights(self, weights, ignore_prefixes=("fc.",), what="r3d_18 trunk")

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        if video.ndim != 5 or video.shape[1] != 3:
            raise ValueError(f"r3d_18 expects video [B, 3, T, H, W], got {list(video.shape)}")
        x = video
        if self.input_norm == "kinetics":
            x = ((x + 1.0) * 0.5 - self.norm_mean) / self.norm_std
        x = self.stem(x)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)
        return x.mean(dim=(3, 4))
