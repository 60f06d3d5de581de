"""scripts/published_sync_witnesses.py's two estimators find a known lag on synthetic signals: the formant witness
on a voiced sound whose first formant follows the mouth, the bilabial witness on phones timed against lip closures.
(Decoding, MediaPipe and pocketsphinx live in the script's own venv; these parts need numpy and scipy only.)"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
RATE, FPS, SECONDS = 16_000, 25, 8.0


@pytest.fixture(scope="module")
def witnesses():
    sys.path.insert(0, str(SCRIPTS))
    try:
        spec = importlib.util.spec_from_file_location("published_sync_witnesses", SCRIPTS / "published_sync_witnesses.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path.remove(str(SCRIPTS))


def _mouth(t: np.ndarray) -> np.ndarray:
    """A smooth, irregular opening in [0, 1]: several incommensurate syllable rates."""
    m = np.sin(2 * np.pi * 3.1 * t) + 0.6 * np.sin(2 * np.pi * 4.7 * t + 1.0) + 0.4 * np.sin(2 * np.pi * 1.3 * t + 2.0)
    return (m - m.min()) / (m.max() - m.min())


def _resonator(x: np.ndarray, freq: np.ndarray, bandwidth: float) -> np.ndarray:
    """A two-pole resonance whose centre follows ``freq`` sample by sample."""
    r = np.exp(-np.pi * bandwidth / RATE)
    y = np.zeros_like(x)
    for n in range(2, len(x)):
        y[n] = x[n] + 2 * r * np.cos(2 * np.pi * freq[n] / RATE) * y[n - 1] - r * r * y[n - 2]
    return y


@pytest.mark.parametrize("late_ms", [0, 120])
def test_the_formant_witness_reads_a_planted_lag(witnesses, late_ms):
    lag = witnesses.lag
    frames = np.arange(int(SECONDS * FPS)) / FPS
    t = np.arange(int(SECONDS * RATE)) / RATE
    f1 = 350 + 450 * _mouth(t - late_ms / 1000)  # the sound's F1 follows the mouth, late_ms later
    pulses = (np.arange(len(t)) % (RATE // 120) == 0).astype(float)  # a 120 Hz voice
    audio = _resonator(_resonator(pulses, f1, 80.0), np.full(len(t), 1500.0), 120.0)
    clip = lag.ClipSignals(frames, _mouth(frames), audio / np.abs(audio).max(), 0.0)
    found, spread = witnesses.formant_lag(clip, reps=10)
    assert abs(found - late_ms) <= 20, (found, spread)


@pytest.mark.parametrize("late_ms", [-80, 100])
def test_the_bilabial_witness_reads_a_planted_lag(witnesses, late_ms):
    lag = witnesses.lag
    frames = np.arange(int(SECONDS * FPS)) / FPS
    mouth = 0.6 + 0.3 * np.sin(2 * np.pi * 2.3 * frames)
    closures = np.array([0.9, 1.8, 2.9, 3.7, 4.6, 5.5, 6.6, 7.3])
    for c in closures:  # lips shut for 100 ms at each closure
        mouth[np.abs(frames - c) <= 0.05] = 0.02
    phones = [("AH", 0.0, 0.5)] + [(p, c + late_ms / 1000 - 0.04, c + late_ms / 1000 + 0.04)
                                   for p, c in zip("PBMPBMPB", closures)]
    clip = lag.ClipSignals(frames, mouth, np.zeros(int(SECONDS * RATE)), 0.0)
    found, events = witnesses.bilabial_lag(clip, phones)
    assert events == len(closures) and abs(found - late_ms) <= 20, found


def test_too_few_bilabials_give_no_reading(witnesses):
    lag = witnesses.lag
    frames = np.arange(int(SECONDS * FPS)) / FPS
    clip = lag.ClipSignals(frames, 0.5 + 0.3 * np.sin(frames), np.zeros(int(SECONDS * RATE)), 0.0)
    found, events = witnesses.bilabial_lag(clip, [("M", 1.0, 1.1), ("B", 2.0, 2.1), ("AH", 3.0, 3.2)])
    assert events == 2 and np.isnan(found)


def test_clips_too_short_to_read_alone_are_read_pooled(witnesses):
    """Two bilabials per clip (a GRID sentence's share) give no reading alone; four clips' pooled give the lag."""
    lag = witnesses.lag
    frames = np.arange(int(3.0 * FPS)) / FPS
    values = []
    for shift in (0.0, 0.1, 0.2, 0.3):
        mouth = 0.6 + 0.3 * np.sin(2 * np.pi * 2.3 * frames + shift)
        closures = np.array([0.8, 2.0]) + shift
        for c in closures:
            mouth[np.abs(frames - c) <= 0.05] = 0.02
        clip = lag.ClipSignals(frames, mouth, np.zeros(int(3.0 * RATE)), 0.0)
        phones = [("B", c + 0.06 - 0.04, c + 0.06 + 0.04) for c in closures]  # sound 60 ms late
        assert np.isnan(witnesses.bilabial_lag(clip, phones)[0])
        values.append(witnesses.bilabial_values(clip, phones))
    found, spread = witnesses.pooled_lag(np.concatenate(values), reps=50)
    assert abs(found - 60) <= 20 and spread < 40, (found, spread)


def test_grid_names_spell_their_sentence(witnesses):
    assert witnesses.grid_sentence("grid_lbbc2a.mpg") == "lay blue by c two again"
    assert witnesses.grid_sentence("grid_lwbsza.mpg") == "lay white by s zero again"
    assert witnesses.grid_sentence("grid_ans1.mp4") is None  # not a GRID code
    assert witnesses.grid_sentence("grid_lbb92a.mpg") is None  # a digit where the letter goes
