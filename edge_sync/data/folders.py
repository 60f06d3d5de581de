"""User video corpora as a torch Dataset: any folder of videos -> shifted (audio, video) training windows.

Each file goes through the real pipeline once (:func:`edge_sync.features.clip.prepare_clip`: decode, face
track, mouth crop, MFCC); the segments are cached as ``.npz`` (crops as uint8, MFCC as float32) keyed by the
file's identity, so later datasets, epochs and runs never decode again. Bad files are skipped and recorded,
never fatal: a user's corpus always has a few.

The offset convention is the contract's: k > 0 means the sound is late by k frames, i.e. video frame t
matches audio frame t + k. The source files are assumed to be in sync (k = 0). To *make* a window whose
sound is late by k we take video frames [s, s + T) and audio frames [s - k, s - k + T): then audio index
t + k holds source frame s + t, the frame that goes with video index t. Windows are placed so both ranges
stay inside the segment, so every frame of every sample is valid (no padding).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Mapping

import numpy as np
import torch
from torch.utils.data import Dataset

from edge_sync.errors import EdgeSyncError, MediaError, NoFaceError
from edge_sync.features import clip as clip_features
from edge_sync.features.clip import PreparedClip
from edge_sync.features.faces import DEFAULT_DETECTOR
from edge_sync.features.media import VIDEO_EXTENSIONS, find_videos
from edge_sync.spec import MAX_OFFSET, MFCC_PER_FRAME, MOUTH, SPEC_VERSION, VideoPreprocessing

__all__ = ["VIDEO_EXTENSIONS", "CachedSegment", "SkippedFile", "VideoFolderDataset", "find_videos",
           "segments_from_clip", "crops_from_model_input", "realign", "read_published_offsets"]

log = logging.getLogger(__name__)

CACHE_FORMAT = 1  # bump when the .npz layout changes so old caches are ignored, not misread


@dataclass(frozen=True)
class SkippedFile:
    """A file the dataset could not use, and why (the error message a user can act on)."""

    path: Path
    reason: str


@dataclass
class CachedSegment:
    """One face-track segment in compact form: what the cache stores and the dataset samples from."""

    track_id: int
    start: int  # first frame of the segment in its file
    mfcc: np.ndarray  # float32 [13, 4 F]
    crops: np.ndarray  # uint8 [F, S, S, 3] RGB, before normalisation

    @property
    def frames(self) -> int:
        return int(self.crops.shape[0])


def realign(segment: CachedSegment, late: int) -> CachedSegment:
    """The segment with its sound moved ``late`` frames earlier (negative: later), so a clip whose sound is
    ``late`` frames late as published becomes in sync; both ends are trimmed to what the two streams share."""
    if late == 0:
        return segment
    n = segment.frames - abs(late)
    if n <= 0:
        return CachedSegment(segment.track_id, segment.start, segment.mfcc[:, :0], segment.crops[:0])
    if late > 0:  # video frame t goes with the audio of frame t + late
        return CachedSegment(segment.track_id, segment.start, segment.mfcc[:, MFCC_PER_FRAME * late:],
                             segment.crops[:n])
    return CachedSegment(segment.track_id, segment.start - late, segment.mfcc[:, :MFCC_PER_FRAME * n],
                         segment.crops[-late:])


def read_published_offsets(path: Path) -> dict[str, int]:
    """``offset_frames`` by file name (+ = the sound is late as published) from a TSV (``#`` lines are comments) or a
    folder's MANIFEST.tsv; rows without one are in sync, and so is everything without the file. A file whose sound
    is measured late is trained on realigned, not with a wrong label."""
    import csv

    path = Path(path)
    if path.is_dir():
        path = path / "MANIFEST.tsv"
    if not path.is_file():
        return {}
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader((line for line in fh if not line.startswith("#")), delimiter="\t"))
    out = {}
    for row in rows:
        value = (row.get("offset_frames") or "").strip()
        if row.get("file") and value:
            try:
                out[row["file"]] = int(value)
            except ValueError:
                raise EdgeSyncError(f"{path}: offset_frames of {row['file']} must be a whole number of frames, "
                                    f"got {value!r}") from None
    return out


def crops_from_model_input(video: np.ndarray, preprocessing: VideoPreprocessing = MOUTH) -> np.ndarray:
    """Invert ``preprocessing.normalise``: float32 [1, 3, F, S, S] -> uint8 RGB crops [F, S, S, 3].

    Exact for crops that came from uint8 (the pipeline's only source), so caching uint8 loses nothing
    and takes a quarter of the float size.
    """
    x = np.asarray(video, np.float32)[0].transpose(1, 2, 3, 0)
    x = x * np.asarray(preprocessing.std, np.float32) + np.asarray(preprocessing.mean, np.float32)
    if preprocessing.colour_order == "BGR":
        x = x[..., ::-1]
    return np.ascontiguousarray(np.clip(np.rint(x), 0, 255).astype(np.uint8))


def segments_from_clip(prepared: PreparedClip, preprocessing: VideoPreprocessing = MOUTH) -> list[CachedSegment]:
    """PreparedClip -> compact segments (uint8 crops, MFCC without the batch/channel axes)."""
    return [CachedSegment(s.track_id, s.start, np.ascontiguousarray(s.audio[0, 0], np.float32),
                          crops_from_model_input(s.video, preprocessing)) for s in prepared.segments]


def _atomic_savez(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write to a temp file in the same folder, then rename: a crash never leaves a half cache entry."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez_compressed(fh, **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class _ClipCache:
    """``.npz`` per file under ``root``; a ``.skip.json`` remembers files that failed, so they are not retried."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def paths(self, key: str) -> tuple[Path, Path]:
        return self.root / f"{key}.npz", self.root / f"{key}.skip.json"

    def load(self, key: str) -> list[CachedSegment] | str | None:
        """Segments, a skip reason, or None on a miss (an unreadable entry counts as a miss)."""
        npz, skip = self.paths(key)
        try:
            if npz.exists():
                with np.load(npz, allow_pickle=False) as data:
                    meta = json.loads(str(data["meta"]))
                    return [CachedSegment(int(t), int(s), data[f"mfcc_{i}"], data[f"crops_{i}"])
                            for i, (t, s) in enumerate(zip(meta["track_ids"], meta["starts"]))]
            if skip.exists():
                return str(json.loads(skip.read_text(encoding="utf-8"))["reason"])
        except (OSError, ValueError, KeyError, EOFError) as err:
            log.warning("cache entry %s is unreadable (%s); decoding the video again", npz.name, err)
        return None

    def save(self, key: str, segments: list[CachedSegment], source: Path) -> None:
        meta = {"format": CACHE_FORMAT, "source": str(source), "track_ids": [s.track_id for s in segments],
                "starts": [s.start for s in segments]}
        arrays: dict[str, np.ndarray] = {"meta": np.array(json.dumps(meta))}
        for i, s in enumerate(segments):
            arrays[f"mfcc_{i}"], arrays[f"crops_{i}"] = s.mfcc, s.crops
        _atomic_savez(self.paths(key)[0], arrays)

    def save_skip(self, key: str, reason: str, source: Path) -> None:
        _atomic_write_text(self.paths(key)[1], json.dumps({"source": str(source), "reason": reason}))


class VideoFolderDataset(Dataset):
    """Training windows from a folder of the user's own videos (assumed in sync), with planted offsets.

    Args:
        root: folder searched recursively for ``extensions``.
        frames: T, video frames per window (audio gets 4 T MFCC steps).
        max_offset: K; labels lie in -K..K.
        cache_dir: where prepared clips are cached (None: keep them in memory only, decode every run).
        seed: with the item index (and :meth:`set_epoch`'s epoch) fixes every random choice.
        offsets: ``"uniform"`` (k uniform in -K..K) or a fixed int k.
        labels: True -> samples carry ``offsets``/``valid``; False -> unlabeled, in-sync windows for
            self-supervision, each with one out-of-sync ``negative_audio`` cut from the same segment.
        min_negative_shift: smallest |shift| of ``negative_audio`` (a 1-2 frame shift is nearly in sync).
        min_activity: windows whose audio log-energy varies less than this (std over frames, MFCC row 0)
            are redrawn (up to ``draws`` times, then the liveliest draw is kept): silence carries no sync
            information, and in self-supervision a silent negative equals its positive. 0 disables.
        detector: face detector name for ``prepare_clip`` (part of the cache key).
        max_open: cached files kept decompressed in memory at once (per worker).
        segments: clips already prepared (name -> segments, e.g. synthetic clips rendered in memory) instead of
            the videos under ``root``, which then only names them.
        published_offsets: file name -> frames its sound is late as published (default: the ``offset_frames``
            column of ``root/MANIFEST.tsv``); such a file's segments are realigned (:func:`realign`), so its
            windows carry true labels.

    Sample (torch tensors): ``audio`` float32 [1, 13, 4T], ``video`` float32 [3, T, S, S], ``clip_id`` int64
    (index into :attr:`files`), ``frame_start`` int64 (first video frame in the file), and
    labels=True: ``offsets`` int64 [T] (k for every frame), ``valid`` bool [T];
    labels=False: ``negative_audio`` float32 [1, 13, 4T] and ``negative_offset`` int64 (its true k,
    |k| >= min_negative_shift).

    A segment serves windows only if it is long enough for every offset it may be given
    (T + K frames for uniform offsets, T + |k| fixed, T + min_negative_shift unlabeled); the dataset has
    ``max(1, F // T)`` items per such segment of F frames, so long videos weigh more.
    """

    def __init__(self, root: str | Path, frames: int = 50, max_offset: int = MAX_OFFSET,
                 cache_dir: str | Path | None = None, seed: int = 0,
                 offsets: Literal["uniform"] | int = "uniform", labels: bool = True,
                 extensions: tuple[str, ...] = VIDEO_EXTENSIONS, preprocessing: VideoPreprocessing = MOUTH,
                 min_negative_shift: int = 3, min_activity: float = 0.5, draws: int = 8,
                 detector: str = DEFAULT_DETECTOR,
                 max_open: int = 8, segments: Mapping[str, list[CachedSegment]] | None = None,
                 published_offsets: Mapping[str, int] | None = None) -> None:
        self.root = Path(root)
        if segments is None and not self.root.is_dir():
            raise EdgeSyncError(f"video folder not found: {self.root}; pass a folder that contains video files")
        if frames < 1:
            raise ValueError(f"frames must be >= 1, got {frames}")
        if offsets != "uniform" and not (isinstance(offsets, (int, np.integer)) and abs(int(offsets)) <= max_offset):
            raise ValueError(f"offsets must be 'uniform' or an int in -{max_offset}..{max_offset}, got {offsets!r}")
        if not labels and not 1 <= min_negative_shift <= max_offset:
            raise ValueError(f"min_negative_shift must be in 1..{max_offset}, got {min_negative_shift}")
        self.frames, self.max_offset, self.seed = frames, max_offset, seed
        self.offsets, self.labels = offsets, labels
        self.preprocessing, self.detector = preprocessing, detector
        self.min_negative_shift = min_negative_shift
        self.min_activity, self.draws = float(min_activity), max(1, int(draws))
        self.epoch = 0
        self.decodes = 0  # prepare_clip calls made by this instance (0 when everything came from the cache)
        self.cache_hits = 0
        self.skipped: list[SkippedFile] = []
        self.files: list[Path] = []
        self._cache = _ClipCache(Path(cache_dir)) if cache_dir is not None else None
        self._memory: dict[int, list[CachedSegment]] = {}
        self._open: OrderedDict[int, list[CachedSegment]] = OrderedDict()
        self._max_open = max_open
        self._keys: list[str] = []
        self._index: list[tuple[int, int, int]] = []  # (clip_id, segment index, segment frames)
        # file name -> frames its sound is late as published (argument, else MANIFEST.tsv's offset_frames)
        self.published_offsets = dict(published_offsets if published_offsets is not None
                                      else read_published_offsets(self.root) if segments is None else {})
        self._late: dict[int, int] = {}  # clip_id -> its published offset, where not 0
        if segments is None:
            self._build(find_videos(self.root, extensions, exclude=self._cache.root if self._cache else None))
        else:  # clips prepared elsewhere (synthetic clips rendered in memory): sampled exactly as a folder's
            self._cache = None
            for name, clip_segments in segments.items():
                self._add(self.root / name, name, clip_segments)
        counts = np.array([max(1, n // frames) for _, _, n in self._index], np.int64)
        self._ends = np.cumsum(counts)
        if not self._index:
            reasons = "; ".join(f"{s.path.name}: {s.reason}" for s in self.skipped[:5])
            raise EdgeSyncError(f"no usable clips under {self.root} ({len(self.skipped)} files skipped"
                                f"{': ' + reasons if reasons else ''}); add videos with a visible speaking face "
                                f"and sound, at least {self._needed_frames()} frames long")

    # --- building the index ----------------------------------------------------------------------
    def _needed_frames(self) -> int:
        """Segment length that every window of this dataset needs (video window plus its audio shift)."""
        if not self.labels:
            return self.frames + self.min_negative_shift
        shift = self.max_offset if self.offsets == "uniform" else abs(int(self.offsets))
        return self.frames + shift

    def _cache_key(self, path: Path) -> str:
        st = path.stat()
        ident = {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
                 "spec_version": SPEC_VERSION, "preprocessing": self.preprocessing.name,
                 "detector": self.detector, "format": CACHE_FORMAT}
        return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:32]

    def _prepare(self, path: Path, key: str) -> list[CachedSegment] | str:
        """Run the real pipeline on one file: segments, or the reason it cannot be used."""
        self.decodes += 1
        try:
            prepared = clip_features.prepare_clip(path, preprocessing=self.preprocessing, detector=self.detector)
        except (MediaError, NoFaceError, OSError) as err:
            reason = f"{type(err).__name__}: {err}"
            if self._cache is not None:
                self._cache.save_skip(key, reason, path)
            return reason
        segments = segments_from_clip(prepared, self.preprocessing)
        if self._cache is not None:
            self._cache.save(key, segments, path)
        return segments

    def _build(self, paths: list[Path]) -> None:
        for path in paths:
            try:
                key = self._cache_key(path)
            except OSError as err:
                self._skip(path, f"cannot stat file: {err}")
                continue
            result = self._cache.load(key) if self._cache is not None else None
            if result is None:
                result = self._prepare(path, key)
            else:
                self.cache_hits += 1
            if isinstance(result, str):
                self._skip(path, result)
                continue
            self._add(path, key, result)

    def _add(self, path: Path, key: str, segments: list[CachedSegment]) -> None:
        """Index a prepared clip's segments that are long enough for this dataset's windows."""
        need = self._needed_frames()
        late = int(self.published_offsets.get(path.name, 0))
        usable = [(i, s.frames - abs(late)) for i, s in enumerate(segments) if s.frames - abs(late) >= need]
        if not usable:
            longest = max((s.frames for s in segments), default=0)
            self._skip(path, f"no face segment of >= {need} frames (longest {longest}); use longer clips "
                             f"or lower frames/max_offset")
            return
        clip_id = len(self.files)
        if late:
            self._late[clip_id] = late
            log.info("%s: sound %+d frames late as published; its windows are realigned", path.name, late)
        self.files.append(path)
        self._keys.append(key)
        self._index.extend((clip_id, i, n) for i, n in usable)
        if self._cache is None:
            self._memory[clip_id] = segments

    def _skip(self, path: Path, reason: str) -> None:
        log.warning("skipping %s: %s", path, reason)
        self.skipped.append(SkippedFile(path, reason))

    # --- sampling --------------------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """Reseed the windows and offsets: same seed + epoch + index -> same sample, on any worker."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return int(self._ends[-1])

    def segments(self, clip_id: int) -> list[CachedSegment]:
        """The cached segments of file ``files[clip_id]`` (loaded lazily, a few files kept open), realigned where
        the file's sound is late as published."""
        if self._cache is None:
            return self._realigned(clip_id, self._memory[clip_id])
        if clip_id in self._open:
            self._open.move_to_end(clip_id)
            return self._open[clip_id]
        segments = self._cache.load(self._keys[clip_id])
        if not isinstance(segments, list):
            raise EdgeSyncError(f"cache entry for {self.files[clip_id]} disappeared from {self._cache.root}; "
                                "rebuild the dataset")
        segments = self._realigned(clip_id, segments)
        self._open[clip_id] = segments
        if len(self._open) > self._max_open:
            self._open.popitem(last=False)
        return segments

    def _realigned(self, clip_id: int, segments: list[CachedSegment]) -> list[CachedSegment]:
        late = self._late.get(clip_id, 0)
        return [realign(seg, late) for seg in segments] if late else segments

    def on_pass(self, index: int) -> tuple[int, int]:
        """(item, epoch) of ``index`` when the folder is read pass after pass, each pass drawing afresh."""
        return index % len(self), index // len(self)

    def _draw_offset(self, rng: np.random.Generator, available: int) -> int:
        """k for this item; ``available`` = segment frames beyond the window (F - T)."""
        if self.labels:
            if self.offsets == "uniform":
                return int(rng.integers(-self.max_offset, self.max_offset + 1))
            return int(self.offsets)
        top = min(self.max_offset, available)
        magnitude = int(rng.integers(self.min_negative_shift, top + 1))
        return magnitude if rng.random() < 0.5 else -magnitude

    def window(self, index: int, epoch: int | None = None) -> tuple[int, int, int, int]:
        """(clip_id, segment index, window start s within the segment, k) for item ``index``."""
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        clip_id, seg, n = self._index[int(np.searchsorted(self._ends, index, side="right"))]
        rng = np.random.default_rng([self.seed, self.epoch if epoch is None else epoch, index])
        energy = self.segments(clip_id)[seg].mfcc[0] if self.min_activity > 0 else None
        best, best_activity = (0, 0), -1.0
        for _ in range(self.draws):
            k = self._draw_offset(rng, n - self.frames)
            # video [s, s+T) and audio [s-k, s-k+T) must both lie in [0, n)
            lo, hi = max(0, k), n - self.frames + min(0, k)
            s = int(rng.integers(lo, hi + 1))
            if energy is None:
                return clip_id, seg, s, k
            first = s - k if self.labels else s  # the audio the sample pairs with its video
            steps = energy[MFCC_PER_FRAME * first:MFCC_PER_FRAME * (first + self.frames)]
            activity = float(steps.reshape(self.frames, MFCC_PER_FRAME).mean(axis=1).std())
            if activity >= self.min_activity:
                return clip_id, seg, s, k
            if activity > best_activity:
                best, best_activity = (s, k), activity
        return clip_id, seg, best[0], best[1]

    def _audio(self, segment: CachedSegment, first_frame: int) -> torch.Tensor:
        a = segment.mfcc[:, MFCC_PER_FRAME * first_frame:MFCC_PER_FRAME * (first_frame + self.frames)]
        return torch.from_numpy(np.ascontiguousarray(a, np.float32))[None]

    def sample(self, index: int, epoch: int | None = None) -> dict[str, torch.Tensor]:
        clip_id, seg_index, s, k = self.window(index, epoch)
        segment = self.segments(clip_id)[seg_index]
        video = torch.from_numpy(self.preprocessing.normalise(segment.crops[s:s + self.frames]))
        out: dict[str, Any] = {"video": video, "clip_id": torch.tensor(clip_id, dtype=torch.int64),
                               "frame_start": torch.tensor(segment.start + s, dtype=torch.int64)}
        if self.labels:
            out["audio"] = self._audio(segment, s - k)  # sound late by k: audio index t+k holds frame s+t
            out["offsets"] = torch.full((self.frames,), k, dtype=torch.int64)
            out["valid"] = torch.ones(self.frames, dtype=torch.bool)
        else:
            out["audio"] = self._audio(segment, s)
            out["negative_audio"] = self._audio(segment, s - k)
            out["negative_offset"] = torch.tensor(k, dtype=torch.int64)
        return out

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self.sample(index)
