#!/usr/bin/env python3
"""Two more model-free witnesses of a real clip's published sync, beside scripts/landmark_av_lag.py's envelope check.

Why
---
landmark_av_lag.py (mouth-opening velocity against the speech envelope's slope) reads most clips to within 0.5 frame,
but on some it finds no clear peak: `st_hill`, the hold-out clip every model reads +3, is one (session 13). These two
witnesses ask the same question from other evidence, so a ruling on such a clip need not rest on one estimator:

* **formant**: the mouth opening (the same MediaPipe inner-lip gap over eye distance) against the first formant F1 of
  the voiced sound, which rises with jaw and lip opening. LPC order 14 on 10 kHz audio, 25 ms Hamming windows every
  10 ms; F1 = the lowest pole in 200-1100 Hz with a bandwidth under 400 Hz; voiced = frame energy above the clip's
  40th percentile. corr(L) = Pearson(mouth at frame t, F1 at t + L) over the voiced frames, L = -200..+200 ms in
  10 ms steps; the peak is the reading, and the SD of the peak over 60 resamples of random 12-frame blocks its
  spread (a block subsample: a block drawn twice counts once, so the spread is if anything understated).
* **bilabial**: at /p/, /b/ and /m/ the lips are shut. pocketsphinx (its bundled US-English model) recognises the
  words, then aligns them to the sound phone by phone; for each bilabial phone the mean z-scored mouth opening over
  the middle 60% of the phone, moved by L (sound late by L: the video at the phone's time minus L), is averaged over
  the clip's bilabials; the lag where the lips are most shut is the reading. ``--events`` prints each bilabial with
  the mouth at 0, 40, 80, 120 and 160 ms, which shows whether an event discriminates at all (a bilabial inside a
  stretch of closed lips does not).

Both are read relative to the median over trusted clips (``--trusted``), as landmark_av_lag.py does. Positive = sound
late.

What they gave (session 27; `../shared/real_clips`; `--trusted 'grid_*,lrs3_*'`)
--------------------------------------------------------------------------------
* formant: weaker than the envelope check on the short trusted clips (median +10 ms, SD 69 ms against its 21; six of
  the 23, five of them 3 s GRID clips, read 1.5-4.75 frames off), but in line with it on the longer
  clips it had found late: `r3d_may5s` and `tps_jackie` +3.0 frames, `ed_tedlieu` +2.25, `pcavs_741400163` +1.75.
  `st_hill`: -3.0 frames (sound early), with no clear peak (boot SD 94 ms).
* bilabial: a GRID sentence holds one or two bilabials, too few to read a clip alone, so the trusted clips' bilabials
  are pooled for the calibration; with ``--grid-names`` GRID clips are aligned on the sentence their file name spells
  (the recogniser mishears GRID's odd grammar). 30 bilabials: +30 ms, boot SD 5 ms (the three LRS3 clips readable
  alone: +30, +30, -70). `st_hill` reads +120 ms (+2.25 frames against +30) on 4 bilabials, of which one
  discriminates: the /m/ of "for my" at 2.52 s, where the mouth is open at lag 0 (z +0.74) and shut from 80 ms
  (z -1.34 .. -1.53). The other three fall in a stretch where the lips stay nearly shut at every lag. On the long
  clips found late it agrees in sign: `ed_tedlieu` +1.5 frames on 45 bilabials, `pcavs_741400163` +1.5 on 11.
So no witness settles `st_hill`: the envelope and formant checks lean early without a clear peak, the one telling
bilabial leans late, as the models read it. It stays scored as published.

How to run (the venv of landmark_av_lag.py plus pocketsphinx, whose wheel carries its acoustic model and dictionary)
------------------------------------------------------------------------------------------------------------------
    /tmp/lagvenv/bin/pip install pocketsphinx
    /tmp/lagvenv/bin/python scripts/published_sync_witnesses.py ../shared/real_clips --trusted 'grid_*,lrs3_*' \\
        --grid-names --clips 'st_hill.mp4,r3d_may5s.mp4,tps_jackie.mp4' --events
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import landmark_av_lag as lag  # noqa: E402  (the shared decoding and clip selection)

LAGS_S = np.arange(-0.2, 0.2001, 0.01)
BILABIAL_LAGS_S = np.arange(-0.3, 0.3001, 0.01)
EVENT_LAGS_S = (0.0, 0.04, 0.08, 0.12, 0.16)
BILABIALS = frozenset({"P", "B", "M"})
LPC_RATE, LPC_ORDER = 10_000, 14
MIN_BILABIALS = 3


# --- formant -----------------------------------------------------------------------------------------------
def first_formant(audio: np.ndarray, start: float) -> tuple[np.ndarray, np.ndarray]:
    """(window-centre times, F1 in Hz or NaN where unvoiced or no pole qualifies)."""
    from scipy.linalg import solve_toeplitz
    from scipy.signal import lfilter, resample_poly

    x = lfilter([1.0, -0.97], [1.0], resample_poly(audio, LPC_RATE, lag.AUDIO_RATE))
    hop, win = int(lag.HOP_S * LPC_RATE), int(lag.WIN_S * LPC_RATE)
    n = 1 + max(0, (len(x) - win) // hop)
    window = np.hamming(win)
    f1, energy = np.full(n, np.nan), np.zeros(n)
    for i in range(n):
        seg = x[i * hop:i * hop + win] * window
        energy[i] = np.log(np.sum(seg ** 2) + 1e-10)
        r = np.correlate(seg, seg, "full")[win - 1:win + LPC_ORDER]
        if r[0] <= 0:
            continue
        roots = np.roots(np.r_[1.0, solve_toeplitz(r[:LPC_ORDER], -r[1:LPC_ORDER + 1])])
        roots = roots[np.imag(roots) > 0]
        freq = np.angle(roots) * LPC_RATE / (2 * np.pi)
        bandwidth = -np.log(np.abs(roots)) * LPC_RATE / np.pi
        candidates = np.sort(freq[(freq > 200) & (freq < 1100) & (bandwidth < 400)])
        if len(candidates):
            f1[i] = candidates[0]
    f1[energy <= np.percentile(energy, 40)] = np.nan
    return start + (hop * np.arange(n) + win / 2) / LPC_RATE, f1


def formant_curve(clip: lag.ClipSignals, track: tuple[np.ndarray, np.ndarray],
                  frames: np.ndarray | None = None) -> np.ndarray:
    """Pearson(mouth, F1 at t + L) per lag over voiced frames (``frames``: a mask of frames to use)."""
    times, f1 = track
    voiced = np.isfinite(f1)
    out = []
    for lag_s in LAGS_S:
        at = clip.frame_times + lag_s
        value = np.interp(at, times, np.nan_to_num(f1, nan=0.0))
        unvoiced_near = np.interp(at, times, (~voiced).astype(float)) > 0.0
        ok = np.isfinite(clip.mouth) & ~unvoiced_near & (at > times[0]) & (at < times[-1])
        if frames is not None:
            ok &= frames
        out.append(np.corrcoef(clip.mouth[ok], value[ok])[0, 1] if ok.sum() > 10 else np.nan)
    return np.asarray(out)


def formant_lag(clip: lag.ClipSignals, reps: int = 60) -> tuple[float, float]:
    """(lag ms, SD ms of the peak over ``reps`` block subsamples of the frames)."""
    track = first_formant(clip.audio, clip.audio_start)
    curve = formant_curve(clip, track)
    if not np.isfinite(curve).any():
        return float("nan"), float("nan")
    rng, n, peaks = np.random.default_rng(lag.BOOT_SEED), len(clip.mouth), []
    for _ in range(reps):
        mask = np.zeros(n, bool)
        for s in rng.integers(0, n, int(np.ceil(n / lag.BOOT_BLOCK_FRAMES))):
            mask[s:s + lag.BOOT_BLOCK_FRAMES] = True
        resampled = formant_curve(clip, track, mask)
        if np.isfinite(resampled).any():
            peaks.append(LAGS_S[np.nanargmax(resampled)])
    return float(LAGS_S[np.nanargmax(curve)] * 1000), float(np.std(peaks) * 1000)


# --- bilabials ---------------------------------------------------------------------------------------------
GRID_WORDS = (  # GRID file names spell their sentence, one letter or digit per word slot
    {"b": "bin", "l": "lay", "p": "place", "s": "set"},
    {"b": "blue", "g": "green", "r": "red", "w": "white"},
    {"a": "at", "b": "by", "i": "in", "w": "with"},
    None,  # the letter itself
    dict(zip("z123456789", "zero one two three four five six seven eight nine".split())),
    {"a": "again", "n": "now", "p": "please", "s": "soon"},
)


def grid_sentence(name: str) -> str | None:
    """The sentence a GRID clip's name spells (``grid_lbbc2a.mpg`` -> "lay blue by c two again"), else None."""
    code = Path(name).stem.removeprefix("grid_")
    if len(code) != len(GRID_WORDS):
        return None
    words = [code[i] if table is None else table.get(code[i]) for i, table in enumerate(GRID_WORDS)]
    return " ".join(words) if all(words) and code[3].isalpha() else None


