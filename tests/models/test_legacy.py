"""The FCN form of SyncNet S must equal the original sliding-window model, window by window."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from edge_sync.errors import CheckpointError
from edge_sync.models.legacy import LegacySyncNetFCN, SyncNetS
from edge_sync.scoring import syncnet_offsets
from tests.models.helpers import randomise_batchnorm

torch.manual_seed(0)


@pytest.fixture(scope="module")
def original() -> SyncNetS:
    torch.manual_seed(1)
    return randomise_batchnorm(SyncNetS(), seed=1)


@pytest.fixture(scope="module")
def fcn(original) -> LegacySyncNetFCN:
    return LegacySyncNetFCN.from_sliding(original).eval()


def _inputs(n: int, batch: int = 1, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mfcc = torch.randn(batch, 1, 13, 4 * n + 16, generator=g) * 5
    frames = torch.rand(batch, 3, n + 4, 224, 224, generator=g) * 255
    return mfcc, frames


def _assert_close(ours: torch.Tensor, ref: torch.Tensor) -> None:
    err = (ours - ref).abs().max().item()
    assert err <= 1e-4 * ref.abs().max().item(), f"max abs err {err} vs range {ref.abs().max().item()}"


@pytest.mark.parametrize("n", [1, 4])
def test_fcn_equals_sliding_window_model(original, fcn, n):
    mfcc, frames = _inputs(n, seed=n)
    with torch.no_grad():
        ref_a, ref_v = original.sliding_embeddings(mfcc, frames)
        a, v = fcn.embed_audio(mfcc), fcn.embed_video(frames)
    assert a.shape == v.shape == (1, 1024, n)
    _assert_close(a[0].T, ref_a)
    _assert_close(v[0].T, ref_v)


def test_fcn_batches_clips_independently(original, fcn):
    mfcc, frames = _inputs(2, batch=2, seed=7)
    with torch.no_grad():
        a, v = fcn.embed_audio(mfcc), fcn.embed_video(frames)
        for b in range(2):
            ref_a, ref_v = original.sliding_embeddings(mfcc[b:b + 1], frames[b:b + 1])
            _assert_close(a[b].T, ref_a)
            _assert_close(v[b].T, ref_v)


def test_plain_fcn_audio_would_not_be_exact(original):
    """Why the audio trunk runs on unfolded windows: the conv padding inside each window matters."""
    mfcc, _ = _inputs(4, seed=3)
    with torch.no_grad():
        ref_a, _ = original.sliding_embeddings(mfcc, torch.zeros(1, 3, 8, 224, 224))
        mid = original.netcnnaud(mfcc)  # whole MFCC at once: [1,512,1,N']
    assert mid.shape[-1] != ref_a.shape[0] or not torch.allclose(
        original.netfcaud(mid[0, :, 0].T), ref_a, atol=1e-3)


def test_checkpoint_round_trip(tmp_path, original, fcn):
    path = tmp_path / "syncnet_v2.model"
    torch.save(original.state_dict(), path)
    loaded = LegacySyncNetFCN.from_checkpoint(path).eval()
    mfcc, frames = _inputs(2, seed=11)
    with torch.no_grad():
        torch.testing.assert_close(loaded.embed_audio(mfcc), fcn.embed_audio(mfcc))
        torch.testing.assert_close(loaded.embed_video(frames), fcn.embed_video(frames))


def test_checkpoint_without_num_batches_tracked_loads(tmp_path, original):
    """syncnet_python's released weights predate BatchNorm's num_batches_tracked buffers."""
    state = {k: v for k, v in original.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(state, tmp_path / "old.model")
    LegacySyncNetFCN.from_checkpoint(tmp_path / "old.model")


@pytest.mark.parametrize("edit, message", [
    (lambda s: s.update({"netcnnaud.99.weight": torch.zeros(1)}), "unknown keys"),
    (lambda s: s.pop("netfclip.3.weight"), "missing keys"),
    (lambda s: s.update({"netfcaud.0.weight": torch.zeros(3, 3)}), "has shape"),
])
def test_bad_checkpoints_are_refused_clearly(tmp_path, original, edit, message):
    state = dict(original.state_dict())
    edit(state)
    torch.save(state, tmp_path / "bad.model")
    with pytest.raises(CheckpointError, match=message):
        LegacySyncNetFCN.from_checkpoint(tmp_path / "bad.model")


def test_unreadable_or_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        LegacySyncNetFCN.from_checkpoint(tmp_path / "nope.model")
    (tmp_path / "junk.model").write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="not a readable torch checkpoint"):
        LegacySyncNetFCN.from_checkpoint(tmp_path / "junk.model")


def _calc_pdist_reference(video: torch.Tensor, audio: torch.Tensor, vshift: int) -> list[torch.Tensor]:
    """syncnet_python's calc_pdist semantics re-stated with torch primitives."""
    win = 2 * vshift + 1
    audio_p = torch.nn.functional.pad(audio, (0, 0, vshift, vshift))
    return [torch.nn.functional.pairwise_distance(video[[i], :].repeat(win, 1), audio_p[i:i + win, :])
            for i in range(len(video))]


