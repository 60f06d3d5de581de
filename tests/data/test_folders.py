"""User corpora: real decode once, cache, skip bad files, and planted offsets that are what the label says."""
from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import torch

from edge_sync.data import folders
from edge_sync.data.folders import VideoFolderDataset, crops_from_model_input, find_videos
from edge_sync.data.talking_photo import astronaut, make_talking_photo_clip, write_video
from edge_sync.errors import EdgeSyncError
from edge_sync.features import clip as clip_features
from edge_sync.spec import MOUTH

pytest.importorskip("skimage", reason="the portrait ships in scikit-image: pip install 'edge-sync[dev]'")

TEXT = ("Please remember to bring the blue map, seven apples and a warm coat when we visit the old "
        "lighthouse tomorrow.")
T, K = 40, 8


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """One good in-sync clip deep in a tree, plus files a real corpus has: no sound, no face, garbage, non-video."""
    root = tmp_path_factory.mktemp("corpus")
    make_talking_photo_clip(root / "people" / "alice" / "talk.mp4", TEXT, offset_frames=0, size=(320, 240))
    write_video(root / "people" / "silent.mp4", np.repeat(astronaut().image[None, :256, :256], 10, axis=0), None)
    write_video(root / "noface.mov", np.full((30, 96, 128, 3), 90, np.uint8), np.zeros(30 * 640, np.float32))
    (root / "broken.mkv").write_bytes(os.urandom(4096))
    (root / "notes.txt").write_text("not a video")
    (root / ".hidden").mkdir()
    shutil.copy(root / "people" / "alice" / "talk.mp4", root / ".hidden" / "ignored.mp4")
    return root


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def dataset(corpus, cache_dir):
    return VideoFolderDataset(corpus, frames=T, max_offset=K, cache_dir=cache_dir, seed=0)


def _openness(video: torch.Tensor) -> np.ndarray:
    """Per-frame mouth opening seen in the crops: the mouth cavity darkens the crop's lower centre."""
    return -video.numpy().mean(axis=0)[:, 50:95, 30:82].mean(axis=(1, 2))


def _energy(audio: torch.Tensor) -> np.ndarray:
    """Per-frame loudness: MFCC row 0 is the log frame energy (append_energy), 4 steps per frame."""
    return audio.numpy()[0, 0].reshape(-1, 4).mean(axis=1)


def _lag_scores(video: torch.Tensor, audio: torch.Tensor, radius: int = K) -> dict[int, float]:
    """corr(mouth opening at t, loudness at t + L) for each lag L: peaks at the sample's true offset."""
    o, e = _openness(video), _energy(audio)
    scores = {}
    for lag in range(-radius, radius + 1):
        t0, t1 = max(0, -lag), min(len(o), len(o) - lag)
        scores[lag] = float(np.corrcoef(o[t0:t1], e[t0 + lag:t1 + lag])[0, 1])
    return scores


def test_walks_nested_folders_and_skips_bad_files(corpus, dataset):
    assert find_videos(corpus) == sorted(find_videos(corpus))
    assert [p.relative_to(corpus).as_posix() for p in dataset.files] == ["people/alice/talk.mp4"]
    reasons = {s.path.name: s.reason for s in dataset.skipped}
    assert set(reasons) == {"silent.mp4", "noface.mov", "broken.mkv"}  # .txt and hidden folders never looked at
    assert "no audio" in reasons["silent.mp4"]
    assert reasons["noface.mov"].startswith("NoFaceError")
    assert reasons["broken.mkv"].startswith("MediaError")
    assert dataset.decodes == 4 and len(dataset) >= 1


def test_sample_follows_the_shared_convention(dataset):
    s = dataset[0]
    assert s["audio"].shape == (1, 13, 4 * T) and s["audio"].dtype == torch.float32
    assert s["video"].shape == (3, T, 112, 112) and s["video"].dtype == torch.float32
    assert s["offsets"].shape == (T,) and s["offsets"].dtype == torch.int64
    assert s["valid"].shape == (T,) and s["valid"].dtype == torch.bool and bool(s["valid"].all())
    assert (s["offsets"] == s["offsets"][0]).all() and -K <= int(s["offsets"][0]) <= K
    batch = torch.utils.data.default_collate([dataset[i] for i in range(len(dataset))])
    assert batch["audio"].shape == (len(dataset), 1, 13, 4 * T)


