"""SlowFast video trunk (Feichtenhofer et al. 2019) with the time axis kept, loadable from PyTorchVideo checkpoints.

Reference: PyTorchVideo's ``pytorchvideo.models.slowfast.create_slowfast`` and the hub's ``slowfast_r50``
(pytorchvideo 0.1.5 on PyPI, identical up to formatting to github.com/facebookresearch/pytorchvideo at
commit f3142bb05cdb56af0704ab6f0adfb0c7bbafe4a0; Apache-2.0 licence). The network is written here
(pytorchvideo is not a dependency: it pulls fvcore/iopath/av and needs torchvision) but with *exactly* its
module tree, so state_dict keys and shapes are the reference's: ``blocks.0.multipathway_blocks.{0,1}.conv``/
``.norm`` (slow/fast stems), ``blocks.S.multipathway_blocks.P.res_blocks.B.branch1_{conv,norm}`` (shortcut),
``...branch2.{conv,norm}_{a,b,c}`` (bottleneck), ``blocks.{0..3}.multipathway_fusion.conv_fast_to_slow`` /
``.norm`` (lateral connections). A local ``slowfast_r50`` state_dict loads with ``weights=PATH``; its
``blocks.5.*`` (pooling, no weights) and ``blocks.6.*`` (classifier ``proj``) keys are dropped. The hub's own
``SLOWFAST_8x8_R50.pyth`` file wraps the weights as ``{"model_state": ...}``, which the loader unwraps.

Architecture (reference defaults; ``C = 64 * width`` slow stem channels, ``beta_inv`` = 1/beta = 8):
* Slow pathway: every ``alpha``-th frame (``alpha`` = 4). Stem Conv3d(3, C, (1,7,7), stride (1,2,2)) + BN +
  ReLU + MaxPool (1,3,3)/(1,2,2); four bottleneck ResNet stages (res2..res5) of ``(3,4,6,3)`` blocks at depth
  50 (``(1,1,1,1)`` at 18, reference depths 101/152 too) with inner/out channels C*2^k / 4C*2^k; the first
  1x1 conv (``conv_a``) of each block has temporal kernel 1 in res2/res3 and 3 in res4/res5, the spatial
  3x3 (``conv_b``) strides 2 in res3..res5.
* Fast pathway: every frame, channels / beta_inv, stem temporal kernel 5, ``conv_a`` temporal kernel 3 in
  every stage.
* Lateral fast->slow fusion after the stem and res2..res4: Conv3d(c_f, 2*c_f, (k,1,1), stride (alpha,1,1),
  padding k//2) + BN + ReLU, concatenated to the slow features (``fusion_kernel`` k = 7 as ``slowfast_r50``;
  the paper and ``slowfast_r101`` use 5).
Spatially: stem /4, res3..res5 /2 each, so a 112x112 mouth crop ends 4x4.

The change for sync: the classifier's global pooling over time is gone. The reference's temporal strides
are already 1 everywhere but the lateral conv, so the fast pathway keeps all T frames (the one that sees lip
motion) and the slow one ``T_slow = ceil(T / alpha)`` steps. The slow input is ``video[:, :, ::alpha]`` and
the lateral conv (stride alpha, padding k//2, odd k) outputs exactly those ``ceil(T / alpha)`` steps centred
on the same frames 0, alpha, 2*alpha..., so the two line up for any T >= 1 (the frames past the clip end are
the conv's zero padding). Each pathway is mean-pooled over space; slow step s is repeated to frames
s*alpha .. s*alpha+alpha-1 (frame t gets step t // alpha; the repeat of the last step is trimmed to T) and
concatenated with the fast features: ``[B, 32C + 32C/beta_inv, T]`` = [B, 2304, T] by default. The output is
equivariant to shifts of the input by multiples of alpha (a shift by one frame changes the slow sampling).

``keep_time=False`` returns instead the reference's own final features at their native rates, the list
``[slow [B, 32C, T_slow, h, w], fast [B, 32C/beta_inv, T, h, w]]`` that ``create_slowfast``'s ``blocks[:5]``
produce from ``[video[:, :, ::alpha], video]``: for checking equality with the reference only, it does not
meet the trunk contract.

Parameters (no classifier): depth 50: 33,644,488 (``slowfast_r50``'s 34,566,488 minus its 922,000-parameter
400-way ``proj``); depth 18 (the light variant for training from scratch): 10,977,224; depth 18 at
``width=0.25``: 693,194.
"""
from __future__ import annotations

