"""MFCC exactly as ``python_speech_features.mfcc`` computes it, in numpy only.

SyncNet was trained on that library's defaults, so the audio contract is defined by it; writing it here
keeps the runtime free of scipy and of an unmaintained dependency (it stays a test oracle only).
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from edge_sync.spec import AUDIO_RATE, MFCC, SAMPLES_PER_FRAME, MfccParams

# syncnet_python feeds scipy.io.wavfile's int16 samples straight into mfcc; decoded float audio in
# [-1, 1] is scaled by this so the first coefficient (log energy) matches what the legacy model saw.
INT16_SCALE = 32768.0


def _hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


@lru_cache(maxsize=8)
def mel_filterbank(nfilt: int, nfft: int, sample_rate: int, lowfreq: float, highfreq: float) -> np.ndarray:
    """Triangular filters on FFT bins, with the same integer bin edges as the reference library."""
    mels = np.linspace(_hz_to_mel(lowfreq), _hz_to_mel(highfreq), nfilt + 2)
    edges = np.floor((nfft + 1) * _mel_to_hz(mels) / sample_rate)
    bins = np.arange(nfft // 2 + 1, dtype=np.float64)[None, :]
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        rising = np.where((bins >= lo) & (bins < mid), (bins - lo) / (mid - lo), 0.0)
        falling = np.where((bins >= mid) & (bins < hi), (hi - bins) / (hi - mid), 0.0)
    bank = rising + falling
    bank.setflags(write=False)
    return bank


@lru_cache(maxsize=8)
def _dct_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Orthonormal DCT-II rows 0..n_out-1 (scipy.fftpack.dct(type=2, norm='ortho'))."""
    k = np.arange(n_out)[:, None]
    n = np.arange(n_in)[None, :]
    mat = np.cos(np.pi * k * (2 * n + 1) / (2 * n_in)) * np.sqrt(2.0 / n_in)
    mat[0] /= np.sqrt(2.0)
    mat.setflags(write=False)
    return mat


def cepstral_offset(band_gain: np.ndarray, params: MfccParams = MFCC) -> np.ndarray:
    """The change of every MFCC coefficient [numcep] that a gain ``band_gain`` [nfilt] (natural log of power, per mel
    band) causes when constant in time: the liftered DCT of the gains, and for the energy coefficient the log of their
    mean power gain (exact for a flat gain; an estimate for a tilted one, whose effect on energy depends on the sound).
    Why: a microphone, a room or a codec acts on speech as such a gain, and MFCCs turn it into a constant offset."""
    gain = np.asarray(band_gain, np.float64)
    if gain.shape != (params.nfilt,):
        raise ValueError(f"band_gain must have one value per mel band ({params.nfilt}), got shape {gain.shape}")
    offset = _dct_matrix(params.nfilt, params.numcep) @ gain
    n = np.arange(params.numcep)
    offset *= 1.0 + (params.ceplifter / 2.0) * np.sin(np.pi * n / params.ceplifter)
    if params.append_energy:
        offset[0] = np.log(np.mean(np.exp(gain)))
    return offset.astype(np.float32)


def _frames(signal: np.ndarray, frame_len: int, frame_step: int) -> np.ndarray:
    """Zero-pad the tail so the last partial window counts, then view as [N, frame_len] windows."""
    n = len(signal)
    count = 1 if n <= frame_len else 1 + int(np.ceil((n - frame_len) / frame_step))
    padded = np.zeros((count - 1) * frame_step + frame_len, dtype=np.float64)
    padded[:n] = signal
    windows = np.lib.stride_tricks.sliding_window_view(padded, frame_len)
    return windows[::frame_step]


def _round_half_up(x: float) -> int:
    return int(np.floor(x + 0.5))


def resample(signal: np.ndarray, source_rate: int, target_rate: int = AUDIO_RATE,
             zero_crossings: int = 32) -> np.ndarray:
    """Band-limited resampling with a Kaiser-windowed sinc (numpy only, any rate ratio).

    Used when callers hand raw arrays at another rate; decoded files are resampled by PyAV instead.
    """
    if source_rate <= 0 or target_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {source_rate} -> {target_rate}")
    x = np.asarray(signal, dtype=np.float64)
    if source_rate == target_rate or len(x) == 0:
        return x.copy()
    ratio = target_rate / source_rate
    cutoff = min(1.0, ratio)  # low-pass at the lower Nyquist, in units of the source Nyquist
    half_width = int(np.ceil(zero_crossings / cutoff))
    n_out = int(np.floor(len(x) * ratio))
    out = np.empty(n_out, dtype=np.float64)
    taps = np.arange(-half_width, half_width + 1)
    beta = 8.6
    padded = np.concatenate([np.zeros(half_width + 1), x, np.zeros(half_width + 2)])
    chunk = 4096
    for start in range(0, n_out, chunk):
        t = np.arange(start, min(start + chunk, n_out)) / ratio  # positions in source samples
        base = np.floor(t).astype(np.int64)
        idx = base[:, None] + taps[None, :]
        dist = t[:, None] - idx
        window = np.i0(beta * np.sqrt(np.clip(1.0 - (dist / (half_width + 1)) ** 2, 0.0, 1.0))) / np.i0(beta)
        kernel = cutoff * np.sinc(cutoff * dist) * window
        out[start:start + len(t)] = (padded[idx + half_width + 1] * kernel).sum(axis=1)
    return out


