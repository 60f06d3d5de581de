"""The modernisation plan's options, as real modules selected by config (see TeacherConfig).

Each maps per-modality sequences [B,D,T] to [B,D,T], so any of them slots in before the correlation.
"""
from __future__ import annotations

import math

import torch
from torch import nn


def sinusoidal_positions(frames: int, dim: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """[T, D] fixed positional code, computed for any T (nothing learnt that would cap the length)."""
    pos = torch.arange(frames, device=device, dtype=dtype)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=dtype) * (-math.log(10000.0) / dim))
    pe = torch.zeros(frames, dim, device=device, dtype=dtype)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return pe


class CrossModalAttention(nn.Module):
    """Each modality attends to the other (multi-head), residual + LayerNorm.

    Lets a mouth frame gather evidence from nearby speech and vice versa before they are compared.
    """

    def __init__(self, dim: int, heads: int = 4, dropout: float = 0.0) -> None:
        super().__init__()
        self.video_from_audio = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.audio_from_video = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.norm_v = nn.LayerNorm(dim)
        self.norm_a = nn.LayerNorm(dim)

    def forward(self, video: torch.Tensor, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        v, a = video.transpose(1, 2), audio.transpose(1, 2)  # [B,T,D]
        v2 = self.norm_v(v + self.video_from_audio(v, a, a, need_weights=False)[0])
        a2 = self.norm_a(a + self.audio_from_video(a, v, v, need_weights=False)[0])
        return v2.transpose(1, 2), a2.transpose(1, 2)


class TemporalTransformer(nn.Module):
    """A small Transformer encoder over time for one modality, with sinusoidal positions."""

    def __init__(self, dim: int, layers: int = 2, heads: int = 4, ff_mult: int = 2, dropout: float = 0.0) -> None:
        super().__init__()
        layer = nn.TransformerEncoderLayer(dim, heads, dim * ff_mult, dropout=dropout, batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seq = x.transpose(1, 2)
        seq = seq + sinusoidal_positions(seq.shape[1], seq.shape[2], seq.device, seq.dtype)
        return self.encoder(seq).transpose(1, 2)


class TemporalPyramid(nn.Module):
    """Multi-scale temporal features: parallel dilated branches (1, 2, 4 ... frames) fused by a 1x1 conv.

    Short branches see phoneme-level lip motion, long ones syllable rhythm; the fuse keeps T unchanged.
    """

    def __init__(self, dim: int, dilations: tuple[int, ...] = (1, 2, 4)) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Sequential(nn.Conv1d(dim, dim, 3, padding=d, dilation=d, groups=dim, bias=False),
                          nn.BatchNorm1d(dim), nn.ReLU()) for d in dilations)
        self.fuse = nn.Conv1d(dim * len(dilations), dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fuse(torch.cat([b(x) for b in self.branches], dim=1))