import os
from typing import Union

import torch
from torch import nn

from edge_sync.models.trunks import he_init_3d, load_local_weights, register_video_trunk

STAGE_DEPTHS = {18: (1, 1, 1, 1), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}
# Temporal kernel of each stage's conv_a (res2..res5), per pathway, as the reference (and the paper, Table 1).
SLOW_CONV_A_KT = (1, 1, 3, 3)
FAST_CONV_A_KT = (3, 3, 3, 3)
SLOW_STEM_KT, FAST_STEM_KT = 1, 5
FUSION_CHANNEL_RATIO = 2
# PyTorchVideo's Kinetics transform for its model zoo (transforms_factory: RGB in [0, 1]).
KINETICS_MEAN = (0.45, 0.45, 0.45)
KINETICS_STD = (0.225, 0.225, 0.225)
INPUT_NORMS = ("none", "kinetics")

Features = Union[torch.Tensor, list[torch.Tensor]]


class ResNetBasicStem(nn.Module):
    """Conv (no bias) + BN + ReLU + max-pool; the reference's ``conv``/``norm`` key names."""

    def __init__(self, cin: int, cout: int, kt: int) -> None:
        super().__init__()
        self.conv = nn.Conv3d(cin, cout, (kt, 7, 7), stride=(1, 2, 2), padding=(kt // 2, 3, 3), bias=False)
        self.norm = nn.BatchNorm3d(cout)
        self.activation = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.activation(self.norm(self.conv(x))))


class BottleneckBlock(nn.Module):
    """conv_a (kt x 1 x 1) -> conv_b (1 x 3 x 3, the spatial stride) -> conv_c (1 x 1 x 1), each + BN."""

    def __init__(self, cin: int, inner: int, cout: int, kt: int, spatial_stride: int) -> None:
        super().__init__()
        self.conv_a = nn.Conv3d(cin, inner, (kt, 1, 1), padding=(kt // 2, 0, 0), bias=False)
        self.norm_a = nn.BatchNorm3d(inner)
        self.act_a = nn.ReLU(inplace=True)
        self.conv_b = nn.Conv3d(inner, inner, (1, 3, 3), stride=(1, spatial_stride, spatial_stride),
                                padding=(0, 1, 1), bias=False)
        self.norm_b = nn.BatchNorm3d(inner)
        self.act_b = nn.ReLU(inplace=True)
        self.conv_c = nn.Conv3d(inner, cout, 1, bias=False)
        self.norm_c = nn.BatchNorm3d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act_a(self.norm_a(self.conv_a(x)))
        x = self.act_b(self.norm_b(self.conv_b(x)))
        return self.norm_c(self.conv_c(x))


class ResBlock(nn.Module):
    """Bottleneck (``branch2``) plus identity or 1x1x1 conv-BN shortcut (``branch1_*``), then ReLU."""

    def __init__(self, cin: int, inner: int, cout: int, kt: int, spatial_stride: int) -> None:
        super().__init__()
        self.branch1_conv: nn.Conv3d | None = None
        self.branch1_norm: nn.BatchNorm3d | None = None
        if cin != cout or spatial_stride != 1:
            self.branch1_conv = nn.Conv3d(cin, cout, 1, stride=(1, spatial_stride, spatial_stride), bias=False)
            self.branch1_norm = nn.BatchNorm3d(cout)
        self.branch2 = BottleneckBlock(cin, inner, cout, kt, spatial_stride)
        self.activation = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        if self.branch1_conv is not None and self.branch1_norm is not None:
            shortcut = self.branch1_norm(self.branch1_conv(x))
        return self.activation(shortcut + self.branch2(x))


class ResStage(nn.Module):
    """``depth`` ResBlocks; only the first changes channels and spatial size."""

    def __init__(self, depth: int, cin: int, inner: int, cout: int, kt: int, spatial_stride: int) -> None:
        super().__init__()
        self.res_blocks = nn.ModuleList(
            [ResBlock(cin if i == 0 else cout, inner, cout, kt, spatial_stride if i == 0 else 1)
             for i in range(depth)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.res_blocks:
            x = block(x)
        return x


class FuseFastToSlow(nn.Module):
    """Lateral connection: strided temporal conv of the fast features, concatenated to the slow ones."""

    def __init__(self, fast_channels: int, kernel: int, alpha: int) -> None:
        super().__init__()
        cout = fast_channels * FUSION_CHANNEL_RATIO
        self.conv_fast_to_slow = nn.Conv3d(fast_channels, cout, (kernel, 1, 1), stride=(alpha, 1, 1),
                                           padding=(kernel // 2, 0, 0), bias=False)
        self.norm = nn.BatchNorm3d(cout)
        self.activation = nn.ReLU(inplace=True)

    def forward(self, slow: torch.Tensor, fast: torch.Tensor) -> torch.Tensor:
        return torch.cat([slow, self.activation(self.norm(self.conv_fast_to_slow(fast)))], dim=1)


class MultiPathWayWithFuse(nn.Module):
    """One stage of both pathways (``multipathway_blocks`` = [slow, fast]) and its optional fusion."""

    def __init__(self, slow: nn.Module, fast: nn.Module, fusion: FuseFastToSlow | None) -> None:
        super().__init__()
        self.multipathway_blocks = nn.ModuleList([slow, fast])
        self.multipathway_fusion = fusion

    def forward(self, slow: torch.Tensor, fast: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        slow = self.multipathway_blocks[0](slow)
        fast = self.multipathway_blocks[1](fast)
        if self.multipathway_fusion is not None:
            slow = self.multipathway_fusion(slow, fast)
        return slow, fast


@register_video_trunk("slowfast")
class SlowFastTrunk(nn.Module):
    """[B, 3, T, H, W] -> [B, 32C(1 + 1/beta_inv), T] (2304 by default); H, W >= 1 (112 normally).

    Args:
        model_depth: 50 (``slowfast_r50``, stage depths 3,4,6,3), 18 (one block per stage: the light variant
            for training from scratch), or 101 / 152.
        alpha: slow pathway frame stride (and lateral conv temporal stride).
        beta_inv: fast/slow channel ratio 1/beta.
        width: multiplier of the slow stem's 64 channels (the rest scale with it); 64 * width must be a
            multiple of ``beta_inv``. Pretrained weights need 1.0.
        fusion_kernel: odd temporal kernel of the lateral convs (7 as ``slowfast_r50``, 5 as the paper).
        input_norm: ``"none"`` feeds edge-sync's [-1, 1] crops as is (train from scratch); ``"kinetics"``
            maps them to [0, 1] then PyTorchVideo's Kinetics mean/std, what its model-zoo weights expect.
        weights: local path of a PyTorchVideo-layout state_dict (classifier ``blocks.5/6.*`` keys ignored).
        keep_time: False returns the reference's native-rate [slow, fast] feature maps (equality checks only).
    """

    def __init__(self, model_depth: int = 50, alpha: int = 4, beta_inv: int = 8, width: float = 1.0,
                 fusion_kernel: int = 7, input_norm: str = "none",
                 weights: str | os.PathLike[str] | None = None, keep_time: bool = True) -> None:
        super().__init__()
        if model_depth not in STAGE_DEPTHS:
            raise ValueError(f"model_depth must be one of {sorted(STAGE_DEPTHS)}, got {model_depth!r}")
        if input_norm not in INPUT_NORMS:
            raise ValueError(f"input_norm must be one of {INPUT_NORMS}, got {input_norm!r}")
        if not (isinstance(alpha, int) and alpha >= 1 and isinstance(beta_inv, int) and beta_inv >= 1):
            raise ValueError(f"alpha and beta_inv must be positive ints, got {alpha!r}, {beta_inv!r}")
        if not (isinstance(fusion_kernel, int) and fusion_kernel >= 1 and fusion_kernel % 2 == 1):
            raise ValueError(f"fusion_kernel must be a positive odd int (so the lateral conv's steps sit on the "
                             f"slow frames), got {fusion_kernel!r}")
        base = round(64 * width)
        if base < beta_inv or base % beta_inv:
            raise ValueError(f"64 * width = {base} must be a positive multiple of beta_inv = {beta_inv}")
        self.alpha, self.keep_time, self.input_norm = alpha, keep_time, input_norm
        self.slow_channels = 32 * base
        self.fast_channels = 32 * base // beta_inv
        self.out_channels = self.slow_channels + self.fast_channels
        # Not persistent: keeps the state_dict exactly the reference's.
        self.register_buffer("norm_mean", torch.tensor(KINETICS_MEAN).view(1, 3, 1, 1, 1), persistent=False)
        self.register_buffer("norm_std", torch.tensor(KINETICS_STD).view(1, 3, 1, 1, 1), persistent=False)

        def fuse(slow_dim: int) -> FuseFastToSlow:  # fast channels at this point = slow_dim / beta_inv
            return FuseFastToSlow(slow_dim // beta_inv, fusion_kernel, alpha)

        stages = [MultiPathWayWithFuse(ResNetBasicStem(3, base, SLOW_STEM_KT),
                                       ResNetBasicStem(3, base // beta_inv, FAST_STEM_KT), fuse(base))]
        dim_in, dim_out = base, 4 * base
        depths = STAGE_DEPTHS[model_depth]
        for i, depth in enumerate(depths):
            stride = 1 if i == 0 else 2
            slow_in = dim_in + (dim_in // beta_inv) * FUSION_CHANNEL_RATIO  # + the lateral features
            slow = ResStage(depth, slow_in, dim_out // 4, dim_out, SLOW_CONV_A_KT[i], stride)
            fast = ResStage(depth, dim_in // beta_inv, dim_out // 4 // beta_inv, dim_out // beta_inv,
                            FAST_CONV_A_KT[i], stride)
            stages.append(MultiPathWayWithFuse(slow, fast, fuse(dim_out) if i < len(depths) - 1 else None))
            dim_in, dim_out = dim_out, 2 * dim_out
        self.blocks = nn.ModuleList(stages)
        self._init_weights()
        if weights is not None:
            load_local_weights(self, weights, ignore_prefixes=("blocks.5.", "blocks.6."), what="slowfast trunk")

    def _init_weights(self) -> None:
        # As the reference: He init (fan_out) on convs, unit BN but zero gamma on each bottleneck's last BN,
        # so every residual block starts as the identity (the usual recipe for training deep ResNets from scratch).
        he_init_3d(self)
        for m in self.modules():
            if isinstance(m, BottleneckBlock):
                nn.init.zeros_(m.norm_c.weight)

    def pathways(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Final (slow [B,32C,ceil(T/alpha),h,w], fast [B,32C/beta_inv,T,h,w]) features of a normalised clip."""
        slow, fast = video[:, :, ::self.alpha], video
        for stage in self.blocks:
            slow, fast = stage(slow, fast)
        return slow, fast

    def forward(self, video: torch.Tensor) -> Features:
        if video.ndim != 5 or video.shape[1] != 3:
            raise ValueError(f"slowfast expects video [B, 3, T, H, W], got {list(video.shape)}")
        x = video
        if self.input_norm == "kinetics":
            x = ((x + 1.0) * 0.5 - self.norm_mean) / self.norm_std
        slow, fast = self.pathways(x)
        if not self.keep_time:
            return [slow, fast]
        frames = video.shape[2]
        # [B, Cs, Ts] -> each step repeated alpha times -> [B, Cs, alpha*Ts >= T] -> the first T frames.
        slow_t = slow.mean(dim=(3, 4)).unsqueeze(-1).expand(-1, -1, -1, self.alpha).flatten(2)[:, :, :frames]
        return torch.cat([slow_t, fast.mean(dim=(3, 4))], dim=1)
