"""Synthetic talking mouths with ground-truth offsets: real speech, a rendered mouth that moves with it.

No talking-face corpus can be downloaded here, so training data is made:

* audio is real speech from espeak-ng (several accents, voice variants, speeds and pitches), kept in a
  small on-disk speech bank so it is synthesised once;
* video is a procedurally rendered 112x112 mouth crop (skin, lips, cavity, teeth, tongue) whose jaw opening
  follows the speech loudness and whose lip spread follows the spectral balance (fricatives and front
  vowels spread the lips, low back vowels open the jaw), with varied faces, colours, lighting, head
  motion, scale, noise, blur and JPEG compression;
* the audio is then shifted by a known offset k in -K..K (constant, or drifting over the clip for some
  clips), so every frame has a ground-truth offset.

Everything is deterministic from (seed, index, split). The hold-out split uses voices, voice variants,
sentences and renderer ranges (lip colours, skin tones, lighting) that the train split never uses.
"""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge_sync.errors import EdgeSyncError
from edge_sync.features.mfcc import audio_to_mfcc_input, resample
from edge_sync.spec import AUDIO_RATE, MAX_OFFSET, MOUTH, SAMPLES_PER_FRAME

log = logging.getLogger(__name__)

WORDS = (
    "time people year way day thing man world life hand part child eye woman place work week case point "
    "government company number group problem fact water money story month lot right study book word issue side "
    "kind head house service friend father power hour game line end member law car city community name team "
    "minute idea kid body information back parent face others level office door health person art war history "
    "party result change morning reason research girl guy moment air teacher force education foot boy age "
    "policy music market sense nation plan college interest death experience effect class control care field "
    "development role effort rate heart drug show leader light voice wife police mind price report decision son "
    "view relationship town road arm difference value building action model season society tax director "
    "position player record paper space ground form event official matter center couple site project activity "
    "star table need court oil situation cost industry figure street image phone data picture practice piece "
    "land product doctor wall patient worker news test movie north love support technology step baby computer "
    "type attention film tree source organization hair window evidence population truth song quickly softly "
    "bright purple seven eleven thirty shiny heavy gentle brave curious happy sleepy windy frozen golden"
).split()
VERBS = ("sees finds makes takes gives keeps brings holds moves turns reads writes builds opens closes pulls "
         "pushes leaves meets calls feels shows plays lifts carries throws catches").split()

# Disjoint voice sets: the hold-out split never hears a voice/variant used in training.
TRAIN_VOICES = ("en-us", "en-gb", "en-gb-scotland", "en-029")
TRAIN_VARIANTS = ("m1", "m2", "m3", "m6", "f1", "f2", "f3")
HOLDOUT_VOICES = ("en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd")
HOLDOUT_VARIANTS = ("m4", "m5", "m7", "f4", "f5")
SPLIT_CODES = {"train": 0, "holdout": 1}
# Clips reuse a fixed bank of utterances per split (each synthesised once and cached); a clip takes a random
# stretch of one, with its own offset, face, motion and degradations, so clips stay distinct.
SPEECH_BANK = {"train": 1000, "holdout": 300}


def _split_code(split: str) -> int:
    if split not in SPLIT_CODES:
        raise ValueError(f"split must be one of {sorted(SPLIT_CODES)}, got {split!r}")
    return SPLIT_CODES[split]


def default_cache_dir() -> Path:
    return Path(os.environ.get("EDGE_SYNC_CACHE", Path.home() / ".cache" / "edge-sync"))


# --- speech ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Utterance:
    text: str
    voice: str
    speed: int
    pitch: int

    def key(self) -> str:
        return hashlib.sha256(f"{self.text}|{self.voice}|{self.speed}|{self.pitch}".encode()).hexdigest()[:20]


