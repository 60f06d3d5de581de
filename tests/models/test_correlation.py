"""The shifted-slice correlation must equal the definition: video t against audio t+k, zero outside."""
from __future__ import annotations

import pytest
import torch

from edge_sync.models.correlation import shifted_correlation, shifted_distance, window_correlation


def _naive(video, audio, k_max, fn):
    b, _, t = video.shape
    out = torch.zeros(b, 2 * k_max + 1, t)
    for i, k in enumerate(range(-k_max, k_max + 1)):
        for f in range(t):
            a = audio[:, :, f + k] if 0 <= f + k < t else torch.zeros_like(audio[:, :, 0])
            out[:, i, f] = fn(video[:, :, f], a)
    return out


def test_correlation_matches_definition():
    g = torch.Generator().manual_seed(0)
    v, a = torch.randn(2, 8, 11, generator=g), torch.randn(2, 8, 11, generator=g)
    ref = _naive(v, a, 4, lambda x, y: (x * y).sum(1))
    torch.testing.assert_close(shifted_correlation(v, a, 4), ref)


def test_distance_matches_definition():
    g = torch.Generator().manual_seed(1)
    v, a = torch.randn(1, 6, 9, generator=g), torch.randn(1, 6, 9, generator=g)
    ref = _naive(v, a, 3, lambda x, y: torch.nn.functional.pairwise_distance(x, y))
    torch.testing.assert_close(shifted_distance(v, a, 3), ref)


def test_offset_larger_than_clip_is_all_padding():
    v, a = torch.ones(1, 4, 2), torch.ones(1, 4, 2)
    c = shifted_correlation(v, a, 5)
    assert c.shape == (1, 11, 2)
    assert c[0, 5].tolist() == [4.0, 4.0]  # k = 0
    assert c[0, :3].abs().sum() == 0 and c[0, -3:].abs().sum() == 0


def test_window_correlation_matches_definition():
    """Candidate k of window frame j is audio frame j + K + k of the window's audio (K frames either side)."""
    g = torch.Generator().manual_seed(2)
    k_max, c = 3, 5
    v, a = torch.randn(2, 8, c, generator=g), torch.randn(2, 8, c + 2 * k_max, generator=g)
    ref = torch.zeros(2, 2 * k_max + 1)
    for i, k in enumerate(range(-k_max, k_max + 1)):
        for j in range(c):
            ref[:, i] += (v[:, :, j] * a[:, :, j + k_max + k]).sum(1)
    torch.testing.assert_close(window_correlation(v, a, k_max), ref)
    # the window's own frames, seen through the clip's shifted correlation, give the same numbers
    torch.testing.assert_close(shifted_correlation(v, a[..., k_max:k_max + c], k_max)[:, k_max].sum(1), ref[:, k_max])


def test_window_correlation_needs_the_audio_of_every_candidate():
    with pytest.raises(ValueError, match="7 frames"):
        window_correlation(torch.ones(1, 4, 5), torch.ones(1, 4, 5), 1)
