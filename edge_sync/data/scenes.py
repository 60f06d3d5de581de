"""Use-case clips with known answers: real photos speaking real speech, manipulated in known ways.

* :func:`make_desync_clip`: one face, genuine or manipulated (constant shift, drifting offset, audio swapped for
  another sentence, frozen mouth) -- the positives and negatives of the desync flag and the sync-quality score.
* :func:`make_speakers_clip`: two faces taking turns (sometimes talking over each other); per face and frame,
  whether it speaks -- the ground truth of active speaker detection.

Sentences and voices come from the synthetic speech bank's splits, so heads fitted on ``split="train"`` clips are
evaluated on voices and sentences they never heard (``split="holdout"``). The renderer is the talking-photo one
(:mod:`edge_sync.data.talking_photo`), not the training renderer, and every clip goes through H.264 + AAC.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edge_sync.data.synthetic import random_utterance, synthesise
from edge_sync.data.talking_photo import Portrait, _jaw_warp, astronaut, mouth_openness, render_frames, shift_audio, \
    write_video
from edge_sync.spec import SAMPLES_PER_FRAME

DESYNC_KINDS = ("genuine", "shifted", "drifting", "swapped", "frozen")
LEAD_FRAMES = 8  # silence before and after speech, as in a real recording


@dataclass(frozen=True)
class SceneClip:
    """A written clip and its ground truth."""

    path: Path
    kind: str
    frames: int
    offset_frames: int = 0  # the constant shift (shifted), or the final offset (drifting)
    speaking: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), bool))  # [faces, frames]
    face_x: tuple[float, ...] = ()  # each face's centre x in pixels (to match face tracks to the truth)

    @property
    def manipulated(self) -> bool:
        return self.kind != "genuine"


def _speech(rng: np.random.Generator, split: str) -> np.ndarray:
    return synthesise(random_utterance(rng, split))


def _padded(speech: np.ndarray, frames: int, start_frame: int) -> np.ndarray:
    out = np.zeros(frames * SAMPLES_PER_FRAME, np.float32)
    lo = start_frame * SAMPLES_PER_FRAME
    take = min(len(speech), len(out) - lo)
    out[lo:lo + take] = speech[:take]
    return out


def drift_audio(audio: np.ndarray, final_offset_frames: float) -> np.ndarray:
    """Sound that slides from in sync to ``final_offset_frames`` late (k > 0) over the clip (linear time warp)."""
    n = np.arange(len(audio), dtype=np.float64)
    delay = n / max(len(audio) - 1, 1) * final_offset_frames * SAMPLES_PER_FRAME
    return np.interp(n - delay, n, audio, left=0.0, right=0.0).astype(np.float32)


def make_desync_clip(path: str | Path, kind: str, seed: int, split: str = "train") -> SceneClip:
    """One talking face; ``kind`` in :data:`DESYNC_KINDS` says how the sound relates to the mouth."""
    if kind not in DESYNC_KINDS:
        raise ValueError(f"kind must be one of {DESYNC_KINDS}, got {kind!r}")
    rng = np.random.default_rng([seed, DESYNC_KINDS.index(kind), 31])
    speech = _speech(rng, split)
    frames = len(speech) // SAMPLES_PER_FRAME + 2 * LEAD_FRAMES
    audio = _padded(speech, frames, LEAD_FRAMES)
    openness = mouth_openness(audio, frames)
    offset = 0
    if kind == "shifted":
        offset = int(rng.integers(3, 11)) * int(rng.choice([-1, 1]))
        audio = shift_audio(audio, offset)
    elif kind == "drifting":
        offset = int(rng.integers(6, 13)) * int(rng.choice([-1, 1]))
        audio = drift_audio(audio, offset)
    elif kind == "swapped":  # the mouth says one sentence, the soundtrack another (a dubbed or spliced track)
        audio = _padded(_speech(rng, split), frames, LEAD_FRAMES)
    elif kind == "frozen":  # the mouth barely moves while the voice speaks (a still or a failed generator)
        openness = np.full(frames, float(rng.uniform(0.0, 0.25)), np.float32)
    video = render_frames(astronaut(), openness, seed=int(rng.integers(1 << 30)))
    write_video(path, video, audio)
    return SceneClip(Path(path), kind, frames, offset)


def _face_region(portrait: Portrait, scale: float, mirror: bool, tint: np.ndarray) -> Portrait:
    """The head and shoulders around the face, scaled, optionally mirrored and tinted (a second 'person')."""
    fw = portrait.face_width
    mx, my = portrait.mouth_xy
    x0, x1 = max(0, int(mx - 1.4 * fw)), min(portrait.image.shape[1], int(mx + 1.4 * fw))
    y0, y1 = max(0, int(my - 1.6 * fw)), min(portrait.image.shape[0], int(my + 1.2 * fw))
    image = portrait.image[y0:y1, x0:x1].astype(np.float32) * tint
    image = cv2.resize(np.clip(image, 0, 255).astype(np.uint8), None, fx=scale, fy=scale,
                       interpolation=cv2.INTER_AREA)
    mouth = ((mx - x0) * scale, (my - y0) * scale)
    if mirror:
        image = np.ascontiguousarray(image[:, ::-1])
        mouth = (image.shape[1] - 1 - mouth[0], mouth[1])
    return Portrait(image, (int(mouth[0]), int(mouth[1])), int(portrait.mouth_width * scale), int(fw * scale))


def make_speakers_clip(path: str | Path, seed: int, split: str = "train", size: tuple[int, int] = (640, 360),
                       turns: int = 3) -> SceneClip:
    """Two faces side by side taking ``turns`` turns; now and then the other one talks over the speaker."""
    rng = np.random.default_rng([seed, 77])
    width, height = size
    people = [_face_region(astronaut(), 1.0, mirror=False, tint=np.array([1.0, 1.0, 1.0])),
              _face_region(astronaut(), 1.0, mirror=True, tint=rng.uniform(0.75, 1.1, 3))]
    schedule, cursor = [], LEAD_FRAMES
    who = int(rng.integers(2))
    for _ in range(turns):
        speech = _speech(rng, split)
        schedule.append((who, cursor, speech))
        length = len(speech) // SAMPLES_PER_FRAME
        if rng.random() < 0.3:  # the other one talks over the end of this turn
            cursor += int(length * rng.uniform(0.5, 0.8))
        else:
            cursor += length + int(rng.integers(3, 12))
        who = 1 - who
    frames = max(start + len(s) // SAMPLES_PER_FRAME for _, start, s in schedule) + LEAD_FRAMES
    tracks = np.zeros((2, frames * SAMPLES_PER_FRAME), np.float32)
    speaking = np.zeros((2, frames), bool)
    for person, start, speech in schedule:
        tracks[person] += _padded(speech, frames, start)
        speaking[person, start:start + len(speech) // SAMPLES_PER_FRAME] = True
    openness = [mouth_openness(tracks[p], frames) for p in range(2)]
    background = np.full((height, width, 3), rng.integers(60, 200, 3), dtype=np.uint8)
    centres = [(width // 4, height // 2 + 20), (3 * width // 4, height // 2 + 20)]
    phases = rng.uniform(0, 2 * np.pi, 4)
    video = np.empty((frames, height, width, 3), np.uint8)
    for t in range(frames):
        frame = background.copy()
        for p, person in enumerate(people):
            face = _jaw_warp(person.image, person, openness[p][t] * person.face_width * 0.16)
            dx = int(6 * np.sin(2 * np.pi * t / 80 + phases[2 * p]))
            dy = int(4 * np.sin(2 * np.pi * t / 60 + phases[2 * p + 1]))
            x0 = centres[p][0] - person.mouth_xy[0] + dx
            y0 = centres[p][1] - person.mouth_xy[1] + dy + 30
            sx0, sy0 = max(0, -x0), max(0, -y0)
            dx0, dy0 = max(0, x0), max(0, y0)
            cw = min(face.shape[1] - sx0, width - dx0)
            ch = min(face.shape[0] - sy0, height - dy0)
            frame[dy0:dy0 + ch, dx0:dx0 + cw] = face[sy0:sy0 + ch, sx0:sx0 + cw]
        video[t] = frame
    audio = tracks.sum(axis=0)
    peak = np.abs(audio).max()
    write_video(path, video, audio / peak * 0.9 if peak > 0.9 else audio)
    return SceneClip(Path(path), "speakers", frames, 0, speaking, tuple(float(c[0]) for c in centres))
