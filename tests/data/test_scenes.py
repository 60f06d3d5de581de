"""Use-case scenes: the ground truth written beside each clip is what the clip contains."""
from __future__ import annotations

import numpy as np
import pytest

from edge_sync.data.scenes import drift_audio, make_desync_clip, make_speakers_clip
from edge_sync.features.media import probe, read_audio
from edge_sync.spec import SAMPLES_PER_FRAME


def test_drift_slides_from_in_sync_to_the_final_offset() -> None:
    audio = np.zeros(SAMPLES_PER_FRAME * 100, np.float32)
    for frame in (5, 85):  # clicks at two moments
        audio[frame * SAMPLES_PER_FRAME] = 1.0
    out = drift_audio(audio, 10)  # 0 frames late at the start, 10 at the end
    early, late = (np.flatnonzero(out > 0.1) / SAMPLES_PER_FRAME)[[0, -1]]
    # heard at t when said at t - 0.1 t: the delay grows linearly with the time it is heard at
    assert early - 5 == pytest.approx(0.1 * early, abs=0.05)
    assert late - 85 == pytest.approx(0.1 * late, abs=0.05)


def test_unknown_kind_is_refused(tmp_path) -> None:
    with pytest.raises(ValueError, match="kind must be one of"):
        make_desync_clip(tmp_path / "x.mp4", "reversed", 0)


def test_speakers_clip_truth_follows_its_turns(tmp_path) -> None:
    clip = make_speakers_clip(tmp_path / "two.mp4", seed=3, turns=2)
    info = probe(clip.path)
    assert info.has_audio and info.duration_s == pytest.approx(clip.frames / 25, abs=0.15)
    assert clip.speaking.shape == (2, clip.frames)
    assert clip.speaking[0].any() and clip.speaking[1].any()  # both take a turn
    assert clip.face_x[0] < clip.face_x[1]
    # the soundtrack is loud where somebody speaks and silent where nobody does
    audio = read_audio(clip.path)[:clip.frames * SAMPLES_PER_FRAME]
    rms = np.sqrt((audio[:len(audio) // SAMPLES_PER_FRAME * SAMPLES_PER_FRAME]
                   .reshape(-1, SAMPLES_PER_FRAME) ** 2).mean(axis=1))
    anyone = clip.speaking.any(axis=0)[:len(rms)]
    assert rms[anyone].mean() > 10 * rms[~anyone].mean()
