"""Small building blocks shared by the teacher and the student (all export to ONNX/OpenVINO/CoreML/TFLite)."""
from __future__ import annotations

import torch
from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "hswish": nn.Hardswish, "swish": nn.SiLU}


def conv_bn_act(dims: int, cin: int, cout: int, kernel, stride=1, padding=0, groups: int = 1,
                act: str | None = "relu", dilation=1) -> nn.Sequential:
    """Conv{1,2,3}d + BatchNorm + activation; BN folds into the conv at export."""
    conv = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[dims]
    norm = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}[dims]
    layers: list[nn.Module] = [conv(cin, cout, kernel, stride=stride, padding=padding, groups=groups,
                                    dilation=dilation, bias=False), norm(cout)]
    if act:
        layers.append(ACTIVATIONS[act]())
    return nn.Sequential(*layers)


class SqueezeExcite2d(nn.Module):
    """Channel attention from global context (X3D uses it in every other block)."""

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        hidden = max(8, channels // reduction)
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, channels, 1)
        self.act = nn.ReLU()
        self.gate = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean(dim=(2, 3), keepdim=True)
        return x * self.gate(self.fc2(self.act(self.fc1(s))))


class X3DBlock2d(nn.Module):
    """X3D's bottleneck (1x1 expand, depthwise 3x3, SE, hardswish, 1x1 project) applied per frame.

    ``act="relu"`` without SE is the INT8-friendly form (as EfficientNet-Lite did): ReLU folds into an INT8 conv,
    while hardswish and SE's gating multiply need float round trips that cost more than INT8 convs save."""

    def __init__(self, cin: int, cout: int, expansion: float = 2.25, stride: int = 1, se: bool = True,
                 act: str = "hswish") -> None:
        super().__init__()
        mid = int(round(cin * expansion))
        self.expand = conv_bn_act(2, cin, mid, 1, act=act)
        self.depthwise = conv_bn_act(2, mid, mid, 3, stride=stride, padding=1, groups=mid, act=None)
        self.se = SqueezeExcite2d(mid) if se else nn.Identity()
        self.act = ACTIVATIONS[act]()
        self.project = conv_bn_act(2, mid, cout, 1, act=None)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.act(self.se(self.depthwise(self.expand(x)))))
        return x + y if self.residual else y


class TemporalBlock1d(nn.Module):
    """Depthwise temporal conv + pointwise mix with a residual: the '+1D' of (2+1)D, no time stride."""

    def __init__(self, channels: int, kernel: int = 5, dilation: int = 1, act: str = "hswish") -> None:
        super().__init__()
        pad = dilation * (kernel - 1) // 2
        self.temporal = conv_bn_act(1, channels, channels, kernel, padding=pad, groups=channels,
                                    dilation=dilation, act=act)
        self.pointwise = conv_bn_act(1, channels, channels, 1, act=None)
        self.act = ACTIVATIONS[act]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.pointwise(self.temporal(x)))


class FrameMotion2d(nn.Module):
    """Depthwise temporal conv at every spatial position of per-frame feature maps, added as a residual.

    Why: the student pools each frame to a vector before its temporal blocks, so it cannot see where in the
    mouth something moved between frames; this mixes neighbouring frames while the map is still spatial (the
    job the teacher's Conv3d does), as a Conv2d over [B, C, T, H*W] (:func:`frames_to_grid`), which ONNX,
    OpenVINO, CoreML and TFLite all run. BatchNorm's scale starts at zero, so a block added to a trained trunk
    leaves its outputs unchanged.
    """

    def __init__(self, channels: int, kernel: int = 3) -> None:
        super().__init__()
        self.temporal = conv_bn_act(2, channels, channels, (kernel, 1), padding=(kernel // 2, 0), groups=channels,
                                    act=None)
        nn.init.zeros_(self.temporal[1].weight)

    def forward(self, grid: torch.Tensor) -> torch.Tensor:
        """grid [B, C, T, H*W] -> the same shape."""
        return grid + self.temporal(grid)


def frames_to_grid(x: torch.Tensor, batch: int) -> torch.Tensor:
    """[B*T, C, H, W] -> [B, C, T, H*W]. Written with flatten and time as -1, no arithmetic on sizes, and as a plain
    function rather than inside a module: CoreML's converter rejects a traced product of sizes here."""
    flat = x.flatten(2)  # [B*T, C, H*W]
    return flat.reshape(batch, -1, flat.shape[1], flat.shape[2]).permute(0, 2, 1, 3)


def grid_to_frames(grid: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """[B, C, T, H*W] -> [B*T, C, H, W], the inverse of :func:`frames_to_grid`."""
    return grid.permute(0, 2, 1, 3).flatten(0, 1).unflatten(2, (height, width))


class DilatedResidual1d(nn.Module):
    """Dense temporal conv with dilation and a residual, used by the sync head and the teacher."""

    def __init__(self, channels: int, dilation: int, kernel: int = 3) -> None:
        super().__init__()
        self.conv = conv_bn_act(1, channels, channels, kernel, padding=dilation * (kernel - 1) // 2,
                                dilation=dilation, act="relu")
        self.mix = conv_bn_act(1, channels, channels, 1, act=None)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.mix(self.conv(x)))


def frames_to_batch(video: torch.Tensor) -> torch.Tensor:
    """[B,C,T,H,W] -> [B*T,C,H,W] so 2D convs run per frame."""
    b, c, t, h, w = video.shape
    return video.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)


def batch_to_sequence(x: torch.Tensor, batch: int) -> torch.Tensor:
    """[B*T,C] -> [B,C,T]."""
    return x.reshape(batch, -1, x.shape[-1]).transpose(1, 2)
