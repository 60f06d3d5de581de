"""The tensor contract: the one place that defines rates, shapes, offsets and preprocessing.

Every other module (features, models, exporters, runtimes) reads its numbers from here, and
every artifact manifest records :func:`contract_dict` so a runtime can refuse a mismatched model.
numpy only: device apps import this without PyTorch.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

SPEC_VERSION = 1

# --- rates ------------------------------------------------------------------------------------
VIDEO_FPS = 25
AUDIO_RATE = 16_000
MFCC_RATE = 100  # python_speech_features default hop of 10 ms
MFCC_PER_FRAME = MFCC_RATE // VIDEO_FPS  # 4 MFCC steps per video frame
SAMPLES_PER_FRAME = AUDIO_RATE // VIDEO_FPS  # 640 audio samples per video frame
FRAME_MS = 1000 // VIDEO_FPS  # 40 ms

# --- offsets ----------------------------------------------------------------------------------
MAX_OFFSET = 15  # K: offsets -K..K frames (+-600 ms)
LEGACY_VSHIFT = 15  # syncnet_python's default search range for the legacy model


def num_offsets(max_offset: int = MAX_OFFSET) -> int:
    """2K+1 offset classes."""
    return 2 * max_offset + 1


def offset_values(max_offset: int = MAX_OFFSET) -> np.ndarray:
    """Offsets in frames for each class index: index i <-> offset i - K."""
    return np.arange(-max_offset, max_offset + 1)


def audio_delay_ms(offset_frames: float) -> float:
    """Offset k > 0 means the sound comes late by k frames = 40 k ms."""
    return float(offset_frames) * FRAME_MS


def legacy_av_offset(offset_frames: int) -> int:
    """syncnet_python's 'AV offset' for our offset k.

    syncnet_python computes ``offset = vshift - argmin`` where argmin indexes audio frame
    ``t + (argmin - vshift)`` matched to video frame t. Our k is that audio index shift, so the
    legacy number is its negation: sound late by 2 frames prints ``AV offset: -2`` there.
    """
    return -int(offset_frames)


def offset_from_legacy(av_offset: int) -> int:
    """Inverse of :func:`legacy_av_offset`."""
    return -int(av_offset)


# --- audio features ---------------------------------------------------------------------------
@dataclass(frozen=True)
class MfccParams:
    """python_speech_features.mfcc defaults, which SyncNet was trained with."""

    sample_rate: int = AUDIO_RATE
    winlen: float = 0.025
    winstep: float = 0.01
    numcep: int = 13
    nfilt: int = 26
    nfft: int = 512
    lowfreq: float = 0.0
    highfreq: float | None = None  # None -> sample_rate / 2
    preemph: float = 0.97
    ceplifter: int = 22
    append_energy: bool = True


MFCC = MfccParams()
N_MFCC = MFCC.numcep


@dataclass(frozen=True)
class AudioInput:
    """One audio input kind a model can take; ``shape`` uses T for the number of video frames."""

    name: str
    shape: tuple[str, ...]
    steps_per_frame: int
    description: str


AUDIO_INPUTS: dict[str, AudioInput] = {
    "mfcc": AudioInput("mfcc", ("B", "1", "13", "4T"), MFCC_PER_FRAME,
                       "python_speech_features MFCC, 13 coeffs at 100 Hz, no normalisation"),
    "logmel": AudioInput("logmel", ("B", "1", "64", "4T"), MFCC_PER_FRAME,
                         "log mel spectrogram, 64 bands 125-7500 Hz, 25 ms window, 10 ms hop (VGGish-style)"),
    "waveform": AudioInput("waveform", ("B", "1", "640T"), SAMPLES_PER_FRAME,
                           "raw 16 kHz mono float waveform in [-1, 1] (wav2vec2 / HuBERT trunks)"),
}
N_MELS = 64


# --- video preprocessing ----------------------------------------------------------------------
@dataclass(frozen=True)
class VideoPreprocessing:
    """How crops become model input; recorded in every manifest so a runtime reproduces it."""

    name: str
    size: int
    colour_order: str  # "RGB" or "BGR"
    mean: tuple[float, float, float]  # subtracted from pixel values in 0..255
    std: tuple[float, float, float]  # divides after the mean
    crop: str  # what the crop is centred on

    def normalise(self, frames_uint8: np.ndarray) -> np.ndarray:
        """[T, H, W, 3] uint8 RGB crops -> float32 [3, T, H, W] model input."""
        if frames_uint8.ndim != 4 or frames_uint8.shape[-1] != 3:
            raise ValueError(f"expected crops [T, H, W, 3], got shape {frames_uint8.shape}")
        channels = frames_uint8.transpose(3, 0, 1, 2)  # reorder the uint8 crops, then one float copy
        if self.colour_order == "BGR":
            channels = channels[::-1]
        # in place: a window is ~20 MB as float32, and temporaries would triple the runtime's peak memory
        x = channels.astype(np.float32, order="C")
        x -= np.asarray(self.mean, np.float32)[:, None, None, None]
        x /= np.asarray(self.std, np.float32)[:, None, None, None]
        return x


MOUTH = VideoPreprocessing(
    name="mouth112", size=112, colour_order="RGB", mean=(127.5, 127.5, 127.5), std=(127.5, 127.5, 127.5),
    crop="lower half of the tracked face box, square, centred on the mouth")
LEGACY_FACE = VideoPreprocessing(
    name="legacy_face224", size=224, colour_order="BGR", mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0),
    crop="whole tracked face box, square, as syncnet_python's pipeline (BGR 0..255, no normalisation)")
PREPROCESSING: dict[str, VideoPreprocessing] = {p.name: p for p in (MOUTH, LEGACY_FACE)}


# --- model input/output contract ----------------------------------------------------------------
@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str
    shape: tuple[str, ...]
    description: str = ""


@dataclass(frozen=True)
class ModelContract:
    """Inputs and outputs of every exported sync model (teacher, student, converted legacy)."""

    audio_input: str = "mfcc"
    video: VideoPreprocessing = MOUTH
    max_offset: int = MAX_OFFSET
    min_frames: int = 1
    extra: dict[str, Any] = field(default_factory=dict)
    # the artifact also outputs the per-frame unit embeddings the correlation compares (audio_emb, video_emb), so
    # the evidence null is read off them instead of running the model again (edge_sync.runtimes.evidence). An
    # optional capability: artifacts without it run as before, their null streamed
    embeddings: bool = False

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        a = AUDIO_INPUTS[self.audio_input]
        return (
            TensorSpec("audio", "float32", a.shape, a.description),
            TensorSpec("video", "float32", ("B", "3", "T", str(self.video.size), str(self.video.size)),
                       f"{self.video.name}: {self.video.crop}"),
        )

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        n = str(num_offsets(self.max_offset))
        return (
            TensorSpec("sync_probs", "float32", ("B", n, "T"), "softmax over offsets -K..K per video frame"),
            TensorSpec("correlation", "float32", ("B", n, "T"),
                       "cosine similarity of video frame t with audio frame t+k (0 where t+k is outside the clip)"),
        ) + (EMBEDDING_OUTPUTS if self.embeddings else ())

    def to_dict(self) -> dict[str, Any]:
        return contract_dict(self)


EMBEDDING_OUTPUTS = (
    TensorSpec("audio_emb", "float32", ("B", "D", "T"), "unit (L2-normalised) audio embedding per video frame"),
    TensorSpec("video_emb", "float32", ("B", "D", "T"), "unit video embedding per frame; correlation[k, t] is "
               "video_emb[:, t] . audio_emb[:, t+k]"),
)
EMBEDDING_NAMES = tuple(t.name for t in EMBEDDING_OUTPUTS)
OUTPUT_NAMES = ("sync_probs", "correlation")  # every artifact's outputs (ModelContract.outputs' first two)


def output_names(embeddings: bool = False) -> tuple[str, ...]:
    """The outputs a backend session returns, in order: the contract's two, then the embeddings where read."""
    return OUTPUT_NAMES + (EMBEDDING_NAMES if embeddings else ())


