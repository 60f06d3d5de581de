"""VGGish-style audio trunk over log-mel spectrograms (see :mod:`edge_sync.features.logmel`).

VGGish (Hershey et al. 2017, AudioSet) is a VGG-A-like stack of 3x3 conv + ReLU layers with
64/128/256/256/512/512 channels and four 2x2 max-pools over 96x64 (time x band) log-mel patches. Here the
same conv stack runs fully convolutionally over a whole clip, and only the pooling differs so the time
axis keeps the video rate: the first two pools are 2x2 (time 4T -> T, bands 64 -> 16) and the last two pool
bands only (16 -> 4). The remaining 4 bands are averaged, giving [B, C, T].

The module tree matches the common PyTorch port of VGGish (``features.0/3/6/8/11/13`` convs, time-first
[B, 1, time, band] layout), so a local state_dict from such a port loads with ``weights=PATH``; its
``embeddings.*`` (fully connected head) and ``pproc.*`` (PCA) keys are ignored. The log-mel input of that
port is what :func:`edge_sync.features.logmel.log_mel` computes. Pooling layers hold no weights, so the
changed pools do not affect loading.

Temporal receptive field: 42 log-mel steps (~10.5 video frames), 'same' padding, any T >= 1 works.
"""
from __future__ import annotations

import os

import torch
from torch import nn

from edge_sync.models.trunks import load_local_weights, register_audio_trunk
from edge_sync.spec import N_MELS

BASE_CHANNELS = (64, 128, 256, 512)
IGNORED_PREFIXES = ("embeddings.", "pproc.")


def _width(base: int, width: float) -> int:
    return max(4, int(round(base * width)))


def _conv(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel_size=3, stride=1, padding=1), nn.ReLU(inplace=True)]


@register_audio_trunk("vggish")
class VGGishTrunk(nn.Module):
    """[B, 1, 64, 4T] log-mel -> [B, C, T] with C = 512 * width.

    Args:
        width: channel multiplier (1.0 = VGGish; tests use a small one). Loading ``weights`` needs the
            width the file was saved with (1.0 for VGGish ports).
        weights: local path of a state_dict in this module's key layout (or a VGGish port's).
    """

    audio_input = "logmel"

    def __init__(self, width: float = 1.0, weights: str | os.PathLike[str] | None = None) -> None:
        super().__init__()
        if width <= 0:
            raise ValueError(f"width must be positive, got {width}")
        c1, c2, c3, c4 = (_width(c, width) for c in BASE_CHANNELS)
        # Indices 0..15 mirror VGGish's layer order (conv, relu, [pool]) so weight keys line up.
        self.features = nn.Sequential(
            *_conv(1, c1), nn.MaxPool2d((2, 2)),  # time 4T -> 2T, bands 64 -> 32
            *_conv(c1, c2), nn.MaxPool2d((2, 2)),  # time 2T -> T, bands 32 -> 16
            *_conv(c2, c3), *_conv(c3, c3), nn.MaxPool2d((1, 2)),  # bands 16 -> 8
            *_conv(c3, c4), *_conv(c4, c4), nn.MaxPool2d((1, 2)),  # bands 8 -> 4
        )
        self.out_channels = c4
        self.n_bands = N_MELS
        if weights is not None:
            load_local_weights(self, weights, ignore_prefixes=IGNORED_PREFIXES, what="vggish trunk")

    def forward(self, logmel: torch.Tensor) -> torch.Tensor:
        if logmel.ndim != 4 or logmel.shape[1] != 1 or logmel.shape[2] != self.n_bands:
            raise ValueError(f"vggish expects log-mel [B, 1, {self.n_bands}, 4T], got {list(logmel.shape)}")
        if not torch.compiler.is_compiling() and logmel.shape[3] % 4:  # exporters tie audio time to 4T
            raise ValueError(f"log-mel length {logmel.shape[3]} is not a multiple of 4 (4 steps per video frame)")
        x = self.features(logmel.transpose(2, 3))  # [B, C, T, 4]: VGGish convolves (time, band) images
        return x.mean(dim=3)
