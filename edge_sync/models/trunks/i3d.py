"""I3D video trunk: the Inception-v1 I3D of Carreira & Zisserman 2017 with the time axis kept.

Written here, not imported: its module tree, and so its state_dict keys and shapes, are *exactly* those of
the common PyTorch port, piergiaj/pytorch-i3d (``pytorch_i3d.py``, class ``InceptionI3d``; Apache-2.0; read
at commit 05783d11f9632b25fe3d50395a9c9bb51f848d6d, no code copied): end points ``Conv3d_1a_7x7``,
``Conv3d_2b_1x1``, ``Conv3d_2c_3x3``, ``Mixed_3b``, ``Mixed_3c``, ``Mixed_4b``..``Mixed_4f``, ``Mixed_5b``,
``Mixed_5c``; each conv is a ``Unit3D`` with ``conv3d`` (no bias) and ``bn`` (eps 1e-3, momentum 0.01)
submodules; Inception branches ``b0``, ``b1a``/``b1b``, ``b2a``/``b2b``, ``b3b`` (after the pool ``b3a``).
A user's local state_dict from that repo (e.g. its ``models/rgb_imagenet.pt``) loads with ``weights=PATH``;
its ``logits.*`` classifier keys are dropped, and files saved before torch 0.4 (no BatchNorm
``num_batches_tracked`` keys, as that repo's own files) load as well as newer ones.

Architecture: stem Conv3d 7x7x7 (64, stride 2 in space) -> MaxPool 1x3x3 -> Conv 1x1x1 (64) -> Conv 3x3x3
(192) -> MaxPool 1x3x3 -> Mixed_3b, 3c -> MaxPool 3x3x3 -> Mixed_4b..4f -> MaxPool 2x2x2 -> Mixed_5b, 5c
(1024 channels). Every conv and pool uses TensorFlow 'SAME' padding computed from the input size, as the
reference does (``compute_pad``: zeros, front gets the smaller half); pools only ever see post-ReLU
values, so zero padding there is the same as -inf padding. Spatial reduction 32x (112 -> 4, ceil).

The one change for sync: the reference strides time by 2 in the stem conv, MaxPool3d_4a and MaxPool3d_5a
(T -> T/8) and its head pools 2 frames, which would merge the frames the correlation must tell apart. Here
every temporal stride is 1 with 'same' temporal padding (``keep_time=True``), so output frame t is frame
t's feature and any T >= 1 works. Kernel shapes do not depend on strides, so pretrained weights still fit
(though the temporal kernels after the stem were learnt at 2-8x coarser frame spacing: expect to fine-tune).
The temporal receptive field is then 30 frames, t-14..t+15: stem 7, Conv3d_2c 3, nine Inception modules 3
each, MaxPool3d_4a 3, and MaxPool3d_5a 2, whose 'SAME' pad of 1 goes after the clip, hence the one-frame skew.
``keep_time=False`` restores the reference's strides exactly; it exists only to check equality with the
reference, and its output has fewer frames (ceil(T/8)), so the registry's time contract holds only with
``keep_time=True``.

Output: ``Mixed_5c`` mean-pooled over space -> [B, 1024, T]. Parameters: 12,287,264 at width 1.0 (the
reference's 12,697,264 minus the 410,000 of its 400-way ``logits``); ``width=0.25`` (channels rounded to
multiples of 8, at least 8) has 790,064 and 256 output channels, for from-scratch ablations.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from edge_sync.models.trunks import he_init_3d, load_local_weights, register_video_trunk

Triple = tuple[int, int, int]
# (name, branch widths b0, b1a, b1b, b2a, b2b, b3b) of InceptionI3d, in forward order.
INCEPTION: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("Mixed_3b", (64, 96, 128, 16, 32, 32)),
    ("Mixed_3c", (128, 128, 192, 32, 96, 64)),
    ("Mixed_4b", (192, 96, 208, 16, 48, 64)),
    ("Mixed_4c", (160, 112, 224, 24, 64, 64)),
    ("Mixed_4d", (128, 128, 256, 24, 64, 64)),
    ("Mixed_4e", (112, 144, 288, 32, 64, 64)),
    ("Mixed_4f", (256, 160, 320, 32, 128, 128)),
    ("Mixed_5b", (256, 160, 320, 32, 128, 128)),
    ("Mixed_5c", (384, 192, 384, 48, 128, 128)),
)
# The max pools placed before these Inception modules: (name, kernel, reference stride).
POOLS_BEFORE = {
    "Mixed_3b": ("MaxPool3d_3a_3x3", (1, 3, 3), (1, 2, 2)),
    "Mixed_4b": ("MaxPool3d_4a_3x3", (3, 3, 3), (2, 2, 2)),
    "Mixed_5b": ("MaxPool3d_5a_2x2", (2, 2, 2), (2, 2, 2)),
}
INPUT_NORMS = ("none", "i3d")


def _ch(base: int, width: float) -> int:
    """Channels at ``width``: multiples of 8, at least 8 (all of I3D's widths are multiples of 8, so 1.0 is exact)."""
    return max(8, int(round(base * width / 8)) * 8)


def _same_pad(x: torch.Tensor, kernel: Sequence[int], stride: Sequence[int]) -> torch.Tensor:
    """TensorFlow 'SAME' zero padding of [B, C, T, H, W], exactly as the reference's ``compute_pad``.

    At stride 1 the pad is k-1 whatever the size, so the size is not read: T stays symbolic in exports.
    """
    pads: list[int] = []
    for dim in (2, 1, 0):  # F.pad lists the last axis first
        k, s = kernel[dim], stride[dim]
        if s == 1:
            total = k - 1
        else:
            n = x.shape[2 + dim]
            total = max(k - (s if n % s == 0 else n % s), 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


class MaxPool3dSame(nn.Module):
    """Max pool with 'SAME' padding; no parameters, so nothing in the state_dict."""

    def __init__(self, kernel: Triple, stride: Triple) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool3d(_same_pad(x, self.kernel, self.stride), self.kernel, self.stride)


class Unit3D(nn.Module):
    """Conv3d (no bias, 'SAME' padding) + BatchNorm3d + ReLU; the reference's ``conv3d`` / ``bn`` key names."""

    def __init__(self, cin: int, cout: int, kernel: Triple = (1, 1, 1), stride: Triple = (1, 1, 1)) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride
        self.conv3d = nn.Conv3d(cin, cout, kernel_size=kernel, stride=stride, padding=0, bias=False)
        self.bn = nn.BatchNorm3d(cout, eps=1e-3, momentum=0.01)  # the reference's (TF's) BN settings

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv3d(_same_pad(x, self.kernel, self.stride))))