def aligned_phones(audio: np.ndarray, text: str | None = None) -> tuple[str, list[tuple[str, float, float]]]:
    """(words, [(phone, start s, end s)]) from pocketsphinx: the words it recognises, or ``text`` when the
    sentence is known; no phones when the alignment fails."""
    try:
        from pocketsphinx import Decoder, get_model_path
    except ImportError as exc:
        raise SystemExit(f"cannot import pocketsphinx ({exc}): pip install pocketsphinx into this venv") from exc
    model = get_model_path()
    pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16).tobytes()
    decoder = Decoder(hmm=os.path.join(model, "en-us/en-us"), lm=os.path.join(model, "en-us/en-us.lm.bin"),
                      dict=os.path.join(model, "en-us/cmudict-en-us.dict"), logfn=os.devnull,
                      samprate=lag.AUDIO_RATE)

    def decode() -> None:
        decoder.start_utt()
        decoder.process_raw(pcm, full_utt=True)
        decoder.end_utt()

    if text is None:
        decode()
    words = text or (decoder.hyp().hypstr if decoder.hyp() else "")
    if not words:
        return "", []
    try:
        decoder.set_align_text(words)
        decode()
        decoder.set_alignment()
        decode()
        alignment = decoder.get_alignment()
    except RuntimeError:  # the aligner gave up on this recognition
        return words, []
    if alignment is None:
        return words, []
    return words, [(p.name, p.start / 100, (p.start + p.duration) / 100) for w in alignment for p in w]


