"""Windows cut for the window loss: the same crops the strict context protocol scores."""
from __future__ import annotations

import torch

from edge_sync.training.windows import sample_windows

K = 3


def _marked_batch(frames: int, offsets: list[list[int]]) -> dict[str, torch.Tensor]:
    """Video frame t carries t; audio frame u carries the video frame it belongs to (u - k_u)."""
    b = len(offsets)
    video = torch.arange(frames, dtype=torch.float32).repeat(b, 3, 1)[..., None, None]
    off = torch.tensor(offsets)
    audio = (torch.arange(frames).repeat(b, 1) - off).float().repeat_interleave(4, dim=1)[:, None, None, :]
    return {"video": video, "audio": audio.expand(b, 1, 13, 4 * frames).clone(), "offsets": off}


def test_windows_line_up_video_audio_and_truth():
    frames = 20
    batch = _marked_batch(frames, [[2] * frames, [-3] * frames, [0] * 10 + [1] * 10])
    for seed in range(20):
        w = sample_windows(batch, K, 2, 8, torch.Generator().manual_seed(seed))
        c = w["window_video"].shape[2]
        assert 2 <= c <= 8 and w["window_audio"].shape[-1] == 4 * (c + 2 * K)
        for i in range(3):
            s = int(w["window_video"][i, 0, 0, 0, 0])  # the window's first frame number
            assert K <= s <= frames - c - K and int(w["window_start"][i]) == s
            assert w["window_video"][i, 0, :, 0, 0].tolist() == list(range(s, s + c))
            # candidate k of window frame j is audio frame j + K + k: the truth k pairs each frame with itself
            k = int(w["window_offsets"][i])
            heard = w["window_audio"][i, 0, 0, ::4][K + k:K + k + c]
            if i < 2:
                assert heard.tolist() == list(range(s, s + c)), (seed, i, k)
            assert k == int(batch["offsets"][i, s:s + c].median())


def test_windows_are_reproducible_and_need_long_enough_clips():
    batch = _marked_batch(20, [[1] * 20])
    a = sample_windows(batch, K, 2, 8, torch.Generator().manual_seed(4))
    b = sample_windows(batch, K, 2, 8, torch.Generator().manual_seed(4))
    assert all(torch.equal(a[key], b[key]) for key in a)
    # c = 5 needs T >= 5 + 2K = 11
    assert sample_windows(_marked_batch(10, [[0] * 10]), K, 5, 8, torch.Generator()) is None
    assert sample_windows(_marked_batch(11, [[0] * 11]), K, 5, 8, torch.Generator())["window_video"].shape[2] == 5


def test_windows_with_unlabelled_frames_or_labels_past_k_are_marked():
    """Temporal jitter pushes labels past +-K and marks those frames invalid; their windows must not be trained."""
    frames = 20
    batch = _marked_batch(frames, [[K + 2] * frames, [0] * frames, [1] * frames])
    batch["valid"] = torch.ones(3, frames, dtype=torch.bool)
    batch["valid"][2, :] = False
    w = sample_windows(batch, K, 2, 8, torch.Generator().manual_seed(0))
    assert w["window_valid"].tolist() == [False, True, False]
    assert int(w["window_offsets"][0]) == K  # clamped into the class range, so the loss can still index it