class InceptionModule(nn.Module):
    """Four branches concatenated: 1x1; 1x1 -> 3x3x3; 1x1 -> 3x3x3; 3x3x3 max pool -> 1x1."""

    def __init__(self, cin: int, widths: Sequence[int]) -> None:
        super().__init__()
        c0, c1a, c1b, c2a, c2b, c3b = widths
        self.b0 = Unit3D(cin, c0)
        self.b1a = Unit3D(cin, c1a)
        self.b1b = Unit3D(c1a, c1b, (3, 3, 3))
        self.b2a = Unit3D(cin, c2a)
        self.b2b = Unit3D(c2a, c2b, (3, 3, 3))
        self.b3a = MaxPool3dSame((3, 3, 3), (1, 1, 1))
        self.b3b = Unit3D(cin, c3b)
        self.out_channels = c0 + c1b + c2b + c3b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], dim=1)


@contextlib.contextmanager
def _without_bn_counters(module: nn.Module) -> Iterator[tuple[str, ...]]:
    """Within the block ``module.state_dict()`` omits BatchNorm ``num_batches_tracked``; yields their keys.

    Why: pytorch-i3d's own files were saved by torch 0.3, before those counters existed, while files saved
    since have them. The counters are unused here (momentum is fixed), so weights are compared and loaded
    without them; ``load_state_dict`` keeps the module's own counter when a file has none.
    """
    keys = tuple(f"{name}.num_batches_tracked" for name, m in module.named_modules()
                 if isinstance(m, nn.modules.batchnorm._BatchNorm))

    def drop(_module: nn.Module, state: dict[str, torch.Tensor], _prefix: str, _meta: object) -> None:
        for key in keys:
            state.pop(key, None)

    handle = module.register_state_dict_post_hook(drop)
    try:
        yield keys
    finally:
        handle.remove()