def mouth_at_phone(clip: lag.ClipSignals, mouth_z: np.ndarray, start: float, end: float, lag_s: float) -> float:
    """Mean z-scored mouth opening over the phone's middle 60%, the sound taken as ``lag_s`` late (NaN off-clip)."""
    ok = np.isfinite(mouth_z)
    t = np.arange(start + 0.2 * (end - start), end - 0.2 * (end - start) + 1e-9, 0.01) + clip.audio_start - lag_s
    if t[0] < clip.frame_times[0] or t[-1] > clip.frame_times[-1]:
        return float("nan")
    return float(np.interp(t, clip.frame_times[ok], mouth_z[ok]).mean())


def bilabial_values(clip: lag.ClipSignals, phones: list[tuple[str, float, float]]) -> np.ndarray:
    """[bilabials, lags]: the z-scored mouth opening at each bilabial for each lag (NaN off the clip)."""
    mouth_z = (clip.mouth - np.nanmean(clip.mouth)) / np.nanstd(clip.mouth)
    events = [(a, b) for p, a, b in phones if p in BILABIALS]
    return np.array([[mouth_at_phone(clip, mouth_z, a, b, s) for s in BILABIAL_LAGS_S] for a, b in events]
                    ).reshape(len(events), len(BILABIAL_LAGS_S))


def most_shut_lag(values: np.ndarray) -> float:
    """The lag (ms) where the bilabials' mean mouth opening is lowest; NaN with fewer than MIN_BILABIALS."""
    counts = np.isfinite(values).sum(axis=0)
    with np.errstate(invalid="ignore"):
        curve = np.where(counts >= MIN_BILABIALS, np.nansum(values, axis=0) / np.maximum(counts, 1), np.nan)
    return float(BILABIAL_LAGS_S[np.nanargmin(curve)] * 1000) if np.isfinite(curve).any() else float("nan")


def bilabial_lag(clip: lag.ClipSignals, phones: list[tuple[str, float, float]]) -> tuple[float, int]:
    """(lag ms where the lips are most shut at the bilabials, number of bilabials)."""
    values = bilabial_values(clip, phones)
    return most_shut_lag(values), len(values)


def pooled_lag(values: np.ndarray, reps: int = 300) -> tuple[float, float]:
    """(lag ms, bootstrap SD ms over the bilabials) of many clips' bilabials pooled: a calibration for clips too
    short to read alone (a GRID sentence has one or two)."""
    rng = np.random.default_rng(lag.BOOT_SEED)
    boot = [most_shut_lag(values[rng.integers(0, len(values), len(values))]) for _ in range(reps)]
    return most_shut_lag(values), float(np.nanstd(boot))


