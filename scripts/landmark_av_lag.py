#!/usr/bin/env python3
"""Model-free audio-visual lag of real talking-face clips, from face landmarks and the audio envelope.

What it measures
----------------
For each clip: by how many milliseconds / frames the sound is late (+) or early (-) relative to the mouth,
as the file is published (on the container's own pts timeline, so VFR video and streams that start at
different times are handled).

* Mouth opening per video frame: MediaPipe Face Mesh (tracking mode, one face), mean inner-lip gap over the
  landmark pairs 13/14, 82/87, 312/317, divided by the outer-eye-corner distance 33/263 (scale-free).
* Audio: 4th-order Butterworth band-pass 300-3000 Hz run forward and backward (zero phase, so no filter
  delay), RMS in 25 ms windows every 10 ms, box-smoothed over one frame period, linearly interpolated at
  (frame pts + L).
* Lag scan L = -200..+200 ms in 10 ms steps; corr(L) = Pearson(d mouth/dt at t_k, d envelope/dt at t_k + L),
  i.e. mouth-opening velocity against envelope slope (the "dlin" estimator). Positive lag = sound LATE.
* The peak lag of each clip is compared with the median peak lag of trusted, known-in-sync clips
  (--trusted, e.g. GRID and LRS3), because speech acoustics trail visible mouth movement by a few tens of
  ms even in perfect sync. relative_lag_frames = (lag_ms - calibration_ms) / frame period.
* Per clip also: peak_corr, sharpness (peak corr minus the mean corr 2 frames either side of the peak)
  and boot_sd_ms (SD of the peak lag over 300 moving-block bootstraps of 12-frame blocks) as the
  readability of the peak.

Why
---
It is an independent check, with no learned model involved, of whether a supposedly in-sync real clip has
its sound late or early as published. The edge-sync project used it to decide which real clips may serve as
the real-footage hold-out (scored as published) and which training clips need a realigning label offset
(scripts/real_published_offsets.tsv). A learned sync model cannot settle that question alone, because it
would be judging the very data it is trained and scored on.

Precision on trusted clips (23 trusted clips of ../shared/real_clips = 17 grid_* + 6 lrs3_*)
--------------------------------------------------------------------------------------------------------
* Calibration median +20 ms (the mouth leads the sound by 20 ms). SD 21 ms (0.54 frame at 25 fps),
  1.4826*MAD 30 ms, range -10..+60 ms: all 23 trusted clips lie within +-1 frame (+-40 ms) of the median.
  GRID alone has a median of 20 ms (SD 18), LRS3 alone 45 ms (SD 23). Continuous speech may sit about
  0.6 frame above the GRID-dominated median.
* Planted-shift self-check (--validate): the audio timeline is shifted by +-2 frames, and the relative lag
  is taken against the leave-one-out median of the other trusted clips. A shift counts as recovered when
  that lag is within +-1 frame of the planted one. Recovered: 10/10 on grid_lwbsza, grid_pwij3p, grid_lbbc2a,
  lrs3_s1 and lrs3_s2, and 44/46 over all 23 trusted clips. The only failure is grid_ans5 (peak corr 0.22,
  boot SD 131 ms), on both shifts.
* So the noise is about 0.5 frame SD (worst case 1 frame). A |relative lag| of 2 frames or more is
  resolved on clips with a clear peak (boot_sd_ms < 50 and the peak not at the +-200 ms edge of the scan).
  Lags beyond +-200 ms (e.g. offsets of 6-7 frames) fall outside the scan and show up as noisy or edge peaks.
* This script reproduced the first (research) run exactly: all 49 real/real-suspect clips of ../shared/real_clips,
  every shared column, and 44/46 with --validate. A run over those 49 clips takes about 1 minute on one CPU core.
* The single estimator cannot always tell a real offset from a bad peak. vr_1 (VFR, 48 dropped-frame gaps) reads
  -2.7 frames with a "clear" peak here, but the research level variant put it at +3.3. Treat a lone clear
  reading on such clips as a lead to check, not as proof.
* The detrended-level variant of the same correlation was rejected: its trusted SD was 86 ms, because slow
  opening and closing around silences pulls it to the scan edge.

How to run (in its own venv; tested with Python 3.11, mediapipe 0.10.21, av 18.1.0, scipy 1.17.1, numpy 1.26.4)
------------------------------------------------------------------------------------------------------
mediapipe 0.10.21 is needed for the legacy ``mp.solutions.face_mesh`` API, whose model ships inside the
wheel, and it pins numpy < 2. It pulls in opencv-contrib-python, jax, matplotlib, protobuf etc. itself.
PyAV decodes video, audio and pts.

    python3.11 -m venv /tmp/lagvenv && /tmp/lagvenv/bin/pip install mediapipe==0.10.21 av scipy numpy
    /tmp/lagvenv/bin/python scripts/landmark_av_lag.py ../shared/real_clips --trusted 'grid_*,lrs3_*' -o lags.tsv
    /tmp/lagvenv/bin/python scripts/landmark_av_lag.py ../shared/real_clips --trusted 'grid_*,lrs3_*' --validate
    # a folder without trusted clips: use a fixed calibration from a run that had them
    /tmp/lagvenv/bin/python scripts/landmark_av_lag.py OTHER_FOLDER --calibration-ms 20 -o OTHER_FOLDER/lags.tsv

If the folder has a MANIFEST.tsv (columns file, group), only the groups given by --groups are read
(default: real, real-suspect). Without a manifest, every video file in the folder is read.
"""
from __future__ import annotations