@register_video_trunk("i3d")
class I3DTrunk(nn.Module):
    """[B, 3, T, H, W] -> [B, out_channels, T] (1024 at width 1.0). H, W >= 1 (112 normally).

    Args:
        weights: local path of a pytorch-i3d (``InceptionI3d``) RGB state_dict; ``logits.*`` keys are ignored.
            Fits width 1.0 only.
        input_norm: ``"none"`` feeds the input as is (train from scratch on edge-sync's [-1, 1] crops);
            ``"i3d"`` is what the reference weights expect: RGB scaled to [-1, 1] (pytorch-i3d's loaders do
            ``img / 255 * 2 - 1`` after BGR -> RGB), which is exactly edge-sync's mouth crops, so it is also the
            identity. It exists so a config can say which statistics its weights assume.
        width: channel multiplier for light variants trained from scratch (key names stay, shapes scale).
        keep_time: True (the trunk contract) keeps T; False restores the reference's temporal strides, only to
            check equality with the reference (the output then has ceil(T/8) frames).
    """

    def __init__(self, weights: str | os.PathLike[str] | None = None, input_norm: str = "none",
                 width: float = 1.0, keep_time: bool = True) -> None:
        super().__init__()
        if input_norm not in INPUT_NORMS:
            raise ValueError(f"input_norm must be one of {INPUT_NORMS}, got {input_norm!r}")
        if not width > 0:
            raise ValueError(f"width must be > 0, got {width!r}")
        self.input_norm, self.width, self.keep_time = input_norm, float(width), bool(keep_time)

        def stride(reference: Triple) -> Triple:
            return (1, reference[1], reference[2]) if self.keep_time else reference

        c64, c192 = _ch(64, width), _ch(192, width)
        self.Conv3d_1a_7x7 = Unit3D(3, c64, (7, 7, 7), stride((2, 2, 2)))
        self.MaxPool3d_2a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(c64, c64)
        self.Conv3d_2c_3x3 = Unit3D(c64, c192, (3, 3, 3))
        cin = c192
        for name, widths in INCEPTION:
            if name in POOLS_BEFORE:
                pool, kernel, ref_stride = POOLS_BEFORE[name]
                setattr(self, pool, MaxPool3dSame(kernel, stride(ref_stride)))
            block = InceptionModule(cin, [_ch(c, width) for c in widths])
            setattr(self, name, block)
            cin = block.out_channels
        self.out_channels: int = cin
        he_init_3d(self)
        if weights is not None:
            self.load_weights(weights)

    def load_weights(self, path: str | os.PathLike[str]) -> None:
        """Strictly load a pytorch-i3d state_dict, with or without BN counters; ``logits.*`` is ignored."""
        with _without_bn_counters(self) as counters:
            load_local_weights(self, path, ignore_prefixes=("logits.", *counters), what="i3d trunk")

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        if video.ndim != 5 or video.shape[1] != 3:
            raise ValueError(f"i3d expects video [B, 3, T, H, W], got {list(video.shape)}")
        x = video  # both input norms are the identity: see the class docstring
        for module in self.children():  # registered in forward order
            x = module(x)
        return x.mean(dim=(3, 4))
