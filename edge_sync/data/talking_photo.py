"""Real-face test clips: a real photo whose jaw opens with real speech, audio shifted by a known offset.

This is deliberately *not* the training renderer: the face is a photograph (scikit-image's bundled
astronaut portrait, or any photo the user passes), the mouth motion is a geometric warp of that photo
driven by the speech envelope, and the clip goes through a real encoder (H.264 + AAC in MP4), so the
whole pipeline (decode, face track, mouth crop, model) is exercised on footage it never trained on.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge_sync.data.synthetic import Utterance, articulation, synthesise
from edge_sync.spec import AUDIO_RATE, SAMPLES_PER_FRAME, VIDEO_FPS


@dataclass(frozen=True)
class Portrait:
    """A photo and where its mouth is (pixel centre, width of the mouth, face box width)."""

    image: np.ndarray  # RGB uint8
    mouth_xy: tuple[int, int]
    mouth_width: int
    face_width: int


def astronaut() -> Portrait:
    """scikit-image's bundled portrait of Eileen Collins (a real face shipped inside a PyPI package)."""
    from skimage import data  # test/demo dependency only

    return Portrait(image=data.astronaut(), mouth_xy=(225, 146), mouth_width=38, face_width=95)


def speak(text: str, voice: str = "en-us", speed: int = 150, pitch: int = 50) -> np.ndarray:
    """Real speech from espeak-ng as float32 mono at 16 kHz (cached like the training speech bank)."""
    return synthesise(Utterance(text, voice, speed, pitch))


def mouth_openness(audio: np.ndarray, frames: int) -> np.ndarray:
    """Per-frame jaw opening in 0..1 from the speech loudness envelope (what a viewer sees move)."""
    return articulation(audio, frames)[0]