def contract_dict(contract: ModelContract) -> dict[str, Any]:
    """JSON-ready description of the contract, for manifests and checkpoints."""
    return {
        "spec_version": SPEC_VERSION,
        "video_fps": VIDEO_FPS,
        "audio_rate": AUDIO_RATE,
        "audio_input": contract.audio_input,
        "mfcc": asdict(MFCC),
        "video_preprocessing": asdict(contract.video),
        "max_offset": contract.max_offset,
        "min_frames": contract.min_frames,
        "offset_sign": "k > 0: sound comes late by k frames (audio_delay_ms = 40 k); legacy av_offset = -k",
        "inputs": [asdict(t) for t in contract.inputs],
        "outputs": [asdict(t) for t in contract.outputs],
        **({"embeddings": True} if contract.embeddings else {}),  # absent (False) in every artifact before it
        **contract.extra,
    }


def audio_steps(frames: int, audio_input: str = "mfcc") -> int:
    """Audio time steps that go with ``frames`` video frames (audio time = 4 T for MFCC)."""
    return frames * AUDIO_INPUTS[audio_input].steps_per_frame


def example_inputs(contract: ModelContract, frames: int, batch: int = 1,
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Real-like random float32 inputs in the contract's shapes and ranges (MFCC/log-mel scale or a [-1, 1]
    waveform; video in [-1, 1] or 0..255): what export checks, parity and benchmarks feed a model."""
    rng = np.random.default_rng(seed)
    a_kind = AUDIO_INPUTS[contract.audio_input]
    shape = [batch] + [int(s) if s.isdigit() else 0 for s in a_kind.shape[1:]]
    shape[-1] = audio_steps(frames, contract.audio_input)
    scale = 0.1 if contract.audio_input == "waveform" else 10.0
    audio = (rng.standard_normal(shape) * scale).astype(np.float32)
    size = contract.video.size
    video = rng.random((batch, 3, frames, size, size), dtype=np.float32)
    video = video * 255.0 if contract.video.std[0] == 1.0 else video * 2 - 1
    return audio, video


def check_pair(audio: np.ndarray, video: np.ndarray, contract: ModelContract | None = None) -> int:
    """Validate an (audio, video) input pair against the contract and return T.

    Raises ValueError with what is wrong and how to fix it; never lets a malformed pair reach a model.
    """
    contract = contract or ModelContract()
    a_kind = AUDIO_INPUTS[contract.audio_input]
    for name, arr in (("audio", audio), ("video", video)):
        if not isinstance(arr, np.ndarray):
            raise TypeError(f"{name} must be a numpy array, got {type(arr).__name__}")
        if arr.dtype != np.float32:
            raise TypeError(f"{name} must be float32, got {arr.dtype}; convert with .astype(np.float32)")
        if not np.isfinite(arr).all():
            raise ValueError(f"{name} contains NaN or inf values; clean the input before running the model")
    size = contract.video.size
    if video.ndim != 5 or video.shape[1] != 3 or video.shape[3:] != (size, size):
        raise ValueError(f"video must be [B, 3, T, {size}, {size}], got {list(video.shape)}")
    frames = video.shape[2]
    if len(a_kind.shape) != audio.ndim:
        raise ValueError(f"audio must be {list(a_kind.shape)}, got {list(audio.shape)}")
    if contract.audio_input in ("mfcc", "logmel"):
        bands = int(a_kind.shape[2])
        if audio.shape[1] != 1 or audio.shape[2] != bands:
            raise ValueError(f"audio must be [B, 1, {bands}, 4T], got {list(audio.shape)}")
    if audio.shape[0] != video.shape[0]:
        raise ValueError(f"audio batch {audio.shape[0]} != video batch {video.shape[0]}")
    if audio.shape[-1] != audio_steps(frames, contract.audio_input):
        raise ValueError(
            f"audio has {audio.shape[-1]} steps but video has {frames} frames; expected "
            f"{audio_steps(frames, contract.audio_input)} ({a_kind.steps_per_frame} per frame at "
            f"{VIDEO_FPS} fps); trim both to the same duration")
    if frames < contract.min_frames:
        raise ValueError(f"clip has {frames} frames; this model needs at least {contract.min_frames}")
    return frames
