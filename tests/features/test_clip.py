"""A file becomes model-ready segments: real decode, real face tracking, MFCC sliced 4 steps per frame."""
from __future__ import annotations

import numpy as np
import pytest

from edge_sync.data.talking_photo import astronaut, make_talking_photo_clip, write_video
from edge_sync.errors import MediaError, NoFaceError
from edge_sync.features.clip import prepare_clip
from edge_sync.features.media import read_audio
from edge_sync.features.mfcc import audio_to_mfcc_input
from edge_sync.spec import LEGACY_FACE

pytest.importorskip("skimage", reason="the portrait ships in scikit-image: pip install 'edge-sync[dev]'")


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_talking_photo_clip(tmp_path_factory.mktemp("clip") / "talk.mp4",
                                   "Every frame of this clip shows one face.", offset_frames=1)


def test_one_face_gives_one_full_segment(clip):
    prepared = prepare_clip(clip.path)
    seg = prepared.main_segment()
    assert prepared.track_ids() == [seg.track_id]
    assert seg.frames >= prepared.num_frames - 10  # a track may be confirmed a few frames late, never invented
    assert seg.video.shape == (1, 3, seg.frames, 112, 112) and seg.video.dtype == np.float32
    assert seg.audio.shape == (1, 1, 13, 4 * seg.frames)
    assert -1.0 <= seg.video.min() and seg.video.max() <= 1.0


def test_segment_audio_is_the_matching_slice(clip):
    prepared = prepare_clip(clip.path)
    seg = prepared.main_segment()
    audio = read_audio(clip.path)
    audio = np.pad(audio, (0, max(0, prepared.num_frames * 640 - len(audio))))
    full = audio_to_mfcc_input(audio, prepared.num_frames)
    np.testing.assert_array_equal(seg.audio, full[..., 4 * seg.start:4 * (seg.start + seg.frames)])


def test_legacy_preprocessing_gives_224_bgr_face_crops(clip):
    seg = prepare_clip(clip.path, preprocessing=LEGACY_FACE).main_segment()
    assert seg.video.shape[3:] == (224, 224) and seg.video.max() > 1.0  # 0..255, not normalised


def test_video_without_audio_is_refused(tmp_path):
    frames = np.repeat(astronaut().image[None, :256, :256], 10, axis=0)
    write_video(tmp_path / "silent.mp4", frames, None)
    with pytest.raises(MediaError, match="no audio"):
        prepare_clip(tmp_path / "silent.mp4")


def test_video_without_a_face_is_refused(tmp_path):
    frames = np.full((30, 120, 160, 3), 90, np.uint8)
    write_video(tmp_path / "noface.mp4", frames, np.zeros(30 * 640, np.float32))
    with pytest.raises(NoFaceError, match="no face track"):
        prepare_clip(tmp_path / "noface.mp4")