# no audio convention reaches this (floats are in [-1, 1], int16 in +-32768): beyond it the power spectrum overflows
MAX_ABS_SAMPLE = float(2 ** 20)


def _check_finite_audio(x: np.ndarray) -> None:
    """NaN/inf, or magnitudes that would overflow the power spectrum, as one clear error."""
    if not np.isfinite(x).all():
        raise ValueError("audio contains NaN or inf samples")
    peak = float(np.abs(x).max()) if x.size else 0.0
    if peak > MAX_ABS_SAMPLE:
        raise ValueError(f"audio samples reach {peak:.3g}: expected float samples in [-1, 1] (or int16 values); "
                         "rescale the signal")


def float_samples(signal: np.ndarray, what: str) -> np.ndarray:
    """Mono samples as float64 in [-1, 1]: floats as given, integers scaled by 1/32768 (int16 full scale).
    Raises on other shapes, dtypes, NaN and inf, naming ``what`` got them."""
    x = np.asarray(signal)
    if x.ndim != 1:
        raise ValueError(f"{what} expects a mono 1-D signal, got shape {x.shape}; downmix channels first")
    if np.issubdtype(x.dtype, np.integer):
        x = x.astype(np.float64) / INT16_SCALE
    elif np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    else:
        raise TypeError(f"{what} expects int or float samples, got {x.dtype}")
    _check_finite_audio(x)
    return x


def mfcc(signal: np.ndarray, sample_rate: int = AUDIO_RATE, params: MfccParams = MFCC,
         previous: float | None = None) -> np.ndarray:
    """MFCC [N, 13] of a mono signal, equal to ``python_speech_features.mfcc(signal, 16000)``.

    int16 input is used as is (the legacy convention); float input as given. Other sample rates are
    resampled to 16 kHz first, because the model's 4-steps-per-frame contract assumes it. ``previous`` is the
    sample before ``signal`` when it continues a longer one (streaming): pre-emphasis then matches the whole
    signal's, so chunks give exactly the whole signal's MFCC.
    """
    x = np.asarray(signal)
    if x.ndim != 1:
        raise ValueError(f"mfcc expects a mono 1-D signal, got shape {x.shape}; downmix channels first")
    if x.size == 0:
        raise ValueError("mfcc got an empty signal")
    if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
        raise TypeError(f"mfcc expects int or float samples, got {x.dtype}")
    x = x.astype(np.float64)
    _check_finite_audio(x)
    if sample_rate != params.sample_rate:
        x = resample(x, sample_rate, params.sample_rate)
    rate = params.sample_rate
    first = x[:1] if previous is None else x[:1] - params.preemph * float(previous)
    emphasised = np.concatenate([first, x[1:] - params.preemph * x[:-1]])
    frames = _frames(emphasised, _round_half_up(params.winlen * rate), _round_half_up(params.winstep * rate))
    power = np.square(np.abs(np.fft.rfft(frames, params.nfft))) / params.nfft
    eps = np.finfo(float).eps
    energy = power.sum(axis=1)
    energy = np.where(energy == 0, eps, energy)
    bank = mel_filterbank(params.nfilt, params.nfft, rate, params.lowfreq, params.highfreq or rate / 2)
    feat = power @ bank.T
    feat = np.where(feat == 0, eps, feat)
    cep = np.log(feat) @ _dct_matrix(params.nfilt, params.numcep).T
    n = np.arange(params.numcep)
    cep *= 1.0 + (params.ceplifter / 2.0) * np.sin(np.pi * n / params.ceplifter)
    if params.append_energy:
        cep[:, 0] = np.log(energy)
    return cep


def audio_to_mfcc_input(audio: np.ndarray, frames: int, sample_rate: int = AUDIO_RATE) -> np.ndarray:
    """Float audio in [-1, 1] for ``frames`` video frames -> model input float32 [1, 1, 13, 4*frames].

    4T MFCC steps need 640T + 240 samples (the last 25 ms window starts 10 ms before the clip ends): real
    samples are used when the audio runs on, otherwise the tail window is zero-padded as the reference
    library pads its last frame. int16 scaling reproduces the legacy convention.
    """
    audio = np.asarray(audio, dtype=np.float64)
    if sample_rate != AUDIO_RATE:
        audio = resample(audio, sample_rate, AUDIO_RATE)
    per_frame = SAMPLES_PER_FRAME
    if len(audio) < frames * per_frame:
        raise ValueError(f"audio has {len(audio)} samples, need {frames * per_frame} for {frames} frames; "
                         "the audio is shorter than the video")
    needed = frames * per_frame + _round_half_up(MFCC.winlen * AUDIO_RATE) - _round_half_up(MFCC.winstep * AUDIO_RATE)
    audio = np.pad(audio[:needed], (0, max(0, needed - len(audio))))
    feats = mfcc(audio * INT16_SCALE, AUDIO_RATE)
    return np.ascontiguousarray(feats[: 4 * frames].T[None, None].astype(np.float32))