import argparse
import csv
import fnmatch
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from scipy.signal import butter, sosfiltfilt

# --- fixed method parameters (immutable) -------------------------------------------------------------------
UPPER_LIP: tuple[int, ...] = (13, 82, 312)   # inner upper lip: centre and two flanking points
LOWER_LIP: tuple[int, ...] = (14, 87, 317)   # inner lower lip, paired with UPPER_LIP
EYE_CORNERS: tuple[int, int] = (33, 263)     # outer eye corners: scale normaliser
AUDIO_RATE = 16_000                          # Hz, audio is resampled to mono at this rate
BAND_HZ: tuple[float, float] = (300.0, 3000.0)
HOP_S, WIN_S = 0.010, 0.025                  # envelope hop and RMS window
MAX_LAG_MS, LAG_STEP_MS = 200, 10
BOOT_BLOCK_FRAMES, BOOT_REPS, BOOT_SEED = 12, 300, 0
MAX_GAP_PERIODS = 2.5                        # a derivative across a longer face-less gap is dropped
MIN_PAIRS = 10                               # fewer usable frame pairs than this: no estimate
VIDEO_EXTENSIONS = ('.mp4', '.mpg', '.mpeg', '.mov', '.mkv', '.avi', '.flv', '.webm', '.m4v')
TSV_COLUMNS = ('file', 'fps', 'frames_with_face', 'lag_ms', 'lag_frames', 'relative_lag_frames',
               'peak_corr', 'sharpness', 'boot_sd_ms', 'trusted')


class ClipError(Exception):
    """A clip that cannot be measured (no audio, no face, unreadable); the clip is skipped."""


@dataclass(frozen=True)
class ClipSignals:
    """Everything the estimator needs from one video, on the container's absolute timeline (seconds)."""
    frame_times: np.ndarray   # pts of every decoded frame, sorted
    mouth: np.ndarray         # mouth opening / eye distance per frame, NaN where no face was found
    audio: np.ndarray         # mono float samples at AUDIO_RATE
    audio_start: float        # time of the first audio sample

    @property
    def frame_period(self) -> float:
        """Median frame spacing: the nominal period even for VFR clips with dropped frames."""
        dt = np.diff(self.frame_times)
        return float(np.median(dt)) if len(dt) else 0.04

    @property
    def frames_with_face(self) -> int:
        return int(np.isfinite(self.mouth).sum())


@dataclass(frozen=True)
class LagEstimate:
    lag_ms: float
    peak_corr: float
    sharpness: float
    boot_sd_ms: float
    at_edge: bool


@dataclass(frozen=True)
class ClipResult:
    file: str
    fps: float
    frames_with_face: int
    estimate: LagEstimate
    trusted: bool

    @property
    def period_ms(self) -> float:
        return 1000.0 / self.fps