def test_second_dataset_reads_the_cache_without_decoding(corpus, cache_dir, dataset, monkeypatch):
    assert len(list(cache_dir.glob("*.npz"))) == 1 and len(list(cache_dir.glob("*.skip.json"))) == 3
    assert not list(cache_dir.glob("*.tmp"))  # written atomically: no leftovers

    def no_decode(*args, **kwargs):
        raise AssertionError("prepare_clip called although the cache holds this file")

    monkeypatch.setattr(clip_features, "prepare_clip", no_decode)
    again = VideoFolderDataset(corpus, frames=T, max_offset=K, cache_dir=cache_dir, seed=0)
    assert again.decodes == 0 and again.cache_hits == 4
    assert [s.path for s in again.skipped] == [s.path for s in dataset.skipped]
    for i in range(len(dataset)):
        for key, value in dataset[i].items():
            torch.testing.assert_close(again[i][key], value, rtol=0, atol=0)


def test_changed_file_is_decoded_again(tmp_path):
    make_talking_photo_clip(tmp_path / "v" / "a.mp4", "One two three four five six seven.", size=(320, 240))
    ds = VideoFolderDataset(tmp_path / "v", frames=20, max_offset=4, cache_dir=tmp_path / "c")
    assert ds.decodes == 1
    st = (tmp_path / "v" / "a.mp4").stat()
    os.utime(tmp_path / "v" / "a.mp4", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    ds2 = VideoFolderDataset(tmp_path / "v", frames=20, max_offset=4, cache_dir=tmp_path / "c")
    assert ds2.decodes == 1 and ds2.cache_hits == 0
    assert len(list((tmp_path / "c").glob("*.npz"))) == 2  # keyed by mtime: the old entry is simply unused


def test_uint8_cache_is_lossless(corpus):
    prepared = clip_features.prepare_clip(corpus / "people" / "alice" / "talk.mp4")
    seg = prepared.main_segment()
    crops = crops_from_model_input(seg.video, MOUTH)
    assert crops.dtype == np.uint8
    np.testing.assert_array_equal(MOUTH.normalise(crops)[None], seg.video)


@pytest.mark.parametrize("k", [-5, 0, 6])
def test_planted_offset_matches_the_label(corpus, cache_dir, k):
    """Audio of a k sample is the in-sync audio moved k frames later, and the mouth says so too."""
    ds = VideoFolderDataset(corpus, frames=T, max_offset=K, cache_dir=cache_dir, offsets=k, seed=1)
    mean_scores = np.zeros(2 * K + 1)
    for i in range(len(ds)):
        clip_id, seg_index, s, label = ds.window(i)
        sample = ds[i]
        assert label == k and (sample["offsets"] == k).all()
        segment = ds.segments(clip_id)[seg_index]
        # structural: video index t is source frame s+t, whose own sound sits at audio index t+k
        in_sync = segment.mfcc[:, 4 * s:4 * (s + T)]
        shifted = sample["audio"][0].numpy()
        lo, hi = max(0, -k), min(T, T - k)
        np.testing.assert_array_equal(shifted[:, 4 * (lo + k):4 * (hi + k)], in_sync[:, 4 * lo:4 * hi])
        np.testing.assert_array_equal(sample["video"].numpy(), MOUTH.normalise(segment.crops[s:s + T]))
        # behavioural: the mouth opens with the loudness k frames later
        scores = _lag_scores(sample["video"], sample["audio"])
        mean_scores += np.array([scores[lag] for lag in range(-K, K + 1)])
        assert abs(max(scores, key=scores.get) - k) <= 1
    assert int(np.argmax(mean_scores)) - K == k


def test_uniform_offsets_cover_the_range_and_are_reproducible(corpus, cache_dir):
    ds = VideoFolderDataset(corpus, frames=T, max_offset=K, cache_dir=cache_dir, seed=3)
    labels = [ds.window(i, epoch=e)[3] for e in range(40) for i in range(len(ds))]
    assert min(labels) == -K and max(labels) == K
    assert ds.window(0) == VideoFolderDataset(corpus, frames=T, max_offset=K, cache_dir=cache_dir, seed=3).window(0)
    first = [ds.window(i) for i in range(len(ds))]
    ds.set_epoch(1)
    assert [ds.window(i) for i in range(len(ds))] != first
    # per-sample offsets measured from the pixels and the sound agree with the labels
    ds.set_epoch(0)
    relative = np.zeros(2 * K + 1)
    for i in range(len(ds)):
        sample = ds[i]
        k = int(sample["offsets"][0])
        scores = _lag_scores(sample["video"], sample["audio"], radius=2 * K)
        relative += np.array([scores[k + d] for d in range(-K, K + 1)])
    assert int(np.argmax(relative)) - K == 0


def test_unlabeled_samples_carry_a_real_out_of_sync_negative(corpus, cache_dir):
    ds = VideoFolderDataset(corpus, frames=T, max_offset=K, cache_dir=cache_dir, labels=False, seed=0)
    for e in range(5):
        for i in range(len(ds)):
            sample = ds.sample(i, epoch=e)
            assert "offsets" not in sample and "valid" not in sample
            clip_id, seg_index, s, k = ds.window(i, epoch=e)
            assert int(sample["negative_offset"]) == k and 3 <= abs(k) <= K
            segment = ds.segments(clip_id)[seg_index]
            np.testing.assert_array_equal(sample["audio"][0].numpy(), segment.mfcc[:, 4 * s:4 * (s + T)])
            np.testing.assert_array_equal(sample["negative_audio"][0].numpy(),
                                          segment.mfcc[:, 4 * (s - k):4 * (s - k + T)])


def test_in_memory_mode_and_clear_errors(corpus, tmp_path):
    ds = VideoFolderDataset(corpus / "people", frames=T, max_offset=K, offsets=2)  # no cache dir: nothing written
    assert len(ds.skipped) == 1 and (ds[0]["offsets"] == 2).all()
    with pytest.raises(EdgeSyncError, match="not found"):
        VideoFolderDataset(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(EdgeSyncError, match="no usable clips"):
        VideoFolderDataset(tmp_path / "empty")
    with pytest.raises(EdgeSyncError, match="no face segment of >= 10015 frames"):
        VideoFolderDataset(corpus / "people", frames=10000, max_offset=15)
    with pytest.raises(ValueError, match="offsets"):
        VideoFolderDataset(corpus, offsets=K + 1, max_offset=K)
    assert folders.VIDEO_EXTENSIONS[0] == ".mp4"


def _counting_segment(frames: int, late: int) -> "CachedSegment":
    """A segment whose crop t shows frame t and whose sound of frame u is u - late: the sound is ``late`` frames
    late, as a clip published out of sync would be."""
    from edge_sync.data.folders import CachedSegment
    from edge_sync.spec import MFCC_PER_FRAME

    crops = np.zeros((frames, 4, 4, 3), np.uint8)
    crops[:, 0, 0, 0] = np.arange(frames)
    mfcc = np.repeat(np.arange(frames, dtype=np.float32) - late, MFCC_PER_FRAME)[None].repeat(13, axis=0)
    return CachedSegment(0, 0, mfcc, crops)


@pytest.mark.parametrize("late", [3, -2, 0])
def test_a_clip_published_late_is_realigned_before_windows_are_cut(tmp_path, late):
    from edge_sync.data.folders import VideoFolderDataset, read_published_offsets, realign
    from edge_sync.spec import MFCC_PER_FRAME

    seg = realign(_counting_segment(60, late), late)
    assert seg.frames == 60 - abs(late) == seg.mfcc.shape[1] // MFCC_PER_FRAME
    # after realigning, the sound of each frame sits under that frame's picture
    assert np.array_equal(seg.mfcc[0, ::MFCC_PER_FRAME], seg.crops[:, 0, 0, 0].astype(np.float32))
    (tmp_path / "MANIFEST.tsv").write_text(f"file\tgroup\toffset_frames\na.mp4\treal\t{late}\nb.mp4\treal\t\n")
    assert read_published_offsets(tmp_path) == {"a.mp4": late}
    data = VideoFolderDataset(tmp_path, frames=10, max_offset=4, segments={"a.mp4": [_counting_segment(60, late)]},
                              min_activity=0, published_offsets={"a.mp4": late})
    for i in range(len(data)):
        x = data.sample(i)
        k = int(x["offsets"][0])
        heard = x["audio"][0, 0, ::MFCC_PER_FRAME].numpy()  # the source frame each audio step's sound belongs to
        # the label is the truth: the sound of frame t shown (frame_start + t) is heard k frames later
        t = max(0, -k)
        assert heard[t + k] == int(x["frame_start"]) + t


def test_a_bad_published_offset_is_a_clear_error(tmp_path):
    from edge_sync.data.folders import read_published_offsets
    from edge_sync.errors import EdgeSyncError

    (tmp_path / "MANIFEST.tsv").write_text("file\tgroup\toffset_frames\na.mp4\treal\t+2 frames\n")
    with pytest.raises(EdgeSyncError, match="whole number"):
        read_published_offsets(tmp_path)
