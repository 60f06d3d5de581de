"""Two real people side by side taking turns: the clips the active-speaker head is fitted and judged on.

Why: the head was fitted on two rendered photos whose silent mouth stays shut. Real people differ on both
counts: a real face moves its mouth while it listens (here: it keeps talking, unheard, which is the hard case
that only the sync evidence separates), and its crops, motion and loudness sit on other scales. On real clips the
synthetic-only head called a lone talking face speaking in 0-18% of its frames.

Each side is a real in-sync clip; the soundtrack is, turn by turn, the sound of the side whose turn it is, at the
same instant of its own clip (so the heard side stays in sync), with short pauses and now and then both at once.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edge_sync.data.scenes import SceneClip
from edge_sync.data.talking_photo import write_video
from edge_sync.features.media import iter_frames, read_audio
from edge_sync.spec import SAMPLES_PER_FRAME, VIDEO_FPS

HEIGHT = 240  # each side is scaled to this height (the faces of the shared clips fill most of their frame) ...
SIDE_WIDTH = 320  # ... then cropped or padded about its centre to this width: the faces' boundary is the middle
MAX_SECONDS = 10.0
TURN_S = (1.5, 3.5)  # a turn's length
PAUSE_S = (0.2, 0.6)  # silence between turns
OVERLAP_P = 0.2  # the next speaker starts before the turn ends


def _side(path: Path, frames: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``frames`` frames of a clip at HEIGHT x SIDE_WIDTH (RGB uint8; scaled, then cropped or padded
    with black about the centre) and its sound (float32, 16 kHz)."""
    video = []
    for frame in iter_frames(path):
        if len(video) == frames:
            break
        width = max(2, round(frame.shape[1] * HEIGHT / frame.shape[0]))
        scaled = cv2.resize(frame, (width, HEIGHT), interpolation=cv2.INTER_AREA)
        side = np.zeros((HEIGHT, SIDE_WIDTH, 3), np.uint8)
        cut, pad = max(0, (width - SIDE_WIDTH) // 2), max(0, (SIDE_WIDTH - width) // 2)
        part = scaled[:, cut:cut + SIDE_WIDTH]
        side[:, pad:pad + part.shape[1]] = part
        video.append(side)
    audio = read_audio(path)[:frames * SAMPLES_PER_FRAME]
    return np.stack(video), np.pad(audio, (0, frames * SAMPLES_PER_FRAME - len(audio)))


def turn_schedule(frames: int, rng: np.random.Generator) -> np.ndarray:
    """[2, frames] bool: who is heard when. Turns alternate from a random side, with pauses and some overlaps."""
    speaking = np.zeros((2, frames), bool)
    who, t = int(rng.integers(2)), int(rng.uniform(*PAUSE_S) * VIDEO_FPS)
    while t < frames:
        length = int(rng.uniform(*TURN_S) * VIDEO_FPS)
        speaking[who, t:t + length] = True
        if rng.random() < OVERLAP_P:
            t += length - int(rng.uniform(0.3, 0.8) * VIDEO_FPS)
        else:
            t += length + int(rng.uniform(*PAUSE_S) * VIDEO_FPS)
        who = 1 - who
    return speaking


def make_real_speakers_clip(path: str | Path, left: Path, right: Path, seed: int) -> SceneClip:
    """``left`` and ``right`` side by side, heard in turns (:func:`turn_schedule`), written to ``path``."""
    rng = np.random.default_rng([seed, 91])
    probe = [sum(1 for _ in zip(range(int(MAX_SECONDS * VIDEO_FPS)), iter_frames(p))) for p in (left, right)]
    frames = min(probe)
    sides = [_side(p, frames) for p in (left, right)]
    speaking = turn_schedule(frames, rng)
    gate = np.repeat(speaking.astype(np.float32), SAMPLES_PER_FRAME, axis=1)
    ramp = np.hanning(2 * 160)[:160].astype(np.float32)  # 10 ms fades: no clicks at the turn boundaries
    for g in gate:
        edges = np.flatnonzero(np.diff(g) != 0) + 1
        for e in edges:
            rising = g[e] > 0
            lo, hi = (e, min(e + 160, len(g))) if rising else (max(e - 160, 0), e)
            g[lo:hi] = ramp[:hi - lo] if rising else ramp[::-1][160 - (hi - lo):]
    audio = sum(a * g for (_, a), g in zip(sides, gate))
    peak = float(np.abs(audio).max()) or 1.0
    video = np.concatenate([v for v, _ in sides], axis=2)
    write_video(path, video, audio / peak * 0.9 if peak > 0.9 else audio)
    # equal widths: the nearest centre (how fitting matches tracks to people) is the side a face is on
    return SceneClip(Path(path), "real speakers", frames, 0, speaking, (SIDE_WIDTH / 2, 3 * SIDE_WIDTH / 2))