# --- decoding ----------------------------------------------------------------------------------------------
def _import_or_exit(name: str):
    """Import a heavy dependency, with an install hint instead of a bare traceback."""
    try:
        return __import__(name)
    except ImportError as exc:
        raise SystemExit(f'cannot import {name} ({exc}); install the venv described in this script\'s '
                         'docstring: pip install mediapipe==0.10.21 av scipy numpy') from exc


def mouth_opening(landmarks: np.ndarray) -> float:
    """Inner-lip gap averaged over three pairs, divided by the eye-corner distance (pixel coordinates)."""
    gap = np.mean([np.linalg.norm(landmarks[u] - landmarks[l]) for u, l in zip(UPPER_LIP, LOWER_LIP)])
    eyes = np.linalg.norm(landmarks[EYE_CORNERS[0]] - landmarks[EYE_CORNERS[1]])
    return float(gap / eyes)


def read_mouth_track(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Frame times (pts x time_base) and mouth opening of every frame, sorted by time.

    Pixel coordinates (x*W, y*H) keep distances right for non-square frames; tracking mode follows one face.
    """
    av = _import_or_exit('av')
    mp = _import_or_exit('mediapipe')
    times: list[float] = []
    mouth: list[float] = []
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise ClipError('no video stream')
        stream = container.streams.video[0]
        time_base = float(stream.time_base)
        with mp.solutions.face_mesh.FaceMesh(static_image_mode=False, max_num_faces=1, refine_landmarks=False,
                                             min_detection_confidence=0.5,
                                             min_tracking_confidence=0.5) as face_mesh:
            for frame in container.decode(stream):
                t = frame.pts * time_base if frame.pts is not None else frame.time
                if t is None:
                    raise ClipError('a video frame has no timestamp')
                image = frame.to_ndarray(format='rgb24')
                height, width = image.shape[:2]
                found = face_mesh.process(image).multi_face_landmarks
                if found:
                    pts = np.array([(p.x * width, p.y * height) for p in found[0].landmark], dtype=np.float64)
                    mouth.append(mouth_opening(pts))
                else:
                    mouth.append(np.nan)
                times.append(float(t))
    if not times:
        raise ClipError('no decodable video frames')
    order = np.argsort(times, kind='stable')
    return np.asarray(times)[order], np.asarray(mouth)[order]


def read_audio(path: Path) -> tuple[np.ndarray, float]:
    """Mono AUDIO_RATE float samples and the absolute time of the first one (first audio pts)."""
    av = _import_or_exit('av')
    chunks: list[np.ndarray] = []
    start: float | None = None
    with av.open(str(path)) as container:
        if not container.streams.audio:
            raise ClipError('no audio stream: nothing to correlate the mouth with')
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format='flt', layout='mono', rate=AUDIO_RATE)
        for frame in container.decode(stream):
            if start is None:
                start = float(frame.pts * stream.time_base) if frame.pts is not None else 0.0
            chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(frame))
        chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(None))
    samples = np.concatenate(chunks).astype(np.float64) if chunks else np.zeros(0)
    if start is None or len(samples) < AUDIO_RATE * 2 * MAX_LAG_MS / 1000:
        raise ClipError('audio stream is empty or too short for the lag scan')
    return samples, start


def read_clip(path: Path) -> ClipSignals:
    """Decode one clip; raises ClipError with a readable reason when it cannot be measured."""
    audio, audio_start = read_audio(path)          # cheap check first: no audio -> no face tracking
    times, mouth = read_mouth_track(path)
    if not np.isfinite(mouth).any():
        raise ClipError(f'no face found in any of {len(times)} frames')
    return ClipSignals(times, mouth, audio, audio_start)


# --- estimator ---------------------------------------------------------------------------------------------
def lag_grid_s() -> np.ndarray:
    """Lags scanned, in seconds (-200..+200 ms in 10 ms steps)."""
    return np.arange(-MAX_LAG_MS, MAX_LAG_MS + 1, LAG_STEP_MS) / 1000.0


def audio_envelope(audio: np.ndarray, audio_start: float) -> tuple[np.ndarray, np.ndarray]:
    """Band-passed RMS envelope and its window-centre times.

    300-3000 Hz keeps the speech formants that follow mouth opening and drops hum and hiss; filtering
    forward and backward adds no delay, which would otherwise bias the lag.
    """
    sos = butter(4, BAND_HZ, btype='bandpass', fs=AUDIO_RATE, output='sos')
    band = sosfiltfilt(sos, audio)
    hop, win = int(round(HOP_S * AUDIO_RATE)), int(round(WIN_S * AUDIO_RATE))
    n = 1 + max(0, (len(band) - win) // hop)
    windows = np.arange(win)[None, :] + hop * np.arange(n)[:, None]
    rms = np.sqrt(np.mean(band[windows] ** 2, axis=1))
    centres = audio_start + (hop * np.arange(n) + win / 2) / AUDIO_RATE
    return centres, rms


def velocity_pairs(clip: ClipSignals, lags: np.ndarray, audio_shift_s: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Mouth velocity per frame pair [n] and envelope slope at each lag [n, n_lags], on one common frame set.

    Differences, not levels: slow opening/closing around pauses dominates level correlations and drags
    their peak to the scan edge. Every lag uses the same frames so the correlations are comparable.
    audio_shift_s > 0 makes the sound later (used by the planted-shift check).
    """
    period = clip.frame_period
    env_t, env = audio_envelope(clip.audio, clip.audio_start)
    env_t = env_t + audio_shift_s
    box = max(1, int(round(period / HOP_S)))              # integrate over one frame, like an exposure
    env = np.convolve(env, np.ones(box) / box, mode='same')
    t, m = clip.frame_times, clip.mouth
    usable = np.isfinite(m) & (t + lags.min() >= env_t[0]) & (t + lags.max() <= env_t[-1])
    t, m = t[usable], m[usable]
    env_at = np.stack([np.interp(t + lag, env_t, env) for lag in lags], axis=1)
    dt = np.diff(t)
    keep = dt < MAX_GAP_PERIODS * period                  # per-second rates; skip long face-less gaps
    mouth_velocity = (np.diff(m) / dt)[keep]
    env_slope = (np.diff(env_at, axis=0) / dt[:, None])[keep]
    return mouth_velocity, env_slope


def corr_curve(mouth_velocity: np.ndarray, env_slope: np.ndarray) -> np.ndarray:
    """Pearson correlation of the mouth velocity with each lag's envelope slope."""
    m = mouth_velocity - mouth_velocity.mean()
    m = m / m.std() if m.std() > 0 else m
    sd = env_slope.std(axis=0)
    e = (env_slope - env_slope.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
    return (e * m[:, None]).mean(axis=0)


def peak_sharpness(curve: np.ndarray, lags: np.ndarray, peak: int, period_s: float) -> float:
    """Peak corr minus the mean corr 2 frames either side: a broad hump (low value) is not a lag reading."""
    sides = [np.interp(lags[peak] + sign * 2 * period_s, lags, curve) for sign in (-1, 1)]
    return float(curve[peak] - np.mean(sides))


def bootstrap_lag_sd_ms(mouth_velocity: np.ndarray, env_slope: np.ndarray, lags: np.ndarray) -> float:
    """SD of the peak lag over moving-block bootstrap resamples (blocks keep the short-range dependence)."""
    n, block = len(mouth_velocity), BOOT_BLOCK_FRAMES
    if n < 2 * block:
        return float('nan')
    rng = np.random.default_rng(BOOT_SEED)
    n_blocks = int(np.ceil(n / block))
    peaks = []
    for _ in range(BOOT_REPS):
        starts = rng.integers(0, n, n_blocks)
        idx = (starts[:, None] + np.arange(block)[None, :]).reshape(-1)[:n] % n
        peaks.append(lags[np.argmax(corr_curve(mouth_velocity[idx], env_slope[idx]))])
    return float(np.std(peaks)) * 1000.0


def estimate_lag(clip: ClipSignals, audio_shift_s: float = 0.0, bootstrap: bool = True) -> LagEstimate:
    """Peak of the derivative cross-correlation over the lag grid (positive = sound late)."""
    lags = lag_grid_s()
    mouth_velocity, env_slope = velocity_pairs(clip, lags, audio_shift_s)
    if len(mouth_velocity) < MIN_PAIRS:
        raise ClipError(f'only {len(mouth_velocity)} usable consecutive face frames inside the audio span '
                        f'(need {MIN_PAIRS})')
    curve = corr_curve(mouth_velocity, env_slope)
    peak = int(np.argmax(curve))
    return LagEstimate(
        lag_ms=float(lags[peak] * 1000.0),
        peak_corr=float(curve[peak]),
        sharpness=peak_sharpness(curve, lags, peak, clip.frame_period),
        boot_sd_ms=bootstrap_lag_sd_ms(mouth_velocity, env_slope, lags) if bootstrap else float('nan'),
        at_edge=peak in (0, len(lags) - 1),
    )


# --- clip selection ----------------------------------------------------------------------------------------
def split_list(text: str | None) -> list[str]:
    return [item.strip() for item in (text or '').split(',') if item.strip()]


def matches_any(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatch(name, p) for p in patterns)


def list_clips(folder: Path, groups: Sequence[str]) -> list[str]:
    """Clip names in manifest order (only the wanted groups), or every video file if there is no manifest."""
    manifest = folder / 'MANIFEST.tsv'
    if manifest.is_file():
        with manifest.open(newline='') as fh:
            rows = list(csv.DictReader(fh, delimiter='\t'))
        if rows and not {'file', 'group'} <= set(rows[0]):
            raise SystemExit(f'{manifest} needs the columns file and group')
        return [r['file'] for r in rows if r['group'] in groups]
    return sorted(p.name for p in folder.iterdir() if p.suffix.lower() in VIDEO_EXTENSIONS)


def clip_filter(spec: str | None) -> list[str]:
    """--clips: comma-separated names/globs, or a text file with one name per line (# comments allowed)."""
    if spec and Path(spec).is_file():
        lines = (line.split('#', 1)[0].strip() for line in Path(spec).read_text().splitlines())
        return [line for line in lines if line]
    return split_list(spec)


# --- calibration, reporting, validation --------------------------------------------------------------------
def relative_frames(lag_ms: float, calibration_ms: float, period_ms: float) -> float:
    return (lag_ms - calibration_ms) / period_ms


def is_clear(est: LagEstimate, max_boot_sd_ms: float) -> bool:
    """A peak worth reading: stable under resampling and not pinned to the scan edge."""
    return np.isfinite(est.boot_sd_ms) and est.boot_sd_ms < max_boot_sd_ms and not est.at_edge


def describe_spread(results: Sequence[ClipResult], calibration_ms: float) -> str:
    """Trusted-clip spread around the calibration, in ms and frames."""
    lags = np.array([r.estimate.lag_ms for r in results])
    median = float(np.median(lags))
    sd = float(lags.std(ddof=1)) if len(lags) > 1 else float('nan')
    mad_sd = 1.4826 * float(np.median(np.abs(lags - median)))
    period = float(np.median([r.period_ms for r in results]))
    within = sum(abs(relative_frames(r.estimate.lag_ms, calibration_ms, r.period_ms)) <= 1 + 1e-9 for r in results)
    return (f'{len(lags)} trusted clips: median {median:+.0f} ms, SD {sd:.0f} ms ({sd / period:.2f} frame), '
            f'1.4826*MAD {mad_sd:.0f} ms, range {lags.min():+.0f}..{lags.max():+.0f} ms; '
            f'{within}/{len(lags)} within +-1 frame of the calibration')


def write_tsv(path: Path, results: Sequence[ClipResult], calibration_ms: float) -> None:
    with path.open('w', newline='') as fh:
        out = csv.writer(fh, delimiter='\t', lineterminator='\n')
        out.writerow(TSV_COLUMNS)
        for r in results:
            e = r.estimate
            out.writerow([r.file, f'{r.fps:.3f}', r.frames_with_face, f'{e.lag_ms:.0f}',
                          f'{e.lag_ms / r.period_ms:.2f}',
                          f'{relative_frames(e.lag_ms, calibration_ms, r.period_ms):.2f}',
                          f'{e.peak_corr:.3f}', f'{e.sharpness:.3f}', f'{e.boot_sd_ms:.0f}', int(r.trusted)])


def print_summary(results: Sequence[ClipResult], calibration_ms: float, calibration_note: str,
                  max_boot_sd_ms: float, min_frames: float) -> None:
    """Calibration, clips that are clearly off by >= min_frames, and clips whose peak cannot be read."""
    print(f'calibration: {calibration_ms:+.0f} ms ({calibration_note})')
    trusted = [r for r in results if r.trusted]
    if trusted:
        print('  ' + describe_spread(trusted, calibration_ms))
    off, noisy = [], []
    for r in results:
        rel = relative_frames(r.estimate.lag_ms, calibration_ms, r.period_ms)
        if not is_clear(r.estimate, max_boot_sd_ms):
            noisy.append(r)
        elif abs(rel) >= min_frames:
            off.append((r, rel))
    print(f'clear peak (boot SD < {max_boot_sd_ms:.0f} ms, not at +-{MAX_LAG_MS} ms) and |relative lag| >= '
          f'{min_frames:g} frames ({len(off)}):')
    for r, rel in sorted(off, key=lambda x: -abs(x[1])):
        side = 'late' if rel > 0 else 'early'
        print(f'  {r.file:34s} {rel:+6.2f} frames (sound {side}; lag {r.estimate.lag_ms:+.0f} ms, '
              f'r {r.estimate.peak_corr:.2f}, boot SD {r.estimate.boot_sd_ms:.0f} ms)')
    print(f'too noisy to read ({len(noisy)}):')
    for r in noisy:
        e = r.estimate
        why = f'peak at the +-{MAX_LAG_MS} ms edge' if e.at_edge else f'boot SD {e.boot_sd_ms:.0f} ms'
        print(f'  {r.file:34s} {why} (lag {e.lag_ms:+.0f} ms, r {e.peak_corr:.2f})')


def validate(signals: dict[str, ClipSignals], results: Sequence[ClipResult], shift_frames: int = 2) -> None:
    """Plant +-shift_frames of audio delay in each trusted clip and read it back against the others' median.

    Leave-one-out calibration keeps the clip's own unshifted lag out of the reference; measured against
    its own unshifted lag instead, recovery would be automatic (the correlation moves with the shift).
    """
    trusted = {r.file: r for r in results if r.trusted}
    if len(trusted) < 2:
        raise SystemExit('--validate needs at least two trusted clips (see --trusted)')
    recovered, total, misses = 0, 0, []
    for name, r in trusted.items():
        reference = float(np.median([o.estimate.lag_ms for n, o in trusted.items() if n != name]))
        readings = []
        for planted in (shift_frames, -shift_frames):
            est = estimate_lag(signals[name], audio_shift_s=planted * r.period_ms / 1000.0, bootstrap=False)
            rel = relative_frames(est.lag_ms, reference, r.period_ms)
            ok = abs(rel - planted) <= 1 + 1e-9
            recovered += ok
            total += 1
            readings.append(f'{planted:+d}->{rel:+.2f}')
            if not ok:
                misses.append(f'{name} planted {planted:+d} read {rel:+.2f}')
        print(f'  {name:34s} ' + '  '.join(readings))
    print(f'validation: {recovered}/{total} planted +-{shift_frames}-frame shifts recovered within +-1 frame '
          '(leave-one-out trusted median)')
    for miss in misses:
        print(f'  missed: {miss}')


# --- command line ------------------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('folder', type=Path, help='folder of videos (optionally with MANIFEST.tsv: file, group)')
    p.add_argument('--trusted', default='',
                   help="comma-separated globs of known-in-sync clips for the calibration, e.g. 'grid_*,lrs3_*'")
    p.add_argument('--calibration-ms', type=float, default=None,
                   help='fixed calibration lag in ms (overrides the trusted median; for folders without '
                        'trusted clips, take it from a run that had them)')
    p.add_argument('--clips', default=None,
                   help='restrict to these clips: comma-separated names/globs, or a file with one per line '
                        '(the calibration then uses only the trusted clips among them; add --calibration-ms '
                        'to keep a full-folder calibration)')
    p.add_argument('--groups', default='real,real-suspect',
                   help='MANIFEST.tsv groups to read (default: real,real-suspect); ignored without a manifest')
    p.add_argument('-o', '--output', type=Path, default=None, help='write the per-clip TSV here')
    p.add_argument('--validate', action='store_true',
                   help='also run the +-2-frame planted-shift self-check on the trusted clips')
    p.add_argument('--clear-boot-sd-ms', type=float, default=50.0,
                   help='a peak is clear when its bootstrap SD is below this (default 50 ms)')
    p.add_argument('--report-frames', type=float, default=2.0,
                   help='list clear clips whose |relative lag| is at least this many frames (default 2)')
    return p.parse_args(argv)


def measure_all(folder: Path, names: Sequence[str], trusted_globs: Sequence[str]
                ) -> tuple[dict[str, ClipSignals], list[ClipResult], list[str]]:
    """Decode and estimate every clip; unreadable clips are reported and skipped, not fatal."""
    signals: dict[str, ClipSignals] = {}
    results: list[ClipResult] = []
    skipped: list[str] = []
    for i, name in enumerate(names, 1):
        started = time.time()
        try:
            clip = read_clip(folder / name)
            est = estimate_lag(clip)
        except ClipError as exc:
            skipped.append(f'{name}: {exc}')
            print(f'[{i}/{len(names)}] {name}: SKIPPED, {exc}', file=sys.stderr, flush=True)
            continue
        except Exception as exc:  # a corrupt file should not stop the batch, but must be visible
            skipped.append(f'{name}: cannot read ({type(exc).__name__}: {exc})')
            print(f'[{i}/{len(names)}] {name}: SKIPPED, {type(exc).__name__}: {exc}', file=sys.stderr, flush=True)
            continue
        signals[name] = clip
        results.append(ClipResult(name, 1.0 / clip.frame_period, clip.frames_with_face, est,
                                  matches_any(name, trusted_globs)))
        print(f'[{i}/{len(names)}] {name}: lag {est.lag_ms:+.0f} ms, r {est.peak_corr:.2f}, '
              f'boot SD {est.boot_sd_ms:.0f} ms ({time.time() - started:.1f} s)', file=sys.stderr, flush=True)
    return signals, results, skipped


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.folder.is_dir():
        raise SystemExit(f'{args.folder} is not a folder')
    names = list_clips(args.folder, split_list(args.groups))
    wanted = clip_filter(args.clips)
    if wanted:
        names = [n for n in names if matches_any(n, wanted)]
    missing = [n for n in names if not (args.folder / n).is_file()]
    if missing:
        raise SystemExit(f'listed in MANIFEST.tsv but not in {args.folder}: {", ".join(missing)}')
    if not names:
        raise SystemExit(f'no clips selected in {args.folder}')
    trusted_globs = split_list(args.trusted)
    if args.calibration_ms is None and not any(matches_any(n, trusted_globs) for n in names):
        raise SystemExit('no trusted clip selected: pass --trusted globs that match clips here, or --calibration-ms')

    signals, results, skipped = measure_all(args.folder, names, trusted_globs)
    if not results:
        raise SystemExit('no clip could be measured:\n  ' + '\n  '.join(skipped))
    trusted = [r for r in results if r.trusted]
    if args.calibration_ms is not None:
        calibration_ms, note = args.calibration_ms, 'fixed by --calibration-ms'
    elif trusted:
        calibration_ms = float(np.median([r.estimate.lag_ms for r in trusted]))
        note = f'median lag of {len(trusted)} trusted clips matching {args.trusted}'
    else:
        raise SystemExit('none of the trusted clips could be measured; pass --calibration-ms')

    if args.output:
        write_tsv(args.output, results, calibration_ms)
        print(f'wrote {args.output} ({len(results)} clips)')
    print_summary(results, calibration_ms, note, args.clear_boot_sd_ms, args.report_frames)
    if skipped:
        print(f'skipped ({len(skipped)}):')
        for line in skipped:
            print(f'  {line}')
    if args.validate:
        validate(signals, results)
    return 0


if __name__ == '__main__':
    sys.exit(main())
