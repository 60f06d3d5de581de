"""Synthetic clips: deterministic, the planted offset is physically in the data, hold-out really differs."""
from __future__ import annotations

import numpy as np
import pytest

from edge_sync.data.synthetic import (HOLDOUT_VARIANTS, HOLDOUT_VOICES, TRAIN_VARIANTS, TRAIN_VOICES,
                                      SyntheticSyncDataset, articulation, make_clip, offset_track, random_utterance,
                                      shifted_audio)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("edge_sync_cache")


def _mouth_darkness(frames_u8: np.ndarray) -> np.ndarray:
    """How open the rendered mouth is: count of dark cavity pixels in the centre of each frame."""
    centre = frames_u8[:, 30:90, 20:92].astype(np.float32).mean(axis=3)
    return (centre < 0.55 * np.median(centre)).sum(axis=(1, 2)).astype(np.float64)


@pytest.mark.parametrize("offset", [-6, 0, 4])
def test_planted_offset_is_physically_there(cache, offset):
    """The sound at frame t+k matches the mouth at frame t: cross-correlating loudness against the rendered
    mouth opening peaks at lag k."""
    clip = make_clip(seed=3, index=offset + 20, frames=120, offset=offset, cache_dir=cache)
    opening, _ = articulation(clip.waveform, 120)
    mouth = _mouth_darkness(clip.frames_uint8)
    lags = range(-10, 11)
    scores = [np.corrcoef(mouth[max(0, -k):120 - max(0, k)], opening[max(0, k):120 + min(0, k)])[0, 1] for k in lags]
    assert list(lags)[int(np.argmax(scores))] == offset
    assert (clip.offsets == offset).all()


def test_shifted_audio_sign():
    speech = np.arange(40 * 640, dtype=np.float32)
    out = shifted_audio(speech, start_frame=10, offsets=np.full(5, 2))
    assert out[0] == speech[8 * 640]  # frame 0 carries speech frame 10 - 2: the sound is 2 frames late
    assert len(out) == 5 * 640 + 240


def test_deterministic_and_shapes(cache):
    a = make_clip(seed=1, index=5, frames=30, cache_dir=cache)
    b = make_clip(seed=1, index=5, frames=30, cache_dir=cache)
    np.testing.assert_array_equal(a.video, b.video)
    np.testing.assert_array_equal(a.audio, b.audio)
    assert a.audio.shape == (1, 13, 120) and a.video.shape == (3, 30, 112, 112)
    assert a.video.dtype == np.float32 and -1 <= a.video.min() and a.video.max() <= 1
    c = make_clip(seed=2, index=5, frames=30, cache_dir=cache)
    assert not np.array_equal(a.video, c.video)


def test_drifting_offsets_stay_in_range():
    rng = np.random.default_rng(0)
    tracks = [offset_track(rng, 50, 15, drift_prob=1.0) for _ in range(200)]
    assert all(np.abs(t).max() <= 15 for t in tracks)
    assert any(len(np.unique(t)) > 1 for t in tracks)
    assert all(np.abs(np.diff(t)).max() <= 1 for t in tracks)


def test_holdout_never_uses_training_voices_or_sentences():
    rng = np.random.default_rng(0)
    train = [random_utterance(rng, "train") for _ in range(200)]
    hold = [random_utterance(rng, "holdout") for _ in range(200)]
    assert {u.voice.split("+")[0] for u in train} <= set(TRAIN_VOICES)
    assert {u.voice.split("+")[0] for u in hold} <= set(HOLDOUT_VOICES)
    assert {u.voice.split("+")[1] for u in hold}.isdisjoint(TRAIN_VARIANTS)
    assert {u.voice.split("+")[1] for u in train}.isdisjoint(HOLDOUT_VARIANTS)
    train_words = {w for u in train for w in u.text.split()}
    hold_words = {w for u in hold for w in u.text.split()}
    assert len(train_words & hold_words) <= 30  # only the shared verbs


def test_dataset_items_follow_the_sample_convention(cache):
    torch = pytest.importorskip("torch")
    ds = SyntheticSyncDataset(count=3, frames=20, seed=0, cache_dir=cache)
    item = ds[2]
    assert item["audio"].shape == (1, 13, 80) and item["video"].shape == (3, 20, 112, 112)
    assert item["offsets"].dtype == torch.int64 and item["valid"].all()
    with pytest.raises(IndexError):
        ds[3]
    with pytest.raises(ValueError):
        SyntheticSyncDataset(count=3, split="validation")
