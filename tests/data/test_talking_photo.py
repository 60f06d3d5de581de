"""Real-photo test clips: the planted audio delay survives encoding, and the mouth really moves with speech."""
from __future__ import annotations

import numpy as np
import pytest

from edge_sync.data.talking_photo import (astronaut, make_talking_photo_clip, mouth_openness, render_frames,
                                          shift_audio, speak)
from edge_sync.features.media import load_media

pytest.importorskip("skimage", reason="the portrait ships in scikit-image: pip install 'edge-sync[dev]'")
TEXT = "Seven bright boats sail past the old harbour wall."


@pytest.mark.parametrize("offset", [-4, 0, 5])
def test_planted_delay_is_in_the_encoded_file(tmp_path, offset):
    clip = make_talking_photo_clip(tmp_path / "c.mp4", TEXT, offset_frames=offset)
    media = load_media(clip.path)
    assert abs(media.frames.shape[0] - clip.frames) <= 1
    speech = speak(TEXT)
    lead = np.zeros(640 * 10, np.float32)
    reference = np.concatenate([lead, speech, lead])[: clip.frames * 640]
    n = min(len(reference), len(media.audio))
    spectrum = np.fft.rfft(media.audio[:n], 2 * n) * np.conj(np.fft.rfft(reference[:n], 2 * n))
    xcorr = np.fft.irfft(spectrum)
    lag = int(np.argmax(xcorr))
    lag = lag - 2 * n if lag > n else lag
    assert abs(lag - offset * 640) <= 160, f"decoded audio lags by {lag} samples, planted {offset * 640}"


def test_shift_audio_keeps_length_and_sign():
    x = np.arange(10 * 640, dtype=np.float32)
    late = shift_audio(x, 2)
    assert len(late) == len(x) and late[:1280].sum() == 0 and late[1280] == 0.0 and late[1281] == 1.0
    early = shift_audio(x, -1)
    assert early[0] == 640 and early[-640:].sum() == 0


def test_mouth_follows_the_speech_envelope():
    speech = speak(TEXT)
    frames = len(speech) // 640
    openness = mouth_openness(speech, frames)
    assert openness.min() >= 0 and openness.max() <= 1 and openness.std() > 0.2
    video = render_frames(astronaut(), openness, size=(320, 240), face_scale=1.0, seed=1)
    # the mouth region's darkness tracks the jaw opening (the face moves a few px, so use a generous box)
    h, w = video.shape[1:3]
    region = video[:, h // 2 + 40 - 15:h // 2 + 40 + 35, w // 2 - 30:w // 2 + 30].astype(np.float32).mean(axis=(1, 2, 3))
    assert np.corrcoef(-region, openness)[0, 1] > 0.6


def test_clips_are_deterministic(tmp_path):
    a = render_frames(astronaut(), np.linspace(0, 1, 5), size=(160, 120), face_scale=0.5, seed=3)
    b = render_frames(astronaut(), np.linspace(0, 1, 5), size=(160, 120), face_scale=0.5, seed=3)
    np.testing.assert_array_equal(a, b)
