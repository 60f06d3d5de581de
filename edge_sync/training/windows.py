"""Short windows cut from a training batch, for the window loss (the strict context protocol's evidence).

Why: the strict context protocol gives a model only c frames of video and the audio of offsets -K..K around
them. Encoders trained on whole clips see padding where they used to see neighbouring frames and do badly
on 5-frame windows; training on such windows too teaches them to decide from the window alone.
"""
from __future__ import annotations

import torch

from edge_sync.spec import MFCC_PER_FRAME

__all__ = ["cut_window", "sample_windows"]


def cut_window(audio: torch.Tensor, video: torch.Tensor, start: int, frames: int,
               max_offset: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One clip's window seen alone (audio [1,13,4T], video [3,T,H,W]): video frames start..start+c-1 and the audio
    of frames start-K..start+c-1+K, every offset's candidates (``SyncModel.window_scores``' input, unbatched)."""
    lo, hi = MFCC_PER_FRAME * (start - max_offset), MFCC_PER_FRAME * (start + frames + max_offset)
    return audio[..., lo:hi], video[:, start:start + frames]


def sample_windows(batch: dict[str, torch.Tensor], max_offset: int, min_frames: int, max_frames: int,
                   generator: torch.Generator) -> dict[str, torch.Tensor] | None:
    """One window per clip: video frames s..s+c-1 and audio frames s-K..s+c-1+K, with the window's true offset.

    The length c (one per batch, so windows stack) is drawn from min_frames..max_frames, capped at what the clips
    allow (s >= K and s + c + K <= T); the starts are drawn per clip. Returns None when clips are too short for a
    window of ``min_frames`` (T < min_frames + 2K). The truth is the median of the window's per-frame offsets,
    rounded down to an offset (drifting clips change within a window); ``window_valid`` is False for windows
    with an unlabelled frame or a truth beyond +-K, which the loss leaves out; ``window_start`` holds each s.
    """
    video, audio, offsets = batch["video"], batch["audio"], batch["offsets"]
    frames = video.shape[2]
    longest = min(max_frames, frames - 2 * max_offset)
    if longest < min_frames:
        return None
    c = int(torch.randint(min_frames, longest + 1, (1,), generator=generator))
    starts = torch.randint(max_offset, frames - c - max_offset + 1, (video.shape[0],), generator=generator).tolist()
    k = max_offset
    cuts = [cut_window(audio[i], video[i], s, c, k) for i, s in enumerate(starts)]
    window_audio = torch.stack([a for a, _ in cuts])
    window_video = torch.stack([v for _, v in cuts])
    truth = torch.stack([offsets[i, s:s + c].median() for i, s in enumerate(starts)]).long()
    valid = truth.abs() <= k  # temporal jitter can push labels past +-K (those frames are marked invalid)
    if "valid" in batch:
        valid &= torch.stack([batch["valid"][i, s:s + c].all() for i, s in enumerate(starts)])
    return {"window_audio": window_audio, "window_video": window_video,
            "window_offsets": truth.clamp(-k, k), "window_valid": valid,
            "window_start": torch.tensor(starts, dtype=torch.long)}