def _jaw_warp(image: np.ndarray, portrait: Portrait, opening_px: float) -> np.ndarray:
    """Pull the lower face down by ``opening_px`` below the mouth line and show a dark mouth cavity."""
    mx, my = portrait.mouth_xy
    fw = portrait.face_width
    x0, x1 = max(0, int(mx - fw)), min(image.shape[1], int(mx + fw))  # warp only around the jaw
    y0, y1 = max(0, int(my - fw * 0.3)), min(image.shape[0], int(my + fw * 1.2))
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    across = np.clip(1.0 - np.abs(xx - mx) / (fw * 0.55), 0.0, 1.0) ** 0.7
    below = np.clip((yy - my) / 4.0, 0.0, 1.0) * np.clip(1.0 - (yy - my) / (fw * 0.9), 0.0, 1.0)
    shift = (np.float32(opening_px) * across * below).astype(np.float32)
    warped = image.copy()
    warped[y0:y1, x0:x1] = cv2.remap(image, xx, yy - shift, interpolation=cv2.INTER_LINEAR,
                                     borderMode=cv2.BORDER_REFLECT)
    if opening_px >= 1.0:
        axes = (int(portrait.mouth_width * 0.45), max(1, int(opening_px * 0.55)))
        centre = (int(mx), int(my + opening_px * 0.45))
        cv2.ellipse(warped, centre, axes, 0, 0, 360, (70, 25, 30), -1, lineType=cv2.LINE_AA)
        teeth = (axes[0] - 3, max(1, axes[1] // 4))
        cv2.ellipse(warped, (centre[0], centre[1] - axes[1] + teeth[1]), teeth, 0, 0, 360, (225, 220, 210), -1,
                    lineType=cv2.LINE_AA)
    return warped


def render_frames(portrait: Portrait, openness: np.ndarray, size: tuple[int, int] = (640, 360),
                  face_scale: float = 1.4, seed: int = 0) -> np.ndarray:
    """[T, H, W, 3] frames: the portrait (scaled, gently moving) on a plain background, jaw following speech."""
    rng = np.random.default_rng(seed)
    width, height = size
    photo = cv2.resize(portrait.image, None, fx=face_scale, fy=face_scale, interpolation=cv2.INTER_LINEAR)
    scaled = Portrait(photo, (int(portrait.mouth_xy[0] * face_scale), int(portrait.mouth_xy[1] * face_scale)),
                      int(portrait.mouth_width * face_scale), int(portrait.face_width * face_scale))
    background = np.full((height, width, 3), rng.integers(60, 200, 3), dtype=np.uint8)
    ph, pw = photo.shape[:2]
    phase = rng.uniform(0, 2 * np.pi, 2)
    frames = np.empty((len(openness), height, width, 3), dtype=np.uint8)
    for t, o in enumerate(openness):
        face = _jaw_warp(photo, scaled, o * scaled.face_width * 0.16)
        dx = int(8 * np.sin(2 * np.pi * t / 90 + phase[0]))
        dy = int(5 * np.sin(2 * np.pi * t / 70 + phase[1]))
        x0 = width // 2 - scaled.mouth_xy[0] + dx
        y0 = height // 2 - scaled.mouth_xy[1] + 40 + dy
        frame = background.copy()
        sx0, sy0 = max(0, -x0), max(0, -y0)
        dx0, dy0 = max(0, x0), max(0, y0)
        cw, ch = min(pw - sx0, width - dx0), min(ph - sy0, height - dy0)
        frame[dy0:dy0 + ch, dx0:dx0 + cw] = face[sy0:sy0 + ch, sx0:sx0 + cw]
        frames[t] = frame
    return frames


def shift_audio(audio: np.ndarray, offset_frames: int) -> np.ndarray:
    """Delay (k > 0, sound late) or advance (k < 0) the audio by k video frames, keeping its length."""
    n = offset_frames * SAMPLES_PER_FRAME
    if n >= 0:
        return np.concatenate([np.zeros(n, audio.dtype), audio[: len(audio) - n]])
    return np.concatenate([audio[-n:], np.zeros(-n, audio.dtype)])


def write_video(path: str | Path, frames: np.ndarray, audio: np.ndarray | None, fps: int = VIDEO_FPS,
                sample_rate: int = AUDIO_RATE) -> Path:
    """Encode RGB frames (H.264) and mono float audio (AAC) into an MP4 with PyAV."""
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        vstream = container.add_stream("libx264", rate=fps)
        vstream.width, vstream.height = frames.shape[2], frames.shape[1]
        vstream.pix_fmt = "yuv420p"
        vstream.options = {"crf": "20", "preset": "veryfast"}
        astream = None
        if audio is not None:
            astream = container.add_stream("aac", rate=sample_rate)
            astream.layout = "mono"
        for frame in frames:
            for packet in vstream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                container.mux(packet)
        for packet in vstream.encode():
            container.mux(packet)
        if astream is not None:
            samples = np.clip(audio, -1, 1).astype(np.float32)
            chunk = 1024
            for start in range(0, len(samples), chunk):
                block = samples[start:start + chunk][None, :]
                aframe = av.AudioFrame.from_ndarray(block, format="flt", layout="mono")
                aframe.sample_rate = sample_rate
                aframe.pts = start
                for packet in astream.encode(aframe):
                    container.mux(packet)
            for packet in astream.encode():
                container.mux(packet)
    return path


@dataclass(frozen=True)
class TalkingClip:
    path: Path
    offset_frames: int
    frames: int
    text: str


def make_talking_photo_clip(path: str | Path, text: str, offset_frames: int = 0, portrait: Portrait | None = None,
                            voice: str = "en-us", speed: int = 150, pitch: int = 50, seed: int = 0,
                            size: tuple[int, int] = (640, 360)) -> TalkingClip:
    """Write an MP4 of a real photo speaking ``text`` with the sound ``offset_frames`` late (k > 0)."""
    portrait = portrait or astronaut()
    speech = speak(text, voice=voice, speed=speed, pitch=pitch)
    lead = np.zeros(SAMPLES_PER_FRAME * 10, np.float32)  # silence around speech, like a real recording
    audio = np.concatenate([lead, speech, lead])
    frames = len(audio) // SAMPLES_PER_FRAME
    audio = audio[: frames * SAMPLES_PER_FRAME]
    video = render_frames(portrait, mouth_openness(audio, frames), size=size, seed=seed)
    write_video(path, video, shift_audio(audio, offset_frames))
    return TalkingClip(Path(path), offset_frames, frames, text)
