"""Where a model loses the strict context protocol: which encoder, and which frames of the window.

For every full-search window of C frames of the synthetic hold-out, the window's evidence is scored four ways: both
encoders on the window alone (the strict protocol), the video from the whole clip with the window's audio, the other
way round, and both from the whole clip (the clip-evidence protocol). Then each window position alone (the
per-frame correlation of frame j), seen alone and in the whole clip. A gap between the first two columns is the
video encoder's: it needs frames outside the window. Used in session 17 (docs/real_footage.md).

    .venv/bin/python scripts/strict_context_diagnosis.py --model student --model teacher --clips 40
"""
from __future__ import annotations

import argparse

import numpy as np
import torch
from tqdm import tqdm

from edge_sync.data.synthetic import SyntheticSyncDataset
from edge_sync.models.correlation import window_correlation
from edge_sync.models.io import load
from edge_sync.training.metrics import full_search_starts, window_hits, window_truths
from edge_sync.training.windows import cut_window

VIEWS = ("window alone", "clip video + window audio", "window video + clip audio", "clip evidence")


@torch.inference_mode()
def diagnose(name: str, clips: int, frames: int, context: int) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
    """(accuracy per view, per-position accuracy seen alone, per-position accuracy in the whole clip), in %."""
    model = load(name).eval()
    k = model.config.max_offset
    data = SyntheticSyncDataset(count=clips, frames=frames, seed=1000, split="holdout", drift_prob=0.0)
    hits = dict.fromkeys(VIEWS, 0)
    alone, in_clip = np.zeros(context), np.zeros(context)
    windows = 0
    for i in tqdm(range(len(data)), desc=str(name), unit="clip"):
        clip = data[i]
        audio, video, truth = clip["audio"], clip["video"], np.asarray(clip["offsets"])
        clip_audio, clip_video = model.embed(audio[None], video[None])
        starts = full_search_starts(video.shape[1], context, k, 1)
        cuts = [cut_window(audio, video, int(s), context, k) for s in starts]
        win_audio, win_video = model.embed(torch.stack([a for a, _ in cuts]), torch.stack([v for _, v in cuts]))
        sliced_video = torch.stack([clip_video[0, :, s:s + context] for s in starts])
        sliced_audio = torch.stack([clip_audio[0, :, s - k:s + context + k] for s in starts])
        truths = window_truths(truth, starts, context)
        views = dict(zip(VIEWS, ((win_video, win_audio), (sliced_video, win_audio), (win_video, sliced_audio),
                                 (sliced_video, sliced_audio))))
        for view, (v, a) in views.items():
            hits[view] += window_hits(window_correlation(v, a, k).numpy(), truths, 1)
        candidates = win_audio.unfold(2, context, 1)  # [B, D, 2K+1, C]
        for video_emb, tally in ((win_video, alone), (sliced_video, in_clip)):
            per_frame = torch.einsum("bdj,bdkj->bkj", video_emb, candidates).numpy()
            for j in range(context):
                tally[j] += window_hits(per_frame[:, :, j], truths, 1)
        windows += starts.size
    return ({view: 100 * h / windows for view, h in hits.items()}, 100 * alone / windows, 100 * in_clip / windows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", required=True, help="a model name or checkpoint (repeat)")
    parser.add_argument("--clips", type=int, default=40)
    parser.add_argument("--frames", type=int, default=50)
    parser.add_argument("--context", type=int, default=5)
    args = parser.parse_args(argv)
    print(f"| model | {' | '.join(VIEWS)} | per frame, window alone | per frame, in the clip |")
    print("|---" * (len(VIEWS) + 3) + "|")
    for name in args.model:
        views, alone, in_clip = diagnose(name, args.clips, args.frames, args.context)
        print(f"| {name} | " + " | ".join(f"{views[v]:.1f}%" for v in VIEWS)
              + f" | {' / '.join(f'{x:.0f}' for x in alone)} | {' / '.join(f'{x:.0f}' for x in in_clip)} |")


if __name__ == "__main__":
    main()