def random_utterance(rng: np.random.Generator, split: str) -> Utterance:
    """A sentence and a voice; hold-out sentences use every other word of the list shifted by one, so their
    word sequences never occur in training, and hold-out voices/variants are disjoint from training's."""
    holdout = split == "holdout"
    words = WORDS[1::2] if holdout else WORDS[0::2]
    n = int(rng.integers(6, 13))
    chosen = [str(w) for w in rng.choice(words, n)]
    chosen.insert(int(rng.integers(1, n)), str(rng.choice(VERBS)))
    voices, variants = (HOLDOUT_VOICES, HOLDOUT_VARIANTS) if holdout else (TRAIN_VOICES, TRAIN_VARIANTS)
    voice = f"{rng.choice(voices)}+{rng.choice(variants)}"
    speed = int(rng.integers(125, 200)) if not holdout else int(rng.integers(135, 190))
    pitch = int(rng.integers(25, 80))
    return Utterance(" ".join(chosen), voice, speed, pitch)


def synthesise(utt: Utterance, cache_dir: Path | None = None) -> np.ndarray:
    """espeak-ng speech as float32 mono 16 kHz, cached as int16 .npy (synthesised once per machine)."""
    cache = (cache_dir or default_cache_dir()) / "speech"
    path = cache / f"{utt.key()}.npy"
    if path.is_file():
        cached = np.load(path)
        return cached.astype(np.float32) / 32767.0 if cached.dtype == np.int16 else cached.astype(np.float32)
    if shutil.which("espeak-ng") is None:
        raise EdgeSyncError("espeak-ng is not installed; install it with: apt-get install espeak-ng "
                            "(scripts/setup.sh does)")
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "u.wav"
        subprocess.run(["espeak-ng", "-v", utt.voice, "-s", str(utt.speed), "-p", str(utt.pitch), "-w", str(wav),
                        utt.text], check=True, capture_output=True)
        with wave.open(str(wav), "rb") as w:
            rate = w.getframerate()
            raw = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64) / 32768.0
    speech16 = np.round(np.clip(resample(raw, rate, AUDIO_RATE), -1, 1) * 32767).astype(np.int16)
    cache.mkdir(parents=True, exist_ok=True)
    fd, tmp_path = tempfile.mkstemp(dir=cache, suffix=".npy.tmp")
    os.close(fd)
    with open(tmp_path, "wb") as f:
        np.save(f, speech16)
    os.replace(tmp_path, path)
    return speech16.astype(np.float32) / 32767.0