def test_offsets_reproduce_syncnet_python_arithmetic():
    g = torch.Generator().manual_seed(5)
    video, audio = torch.randn(40, 1024, generator=g), torch.randn(40, 1024, generator=g)
    dists = _calc_pdist_reference(video, audio, 15)
    mdist = torch.mean(torch.stack(dists, 1), 1)
    minval, minidx = torch.min(mdist, 0)
    ours = syncnet_offsets(video.numpy(), audio.numpy(), 15)
    assert ours.av_offset == 15 - int(minidx)
    assert ours.min_dist == pytest.approx(float(minval), rel=1e-5)
    assert ours.confidence == pytest.approx(float(torch.median(mdist) - minval), rel=1e-4, abs=1e-4)
    np.testing.assert_allclose(ours.mean_dists, mdist.numpy(), rtol=1e-5)


@pytest.mark.parametrize("k", [-4, 0, 3])
def test_offset_sign_convention(k):
    """Sound late by k frames: audio frame t+k carries video frame t. We report k, syncnet_python -k."""
    rng = np.random.default_rng(0)
    base = rng.normal(size=(60, 32))
    video = base[20:40]
    audio = base[20 - k:40 - k]  # audio[t + k] == video[t]
    res = syncnet_offsets(video, audio, 15)
    assert res.offset_frames == k and res.av_offset == -k and res.audio_delay_ms == 40 * k
    inside = [t for t in range(20) if 0 <= t + k < 20]  # outside, the audio is zero padding
    assert np.abs(res.frame_dists[inside, 15 + k]).max() < 1e-4
    assert res.confidence > 1.0


@pytest.mark.parametrize("frames", [1, 3, 9])
def test_contract_forward_shapes(fcn, frames):
    audio = torch.randn(2, 1, 13, 4 * frames)
    video = torch.rand(2, 3, frames, 224, 224) * 255
    with torch.no_grad():
        probs, corr = fcn(audio, video)
    assert probs.shape == corr.shape == (2, 31, frames)
    torch.testing.assert_close(probs.sum(1), torch.ones(2, frames))
    assert corr.abs().max() <= 1.0 + 1e-5


def test_contract_forward_centres_windows(fcn):
    """Output frame t (interior) uses the 5-frame window t-2..t+2: check against embed_* directly."""
    frames = 9
    audio = torch.randn(1, 1, 13, 4 * frames)
    video = torch.rand(1, 3, frames, 224, 224) * 255
    with torch.no_grad():
        probs, corr = fcn(audio, video)
        a = torch.nn.functional.normalize(fcn.embed_audio(audio), dim=1)  # windows 0..N-1 centred at 2..
        v = torch.nn.functional.normalize(fcn.embed_video(video), dim=1)
    # output frame t = 2 + i pairs video window i with audio window i (offset 0 at channel 15)
    for i in range(a.shape[2]):
        assert corr[0, 15, 2 + i].item() == pytest.approx((a[0, :, i] * v[0, :, i]).sum().item(), abs=1e-4)


def test_bad_legacy_inputs(fcn):
    with pytest.raises(ValueError, match="legacy audio"):
        fcn.embed_audio(torch.zeros(1, 1, 13, 10))
    with pytest.raises(ValueError, match="legacy video"):
        fcn.embed_video(torch.zeros(1, 3, 4, 224, 224))
