"""Audio/video correlation over offsets -K..K, written as a loop over shifted slices.

Why a loop: ``unfold`` over a dynamic time axis fails in both ONNX exporters (DESIGN.md), while 2K+1
static slices of a padded tensor export everywhere and keep T dynamic.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _shifted(audio: torch.Tensor, max_offset: int) -> list[torch.Tensor]:
    """Audio [B,C,T] zero-padded by K each side, as 2K+1 views where view k+K holds frame t+k at t."""
    frames = audio.shape[-1]
    padded = F.pad(audio, (max_offset, max_offset))
    return [padded[..., i:i + frames] for i in range(2 * max_offset + 1)]


def shifted_correlation(video: torch.Tensor, audio: torch.Tensor, max_offset: int) -> torch.Tensor:
    """Dot products of video frame t with audio frame t+k -> [B, 2K+1, T].

    With L2-normalised inputs this is the cosine similarity; offsets outside the clip give 0.
    """
    return torch.stack([(video * a).sum(dim=1) for a in _shifted(audio, max_offset)], dim=1)


def shifted_distance(video: torch.Tensor, audio: torch.Tensor, max_offset: int, eps: float = 1e-6) -> torch.Tensor:
    """Euclidean distance of video frame t to audio frame t+k -> [B, 2K+1, T].

    Same definition as syncnet_python's calc_pdist (torch pairwise_distance adds eps to the difference
    and the audio is zero-padded), so legacy confidences carry over.
    """
    return torch.stack([torch.sqrt(((video - a + eps) ** 2).sum(dim=1)) for a in _shifted(audio, max_offset)],
                       dim=1)


def window_correlation(video: torch.Tensor, audio: torch.Tensor, max_offset: int) -> torch.Tensor:
    """Evidence for each offset over one window: sum over j of video[:, :, j] . audio[:, :, j + K + k] -> [B, 2K+1].

    ``video`` [B,D,c] embeds the window's frames only and ``audio`` [B,D,c+2K] the audio from K frames before
    to K frames after it, so every offset compares with real audio (the strict context protocol).
    """
    frames = video.shape[-1]
    if audio.shape[-1] != frames + 2 * max_offset:
        raise ValueError(f"window audio must have {frames + 2 * max_offset} frames (video {frames} + 2K), "
                         f"got {audio.shape[-1]}")
    candidates = audio.unfold(2, frames, 1)  # [B,D,2K+1,c]: candidate k+K holds audio frames j+K+k
    return torch.einsum("bdj,bdkj->bk", video, candidates)
