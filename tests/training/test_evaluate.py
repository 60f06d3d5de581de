"""Context protocols of evaluate(): which windows count, and that the strict form crops each window correctly."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from edge_sync.models.legacy import LegacySyncNetFCN, SyncNetS
from edge_sync.spec import ModelContract, MOUTH
from edge_sync.training.evaluate import evaluate, strict_context_evaluation
from edge_sync.training.legacy_adapter import MouthLegacy, mouth_to_legacy_frames
from tests.models.helpers import randomise_batchnorm

K = 4


class FrameIndexOracle(nn.Module):
    """Not a sync model: it reads frame numbers written into the inputs, so any crop misaligned by even one
    frame changes its answer. Video frame t carries t; audio frame u carries the video frame it belongs to."""

    contract = ModelContract(audio_input="mfcc", video=MOUTH, max_offset=K, min_frames=1)

    def window_scores(self, audio: torch.Tensor, video: torch.Tensor) -> torch.Tensor:
        v = video[:, 0, :, 0, 0]                     # [B, c]
        a = audio[:, 0, 0, ::4]                      # [B, c + 2K]
        c = v.shape[1]
        return torch.stack([-(v - a[:, K + k:K + k + c]).abs().sum(1) for k in range(-K, K + 1)], dim=1)


def _marked_clip(frames: int, offsets: np.ndarray) -> dict:
    video = torch.zeros(3, frames, 2, 2)
    video[0, :, 0, 0] = torch.arange(frames, dtype=torch.float32)
    audio = torch.full((1, 13, 4 * frames), -1000.0)
    for u in range(frames):  # audio frame u carries the content of video frame u - k (k > 0: sound late)
        audio[0, 0, 4 * u:4 * u + 4] = u - float(offsets[min(u, frames - 1)])
    return {"audio": audio, "video": video, "offsets": offsets}


def test_strict_windows_are_cropped_exactly():
    frames = 30
    clips = [_marked_clip(frames, np.full(frames, k)) for k in (-K, -1, 0, 3, K)]
    res = strict_context_evaluation(FrameIndexOracle(), clips, contexts=(5, 9), tolerance=0)
    # full search only: starts K..frames-c-K
    assert res[5].windows == 5 * (frames - 5 - 2 * K + 1) and res[9].windows == 5 * (frames - 9 - 2 * K + 1)
    assert res[5].accuracy == 1.0 and res[9].accuracy == 1.0


def test_strict_windows_score_against_the_window_median():
    frames = 30
    offsets = np.repeat([0, 3], 15)  # the offset jumps mid-clip; a window's truth is its median frame's offset
    res = strict_context_evaluation(FrameIndexOracle(), [_marked_clip(frames, offsets)], contexts=(5,), tolerance=0,
                                    stride=1)
    assert 0 < res[5].correct < res[5].windows  # windows across the jump mix two offsets
    assert strict_context_evaluation(FrameIndexOracle(), [_marked_clip(frames, offsets)], contexts=(5,),
                                     tolerance=3)[5].accuracy == 1.0


def test_legacy_window_scores_follow_syncnet_python_windows():
    """SyncNet S on a c-frame window: its c - 4 five-frame embeddings against the audio embeddings around them,
    each computed here through the original sliding-window model."""
    torch.manual_seed(3)
    original = randomise_batchnorm(SyncNetS(), seed=3)
    model = MouthLegacy(LegacySyncNetFCN.from_sliding(original, max_offset=2).eval())
    g = torch.Generator().manual_seed(0)
    c, k = 6, 2
    video = torch.rand(1, 3, c, 112, 112, generator=g) * 2 - 1
    audio = torch.randn(1, 1, 13, 4 * (c + 2 * k), generator=g) * 5
    frames = mouth_to_legacy_frames(video)
    with torch.no_grad():
        vids = [original.forward_lip(frames[:, :, j:j + 5]) for j in range(c - 4)]
        auds = [original.forward_aud(audio[..., 4 * i:4 * i + 20]) for i in range(c - 4 + 2 * k)]
        ref = torch.tensor([[sum(torch.cosine_similarity(vids[j], auds[j + k + off]).item() for j in range(c - 4))
                             for off in range(-k, k + 1)]])
        ours = model.window_scores(audio, video)
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-4)


def test_evaluate_reports_every_context_form():
    from edge_sync.data.synthetic import SyntheticSyncDataset
    from edge_sync.models.io import bundled_path, load

    if not bundled_path("student").is_file():
        pytest.skip("no bundled student")
    dataset = SyntheticSyncDataset(count=4, frames=40, seed=77, split="holdout", drift_prob=0.0)
    res = evaluate(load("student"), dataset, contexts=(5, 9), strict_contexts=(5, 9))
    assert set(res.context) == {5, 9}
    assert set(res.extra["context_strict"]) == {"5", "9"} and set(res.extra["context_all_windows"]) == {"5", "9"}
    assert all(0.0 <= v <= 1.0 for v in res.extra["context_strict"].values())
    # without window_scores (an exported artifact) the strict form is left out, not faked
    plain = evaluate(_NoWindows(load("student")), dataset, contexts=(5,))
    assert "context_strict" not in plain.extra


class _NoWindows(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, audio, video):
        return self.net(audio, video)