def print_events(phones: list[tuple[str, float, float]], values: np.ndarray) -> None:
    """Each bilabial's mouth opening at EVENT_LAGS_S, read off its row of :func:`bilabial_values`."""
    columns = [int(np.argmin(np.abs(BILABIAL_LAGS_S - s))) for s in EVENT_LAGS_S]
    bilabials = [i for i, (p, _, _) in enumerate(phones) if p in BILABIALS]
    for row, i in zip(values, bilabials):
        p, a, b = phones[i]
        context = " ".join(x[0] for x in phones[max(0, i - 2):i + 3])
        print(f"    {p} {a:5.2f}-{b:5.2f} s [{context}] mouth z at "
              f"{'/'.join(str(int(s * 1000)) for s in EVENT_LAGS_S)} ms: {' '.join(f'{row[c]:+.2f}' for c in columns)}")


# --- command line ------------------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("folder", type=Path, help="folder of videos (optionally with MANIFEST.tsv: file, group)")
    p.add_argument("--trusted", default="", help="globs of known in-sync clips: each witness's calibration median")
    p.add_argument("--clips", default=None, help="comma-separated globs: the clips to read besides the trusted ones")
    p.add_argument("--groups", default="real,real-suspect", help="MANIFEST.tsv groups to read")
    p.add_argument("--events", action="store_true", help="print each bilabial of the --clips clips")
    p.add_argument("--grid-names", action="store_true",
                   help="align GRID clips (grid_lbbc2a...) on the sentence their name spells instead of recognising it")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    names = lag.list_clips(args.folder, lag.split_list(args.groups))
    trusted, wanted = lag.split_list(args.trusted), lag.clip_filter(args.clips)
    names = [n for n in names if lag.matches_any(n, trusted) or (wanted and lag.matches_any(n, wanted))]
    if not names:
        raise SystemExit(f"no clips selected in {args.folder}")
    readings: dict[str, tuple[float, float, float, int, float]] = {}
    trusted_bilabials: list[np.ndarray] = []
    for i, name in enumerate(names, 1):
        try:
            clip = lag.read_clip(args.folder / name)
        except lag.ClipError as exc:
            print(f"[{i}/{len(names)}] {name}: SKIPPED, {exc}", file=sys.stderr, flush=True)
            continue
        formant_ms, formant_sd = formant_lag(clip)
        words, phones = aligned_phones(clip.audio, grid_sentence(name) if args.grid_names else None)
        values = bilabial_values(clip, phones)
        bilabial_ms, events = most_shut_lag(values), len(values)
        if lag.matches_any(name, trusted):
            trusted_bilabials.append(values)
        readings[name] = (formant_ms, formant_sd, bilabial_ms, events, clip.frame_period * 1000)
        print(f"[{i}/{len(names)}] {name}: formant {formant_ms:+.0f} ms (boot SD {formant_sd:.0f}), "
              f"bilabial {bilabial_ms:+.0f} ms ({events} bilabials) | {words[:60]}", file=sys.stderr, flush=True)
        if args.events and wanted and lag.matches_any(name, wanted):
            print(f"{name}: {words}")
            print_events(phones, values)
    formant_calibration = float(np.nanmedian([r[0] for n, r in readings.items() if lag.matches_any(n, trusted)]
                                             or [0.0]))
    pooled = np.concatenate(trusted_bilabials) if trusted_bilabials else np.zeros((0, len(BILABIAL_LAGS_S)))
    bilabial_calibration, bilabial_sd = pooled_lag(pooled) if len(pooled) else (0.0, float("nan"))
    calibration = [formant_calibration, bilabial_calibration]
    print(f"calibration: formant {formant_calibration:+.0f} ms (median of the trusted clips); bilabial "
          f"{bilabial_calibration:+.0f} ms (the trusted clips' {len(pooled)} bilabials pooled, boot SD "
          f"{bilabial_sd:.0f} ms)")
    print("clip\tformant_lag_ms\tformant_boot_sd_ms\tformant_relative_frames\tbilabial_lag_ms\tbilabials\t"
          "bilabial_relative_frames")
    for name, (f_ms, f_sd, b_ms, events, period) in readings.items():
        print(f"{name}\t{f_ms:.0f}\t{f_sd:.0f}\t{(f_ms - calibration[0]) / period:+.2f}\t{b_ms:.0f}\t{events}\t"
              f"{(b_ms - calibration[1]) / period:+.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