# --- what the mouth does ----------------------------------------------------------------------------
def articulation(audio: np.ndarray, frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame jaw opening and lip spread in 0..1 from the speech itself.

    Opening follows loudness (vowels open the jaw); spread follows the balance of 2-5 kHz against
    300-1000 Hz energy (fricatives and front vowels spread the lips, rounded back vowels do not).
    """
    audio = np.pad(audio, (0, max(0, frames * SAMPLES_PER_FRAME - len(audio))))[: frames * SAMPLES_PER_FRAME]
    chunks = audio.reshape(frames, SAMPLES_PER_FRAME).astype(np.float64)
    spec = np.abs(np.fft.rfft(chunks * np.hanning(SAMPLES_PER_FRAME), axis=1)) ** 2
    freqs = np.fft.rfftfreq(SAMPLES_PER_FRAME, 1 / AUDIO_RATE)
    low = spec[:, (freqs >= 300) & (freqs < 1000)].sum(1) + 1e-9
    high = spec[:, (freqs >= 2000) & (freqs < 5000)].sum(1) + 1e-9
    level = np.log10(np.sqrt((chunks ** 2).mean(1)) + 1e-4)
    lo, hi = np.percentile(level, 10), np.percentile(level, 97)
    opening = np.clip((level - lo) / max(hi - lo, 1e-6), 0, 1)
    spread = np.clip((np.log10(high / low) + 1.5) / 2.5, 0, 1) * (opening > 0.05)
    smooth = np.array([0.2, 0.6, 0.2])
    return np.convolve(opening, smooth, "same"), np.convolve(spread, smooth, "same")


# --- rendering --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Look:
    """Per-clip appearance; train and hold-out draw from different ranges."""

    skin: np.ndarray  # RGB
    lip: np.ndarray
    cavity: np.ndarray
    mouth_width: float  # px at scale 1
    max_open: float
    lip_thickness: tuple[float, float]
    teeth: bool
    light_dir: float
    light_strength: float
    scale: float
    noise: float
    blur: float
    jpeg_quality: int
    stubble: float


def random_look(rng: np.random.Generator, split: str) -> Look:
    holdout = split == "holdout"
    # skin tones along a light-dark axis; hold-out uses the gaps between training's bands
    base = rng.uniform(0.0, 1.0)
    band = (np.floor(base * 5) + (0.5 if holdout else 0.0) + rng.uniform(0, 0.5)) / 5.5
    skin = np.array([235, 195, 165]) * (1 - band) + np.array([95, 60, 40]) * band
    lip_hue = rng.uniform(0.55, 0.8) if not holdout else rng.uniform(0.8, 0.95)
    lip = skin * lip_hue + np.array([160, 40, 60]) * (1 - lip_hue) * rng.uniform(0.7, 1.0)
    return Look(
        skin=np.clip(skin + rng.normal(0, 8, 3), 0, 255), lip=np.clip(lip, 0, 255),
        cavity=np.clip(np.array([60, 20, 25]) * rng.uniform(0.5, 1.3), 0, 255),
        mouth_width=float(rng.uniform(44, 76)), max_open=float(rng.uniform(14, 32)),
        lip_thickness=(float(rng.uniform(3, 8)), float(rng.uniform(4, 10))), teeth=bool(rng.random() < 0.75),
        light_dir=float(rng.uniform(0, 2 * np.pi)),
        light_strength=float(rng.uniform(0.05, 0.35) if not holdout else rng.uniform(0.35, 0.5)),
        scale=float(rng.uniform(0.8, 1.2)), noise=float(rng.uniform(0, 8)), blur=float(rng.uniform(0, 1.2)),
        jpeg_quality=int(rng.integers(35, 95)), stubble=float(rng.uniform(0, 0.5) if rng.random() < 0.3 else 0.0),
    )


def _lit_background(look: Look, size: int, rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
    gradient = 1 + look.light_strength * (np.cos(look.light_dir) * xx + np.sin(look.light_dir) * yy) * 2
    img = look.skin[None, None, :] * gradient[..., None]
    # nose shadow at the top, chin shading at the bottom: cues a detector-cropped mouth really has
    img *= (1 - 0.25 * np.exp(-((xx * 3) ** 2 + ((yy + 0.55) * 5) ** 2)))[..., None]
    img *= (1 - 0.15 * np.clip(yy - 0.3, 0, 1) * 4)[..., None]
    if look.stubble:
        img *= (1 - look.stubble * 0.3 * (rng.random((size, size)) > 0.7) * (yy > 0.1))[..., None]
    return img


def render_mouth(look: Look, opening: float, spread: float, background: np.ndarray, pose: tuple[float, float, float],
                 size: int = MOUTH.size) -> np.ndarray:
    """One 112x112 RGB frame: lips around a cavity whose height is ``opening`` (0..1)."""
    canvas = background.copy()
    s = look.scale
    cx, cy = size / 2, size / 2 + 4
    half_w = look.mouth_width * s * (0.85 + 0.3 * spread - 0.1 * opening) / 2
    gap = look.max_open * s * opening
    up, low = look.lip_thickness[0] * s, look.lip_thickness[1] * s
    xs = np.linspace(-1, 1, 24)
    arc = np.sqrt(np.clip(1 - xs ** 2, 0, 1))
    upper_outer = np.stack([cx + xs * half_w, cy - gap / 2 - up * arc - 1.5 * arc ** 4 * s], 1)
    upper_inner = np.stack([cx + xs * half_w * 0.92, cy - gap / 2 * arc], 1)
    lower_inner = np.stack([cx + xs * half_w * 0.92, cy + gap / 2 * arc], 1)
    lower_outer = np.stack([cx + xs * half_w, cy + gap / 2 + low * arc], 1)
    outer = np.concatenate([upper_outer, lower_outer[::-1]]).astype(np.int32)
    cv2.fillPoly(canvas, [outer], look.lip.tolist(), lineType=cv2.LINE_AA)
    if gap >= 1.0:
        cavity = np.concatenate([upper_inner, lower_inner[::-1]]).astype(np.int32)
        cv2.fillPoly(canvas, [cavity], look.cavity.tolist(), lineType=cv2.LINE_AA)
        if look.teeth:
            teeth_h = min(gap * 0.35, 5 * s)
            pts = np.concatenate([upper_inner[3:-3], (upper_inner[3:-3] + [0, teeth_h])[::-1]]).astype(np.int32)
            cv2.fillPoly(canvas, [pts], (230, 225, 215), lineType=cv2.LINE_AA)
        if gap > 6:
            cv2.ellipse(canvas, (int(cx), int(cy + gap * 0.3)), (int(half_w * 0.5), int(gap * 0.2)), 0, 0, 360,
                        (170, 70, 80), -1, lineType=cv2.LINE_AA)
    dx, dy, angle = pose
    m = cv2.getRotationMatrix2D((size / 2, size / 2), angle, 1.0)
    m[:, 2] += (dx, dy)
    return cv2.warpAffine(canvas, m, (size, size), borderMode=cv2.BORDER_REFLECT)


def _degrade(frame: np.ndarray, look: Look, rng: np.random.Generator) -> np.ndarray:
    if look.blur > 0.3:
        frame = cv2.GaussianBlur(frame, (0, 0), look.blur)
    frame = frame + rng.normal(0, look.noise, frame.shape)
    frame = np.clip(frame, 0, 255).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", frame[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, look.jpeg_quality])
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1] if ok else frame


def render_video(look: Look, opening: np.ndarray, spread: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """[T, 112, 112, 3] uint8 RGB with slow head motion (a smoothed random walk) and light flicker."""
    frames = len(opening)
    size = MOUTH.size
    background = _lit_background(look, size, rng).astype(np.float32)
    walk = np.cumsum(rng.normal(0, 0.6, (frames, 3)), axis=0)
    walk -= walk.mean(0)
    walk = np.clip(walk * [1.0, 0.7, 1.2], [-7, -5, -8], [7, 5, 8])
    flicker = 1 + np.cumsum(rng.normal(0, 0.004, frames))
    out = np.empty((frames, size, size, 3), np.uint8)
    for t in range(frames):
        frame = render_mouth(look, float(opening[t]), float(spread[t]), background * flicker[t], tuple(walk[t]))
        out[t] = _degrade(frame, look, rng)
    return out


# --- clips with ground truth -----------------------------------------------------------------------
@dataclass
class SyntheticClip:
    audio: np.ndarray  # float32 [1, 13, 4T] MFCC
    video: np.ndarray  # float32 [3, T, 112, 112] normalised
    offsets: np.ndarray  # int64 [T], k per frame (k > 0: sound late)
    frames_uint8: np.ndarray  # [T, 112, 112, 3] RGB, for writing files / inspection
    waveform: np.ndarray  # float32 [T * 640 + 240] shifted audio actually used
    utterance: Utterance


def offset_track(rng: np.random.Generator, frames: int, max_offset: int, drift_prob: float) -> np.ndarray:
    """Constant k for most clips; for ``drift_prob`` of them a linear drift of up to 4 frames over the clip."""
    k0 = int(rng.integers(-max_offset, max_offset + 1))
    if rng.random() >= drift_prob:
        return np.full(frames, k0, np.int64)
    k1 = int(np.clip(k0 + rng.integers(-4, 5), -max_offset, max_offset))
    return np.round(np.linspace(k0, k1, frames)).astype(np.int64)


def shifted_audio(speech: np.ndarray, start_frame: int, offsets: np.ndarray) -> np.ndarray:
    """Audio for video frames start..start+T where frame t carries speech frame (start + t - k_t).

    k > 0 delays the sound: at video frame t we hear what the mouth did k frames earlier. Returns
    T*640 + 240 samples (the MFCC of 4T steps needs the extra tail), zeros outside the speech.
    """
    frames = len(offsets)
    out = np.zeros(frames * SAMPLES_PER_FRAME + 240, np.float32)
    for t in range(frames + 1):
        src = (start_frame + t - int(offsets[min(t, frames - 1)])) * SAMPLES_PER_FRAME
        n = SAMPLES_PER_FRAME if t < frames else 240
        lo, hi = max(src, 0), min(src + n, len(speech))
        if hi > lo:
            out[t * SAMPLES_PER_FRAME + lo - src: t * SAMPLES_PER_FRAME + hi - src] = speech[lo:hi]
    return out


def make_clip(seed: int, index: int, split: str = "train", frames: int = 50, max_offset: int = MAX_OFFSET,
              drift_prob: float = 0.2, cache_dir: Path | None = None, offset: int | None = None,
              bank_size: int | None = None) -> SyntheticClip:
    """Clip ``index`` of the (seed, split) set; ``offset`` forces a constant offset (for tests and demos).
    ``bank_size`` uses only the first utterances of the split's speech bank (e.g. where espeak-ng is absent
    and only a copied part of the bank is available)."""
    rng = np.random.default_rng([seed, index, _split_code(split)])
    bank_index = int(rng.integers(bank_size or SPEECH_BANK[split]))
    utt = random_utterance(np.random.default_rng([_split_code(split), bank_index, 7919]), split)
    pad = np.zeros(int(rng.integers(0, 8)) * SAMPLES_PER_FRAME, np.float32)
    speech = np.concatenate([pad, synthesise(utt, cache_dir), pad])
    speech_frames = len(speech) // SAMPLES_PER_FRAME
    start = int(rng.integers(0, max(1, speech_frames - frames + 1)))
    offsets = (np.full(frames, offset, np.int64) if offset is not None
               else offset_track(rng, frames, max_offset, drift_prob))
    opening, spread = articulation(speech[start * SAMPLES_PER_FRAME:], frames)
    look = random_look(rng, split)
    video_u8 = render_video(look, opening, spread, rng)
    audio = shifted_audio(speech, start, offsets)
    mfcc = audio_to_mfcc_input(audio, frames)[0]
    return SyntheticClip(audio=mfcc, video=MOUTH.normalise(video_u8), offsets=offsets, frames_uint8=video_u8,
                         waveform=audio, utterance=utt)


class SyntheticSyncDataset:
    """A torch-style Dataset of synthetic clips: item i is always the same clip for a given (seed, split).

    Items are dicts of torch tensors in the shared sample convention: audio [1,13,4T], video [3,T,112,112],
    offsets int64 [T], valid bool [T].
    """

    def __init__(self, count: int, frames: int = 50, seed: int = 0, split: str = "train",
                 max_offset: int = MAX_OFFSET, drift_prob: float = 0.2, cache_dir: Path | None = None,
                 bank_size: int | None = None) -> None:
        _split_code(split)
        self.bank_size = bank_size
        if count < 1 or frames < 1:
            raise ValueError("count and frames must be >= 1")
        self.count, self.frames, self.seed, self.split = count, frames, seed, split
        self.max_offset, self.drift_prob, self.cache_dir = max_offset, drift_prob, cache_dir

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> dict:
        import torch

        if not 0 <= index < self.count:
            raise IndexError(index)
        clip = make_clip(self.seed, index, self.split, self.frames, self.max_offset, self.drift_prob, self.cache_dir,
                         bank_size=self.bank_size)
        return {"audio": torch.from_numpy(clip.audio), "video": torch.from_numpy(clip.video),
                "offsets": torch.from_numpy(clip.offsets), "valid": torch.ones(self.frames, dtype=torch.bool)}


def prepare_speech_bank(split: str = "train", cache_dir: Path | None = None, progress: bool = True,
                        bank_size: int | None = None) -> int:
    """Synthesise every utterance of a split's bank up front (about 0.1 s each), so data loading never waits
    on espeak-ng. Returns how many were newly synthesised."""
    from tqdm import tqdm

    cache = (cache_dir or default_cache_dir()) / "speech"
    made = 0
    for i in tqdm(range(bank_size or SPEECH_BANK[split]), desc=f"speech bank ({split})", disable=not progress,
                  unit="utt"):
        utt = random_utterance(np.random.default_rng([_split_code(split), i, 7919]), split)
        if not (cache / f"{utt.key()}.npy").is_file():
            synthesise(utt, cache_dir)
            made += 1
    return made
