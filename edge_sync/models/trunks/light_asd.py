"""Light-ASD's encoders (Liao et al., CVPR 2023) as trunks: real-face features that keep time.

Light-ASD is an active-speaker detector trained on AVA-ActiveSpeaker (and fine-tuned on TalkSet, whose
negatives include out-of-sync speech) with about 1 M parameters. Its two encoders are small, fully
convolutional and keep the frame axis: exactly the trunk contract. Each block runs two parallel paths (3- and
5-wide) that factor a kernel into a content part (space for video, MFCC coefficients for audio) and a
temporal part, sums them and mixes with a 1x1 conv. Parameter names follow the public implementation, so a
user's local checkpoint (``weights=PATH``: the full ``*.model`` file, keys ``model.visualEncoder.*`` /
``model.audioEncoder.*``) loads as it is; the project's own weights come from its MIT-licensed repository
(github.com/Junhua-Liao/Light-ASD), never downloaded at run time.

Video: the mouth crop [B,3,T,112,112] (normalised to -1..1 RGB by the contract) becomes the grey 0..255 frame
Light-ASD was trained on, normalised by its mean and std. Audio: [B,1,13,4T] MFCC is already Light-ASD's
layout (coefficients x time, 100 Hz); two time pools of 2 bring 4T to T, a mean over coefficients ends it.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from edge_sync.models.trunks import load_local_weights, register_audio_trunk, register_video_trunk

_GREY = (0.299, 0.587, 0.114)  # ITU-R BT.601 luma, what cv2's BGR2GRAY (Light-ASD's input) computes
_GREY_MEAN, _GREY_STD = 0.4161, 0.1688  # Light-ASD's normalisation of grey frames in 0..1
_BN = {"eps": 1e-3, "momentum": 0.01}


class _FactoredBlock(nn.Module):
    """Two factored paths (kernel 3 and 5) summed, then a 1x1 mix; each conv followed by BN and ReLU.

    ``content`` names the first conv of a path (``s`` spatial for video, ``m`` MFCC axis for audio).
    """

    def __init__(self, dims: int, content: str, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        conv = nn.Conv3d if dims == 3 else nn.Conv2d
        norm = nn.BatchNorm3d if dims == 3 else nn.BatchNorm2d
        self.content = content
        for k in (3, 5):
            p = k // 2
            if dims == 3:  # (1,k,k) over space, then (k,1,1) over time
                first = conv(cin, cout, (1, k, k), stride=(1, stride, stride), padding=(0, p, p), bias=False)
                second = conv(cout, cout, (k, 1, 1), padding=(p, 0, 0), bias=False)
            else:  # (k,1) over MFCC coefficients, then (1,k) over time
                first = conv(cin, cout, (k, 1), padding=(p, 0), bias=False)
                second = conv(cout, cout, (1, k), padding=(0, p), bias=False)
            setattr(self, f"{content}_{k}", first)
            setattr(self, f"bn_{content}_{k}", norm(cout, **_BN))
            setattr(self, f"t_{k}", second)
            setattr(self, f"bn_t_{k}", norm(cout, **_BN))
        self.last = conv(cout, cout, 1, bias=False)
        self.bn_last = norm(cout, **_BN)
        self.relu = nn.ReLU()

    def _path(self, x: torch.Tensor, k: int) -> torch.Tensor:
        c = self.content
        x = self.relu(getattr(self, f"bn_{c}_{k}")(getattr(self, f"{c}_{k}")(x)))
        return self.relu(getattr(self, f"bn_t_{k}")(getattr(self, f"t_{k}")(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn_last(self.last(self._path(x, 3) + self._path(x, 5))))


class _Encoder(nn.Module):
    """block1 -> pool -> block2 -> pool -> block3, Light-ASD's layout for either modality."""

    def __init__(self, dims: int, content: str, pool: nn.Module, down_first: bool) -> None:
        super().__init__()
        self.block1 = _FactoredBlock(dims, content, 1, 32, stride=2 if down_first else 1)
        self.pool1 = pool
        self.block2 = _FactoredBlock(dims, content, 32, 64)
        self.pool2 = pool
        self.block3 = _FactoredBlock(dims, content, 64, 128)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block3(self.pool2(self.block2(self.pool1(self.block1(x)))))


def _load(module: nn.Module, weights: str | None, prefix: str) -> None:
    if weights:
        load_local_weights(module, weights, select_prefix=prefix, what=f"Light-ASD {prefix.split('.')[-2]}")


@register_video_trunk("light_asd_visual")
class LightASDVideoTrunk(nn.Module):
    """[B,3,T,112,112] mouth crops -> [B,128,T]; frame t sees frames t-6..t+6."""

    def __init__(self, weights: str | None = None) -> None:
        super().__init__()
        self.encoder = _Encoder(3, "s", nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
                                down_first=True)
        self.register_buffer("grey", torch.tensor(_GREY).view(1, 3, 1, 1, 1) * (127.5 / 255.0), persistent=False)
        self.out_channels = 128
        _load(self.encoder, weights, "model.visualEncoder.")

    def rebuild_kwargs(self) -> dict[str, Any]:
        return {}

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        grey = (video * self.grey).sum(dim=1, keepdim=True) + 0.5  # -1..1 RGB -> 0..1 grey
        x = self.encoder((grey - _GREY_MEAN) / _GREY_STD)
        return x.amax(dim=(3, 4))


@register_audio_trunk("light_asd_mfcc")
class LightASDAudioTrunk(nn.Module):
    """[B,1,13,4T] MFCC -> [B,128,T]."""

    audio_input = "mfcc"

    def __init__(self, weights: str | None = None) -> None:
        super().__init__()
        # MaxPool over the last (time) axis only, stride 2, 'same'-style padding: 4T -> 2T -> T
        self.encoder = _Encoder(2, "m", nn.MaxPool2d((1, 3), stride=(1, 2), padding=(0, 1)), down_first=False)
        self.out_channels = 128
        _load(self.encoder, weights, "model.audioEncoder.")

    def rebuild_kwargs(self) -> dict[str, Any]:
        return {}

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return self.encoder(audio).mean(dim=2)
