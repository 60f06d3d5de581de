"""syncnet_python's offset / min-dist / confidence arithmetic on per-frame embeddings (numpy only).

Lives outside the models so the runtime and the use cases (LSE-D / LSE-C scores) can compute the legacy
numbers from any embeddings without PyTorch.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge_sync.spec import FRAME_MS, LEGACY_VSHIFT, offset_from_legacy

PAIRWISE_EPS = 1e-6  # torch.nn.functional.pairwise_distance adds this to the difference


@dataclass(frozen=True)
class LegacyOffsets:
    """What syncnet_python prints, plus our sign convention.

    av_offset: syncnet_python's 'AV offset' (frames); offset_frames = -av_offset (k > 0: sound late).
    min_dist: lowest mean embedding distance over offsets (LSE-D); confidence: median - min (LSE-C).
    """

    av_offset: int
    offset_frames: int
    audio_delay_ms: float
    min_dist: float
    confidence: float
    mean_dists: np.ndarray  # [2*vshift+1], index j <-> audio shift j - vshift
    frame_dists: np.ndarray  # [N, 2*vshift+1]
    frame_confidence: np.ndarray  # [N], median-filtered (kernel 9) per-frame confidence


def pairwise_shift_distances(video: np.ndarray, audio: np.ndarray, vshift: int = LEGACY_VSHIFT) -> np.ndarray:
    """[N, D] video and audio embeddings -> [N, 2*vshift+1] distances to audio frames i-vshift..i+vshift,
    audio zero-padded outside the clip as syncnet_python's calc_pdist does."""
    if video.ndim != 2 or video.shape != audio.shape:
        raise ValueError(f"expected video and audio embeddings of equal shape [N, D], got {video.shape}, {audio.shape}")
    n = len(video)
    padded = np.zeros((n + 2 * vshift, audio.shape[1]), dtype=np.float64)
    padded[vshift:vshift + n] = audio
    windows = np.lib.stride_tricks.sliding_window_view(padded, (2 * vshift + 1, audio.shape[1]))[:, 0]
    diff = video.astype(np.float64)[:, None, :] - windows + PAIRWISE_EPS
    return np.sqrt((diff ** 2).sum(axis=2))


def median_filter(x: np.ndarray, kernel: int) -> np.ndarray:
    """scipy.signal.medfilt semantics (zero padding at both ends), numpy only."""
    half = kernel // 2
    padded = np.concatenate([np.zeros(half), np.asarray(x, np.float64), np.zeros(half)])
    return np.median(np.lib.stride_tricks.sliding_window_view(padded, kernel), axis=1)


def syncnet_offsets(video: np.ndarray, audio: np.ndarray, vshift: int = LEGACY_VSHIFT) -> LegacyOffsets:
    """The offset search of syncnet_python's SyncNetInstance.evaluate on [N, D] embeddings."""
    dists = pairwise_shift_distances(video, audio, vshift)
    mean = dists.mean(axis=0)
    best = int(np.argmin(mean))
    av_offset = vshift - best
    median = float(np.median(mean))
    frame_conf = median_filter(median - dists[:, best], 9)
    k = offset_from_legacy(av_offset)
    return LegacyOffsets(av_offset=av_offset, offset_frames=k, audio_delay_ms=float(k * FRAME_MS),
                         min_dist=float(mean[best]), confidence=median - float(mean[best]), mean_dists=mean,
                         frame_dists=dists, frame_confidence=frame_conf)
