"""The real-footage protocol: in-sync clips of real people, plus copies with the sound shifted by planted offsets.

Each clip goes through the real pipeline once (decode, face tracker, mouth crops); then for every planted offset
k (k > 0: the sound comes k frames late) the model sees the main face track's longest uninterrupted run with the
soundtrack moved by k frames. Only frames whose shifted sound is real audio of the clip are scored (the run is
trimmed by |k| frames), so an answer never rests on padding. The original (k = 0) must read 0 +-1, each copy its
planted k +-1. For every case the clip-level answer, its confidence and the per-frame evidence (the correlation
averaged over windows of c frames, the LRS2 context protocol on the clip's own evidence) are kept.

numpy only: any object with ``contract`` and ``run(audio, video) -> SyncResult`` scores, an :class:`Engine` on
any artifact and backend, or :class:`edge_sync.evaluation.torch_scorer.TorchScorer` on a PyTorch checkpoint.
"""
from __future__ import annotations

import csv
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Protocol, Sequence

import numpy as np

from edge_sync.errors import EdgeSyncError
from edge_sync.features.clip import CROP_FOR_PREPROCESSING, consecutive_runs, probe_for_sync
from edge_sync.features.faces import DEFAULT_DETECTOR, track_faces
from edge_sync.features.media import find_videos, iter_frames, read_audio
from edge_sync.features.mfcc import audio_to_mfcc_input
from edge_sync.features.video import to_model_input
from edge_sync.runtimes.evidence import (embedding_nulls, evidence_ratio, null_rolls, rolled_window,
                                         short_soundtrack, weak_evidence)
from edge_sync.spec import SAMPLES_PER_FRAME, VideoPreprocessing
from edge_sync.training.metrics import context_evaluation

log = logging.getLogger(__name__)

DEFAULT_PLANTED = (-12, -8, -4, -2, 2, 4, 8, 12)  # frames; the original (0) is always scored too
CONTEXTS = (5, 15)
TOLERANCE = 1  # frames
MIN_SCORED_FRAMES = 25  # a case needs a second of real audio after trimming
TAIL_SAMPLES = 240  # the last MFCC window reads 15 ms past a frame


class Scorer(Protocol):
    contract: Any
    embeddings: bool  # run_with_outputs also gives audio_emb and video_emb

    def run(self, audio: np.ndarray, video: np.ndarray) -> Any: ...

    def run_with_outputs(self, audio: np.ndarray, video: np.ndarray) -> tuple[Any, dict[str, np.ndarray]]: ...


@dataclass
class RealClip:
    """What the pipeline found in one file: the main track's longest run of crops and the whole soundtrack."""

    path: Path
    group: str  # MANIFEST.tsv's group ("real", "real-suspect", ...) or "real" without a manifest
    source: str  # where the clip comes from (manifest's source_repo, else the parent folder)
    start: int  # first frame of the run in the file
    crops: np.ndarray  # uint8 [F, S, S, 3]
    audio: np.ndarray  # float32 samples of the whole file, sample 0 = video frame 0
    video_frames: int  # frames in the file

    @property
    def frames(self) -> int:
        return int(self.crops.shape[0])

    @property
    def coverage(self) -> float:
        """Share of the file's frames in the scored run."""
        return self.frames / max(1, self.video_frames)

    def _scored(self, planted: int) -> tuple[int, int] | None:
        """The run's frames [lo, hi) whose sound, ``planted`` frames late, is real audio; None if too few."""
        lo, hi = max(planted, 0), self.frames + min(planted, 0)
        return (lo, hi) if hi - lo >= MIN_SCORED_FRAMES else None

    def _mfcc(self, span: tuple[int, int], planted: int, roll: int) -> np.ndarray:
        lo, hi = span
        first = (self.start + lo - planted + roll) * SAMPLES_PER_FRAME  # frame t hears source frame t - planted
        n = (hi - lo) * SAMPLES_PER_FRAME + TAIL_SAMPLES
        if roll:
            samples = rolled_window(self.audio, first, n)
        else:
            samples = self.audio[first:first + n]
            samples = np.pad(samples, (0, max(0, (hi - lo) * SAMPLES_PER_FRAME - len(samples))))
        return audio_to_mfcc_input(samples, hi - lo)

    def case_audio(self, planted: int, roll: int = 0) -> np.ndarray | None:
        """The MFCC input of a case: the sound ``planted`` frames late; ``roll`` > 0: of the whole soundtrack rolled
        by that many frames (the evidence null, rolled as ``sync_file`` rolls it: wrapping round the soundtrack's
        end). None if too short."""
        span = self._scored(planted)
        return None if span is None else self._mfcc(span, planted, roll)

    def case_inputs(self, planted: int, preprocessing: VideoPreprocessing) -> tuple[np.ndarray, np.ndarray] | None:
        """(audio MFCC, video) with the sound ``planted`` frames late, trimmed to real audio; None if too short."""
        span = self._scored(planted)
        if span is None:
            return None
        return self._mfcc(span, planted, 0), to_model_input(self.crops[span[0]:span[1]], preprocessing)

    def short_soundtrack(self, max_offset: int) -> bool:
        """Its soundtrack is under 3.04 s: the null's rolls are drawn nearer (:mod:`edge_sync.runtimes.evidence`)."""
        return short_soundtrack(len(self.audio) // SAMPLES_PER_FRAME, max_offset)

    def null_rolls(self, max_offset: int) -> list[int]:
        """The evidence null's rolls for this clip: those ``sync_file`` uses on the same soundtrack (none under
        1.52 s)."""
        return null_rolls(len(self.audio) // SAMPLES_PER_FRAME, max_offset, self.short_soundtrack(max_offset))


@dataclass
class CaseResult:
    clip: str
    group: str
    source: str
    planted: int
    detected: int
    confidence: float
    probability: float
    frames: int
    context_windows: dict[int, int] = field(default_factory=dict)
    context_hits: dict[int, int] = field(default_factory=dict)  # within +-1
    context_exact: dict[int, int] = field(default_factory=dict)
    # confidence over the null's (edge_sync.runtimes.evidence; None: the soundtrack is under 1.52 s)
    evidence_ratio: float | None = None
    null_too_short: bool = False  # the soundtrack is under 1.52 s: unsure whatever the confidence, as sync says

    @property
    def unsure(self) -> bool:
        """The null check calls this reading unsure (what ``sync``/``score`` would say, the evidence floor aside)."""
        return self.null_too_short or weak_evidence(self.evidence_ratio)

    @property
    def error(self) -> int:
        return self.detected - self.planted

    @property
    def right(self) -> bool:
        return abs(self.error) <= TOLERANCE


def tracked_shifts(cases: Iterable[CaseResult]) -> dict[tuple[str, int], bool]:
    """For every planted case whose clip's original was scored: did the reading move by the planted shift (+-1)?

    The absolute protocol assumes each clip is in sync as published; this one does not: a model that reads a clip at
    +2 and its +4 copy at +6 tracked the shift. Both are reported; the absolute one is the target."""
    cases = list(cases)
    original = {c.clip: c.detected for c in cases if c.planted == 0}
    return {(c.clip, c.planted): abs(c.detected - original[c.clip] - c.planted) <= TOLERANCE
            for c in cases if c.planted != 0 and c.clip in original}


def read_manifest(root: Path) -> dict[str, dict[str, str]]:
    """MANIFEST.tsv (columns ``file``, ``group``, ``source_repo``, ...) by file name; empty without one."""
    path = root / "MANIFEST.tsv"
    if not path.is_file():
        return {}
    with path.open(newline="", encoding="utf-8") as fh:
        return {row["file"]: row for row in csv.DictReader(fh, delimiter="\t") if row.get("file")}


def load_real_clip(path: Path, preprocessing: VideoPreprocessing, detector: str = DEFAULT_DETECTOR,
                   detect_every: int = 5, group: str = "real", source: str = "") -> RealClip:
    """Decode and track one file; the main (longest) track's longest run without a gap is scored."""
    probe_for_sync(path)
    crop = CROP_FOR_PREPROCESSING[preprocessing.name]
    tracks = track_faces(iter_frames(path), detector=detector, detect_every=detect_every, crops=(crop,))
    track = tracks.largest_track()
    i, j = max(consecutive_runs(track.frames), key=lambda r: r[1] - r[0])
    return RealClip(path, group, source or path.parent.name, int(track.frames[i]),
                    np.ascontiguousarray(getattr(track, crop)[i:j]), read_audio(path), tracks.num_frames)


def case_nulls(scorer: Scorer, clip: RealClip, planted: int, video: np.ndarray,
               outputs: dict[str, np.ndarray], reading: int = 0) -> list[float]:
    """A case's evidence null as ``sync_file`` measures it with the same model: none when the soundtrack is under
    1.52 s; read off the case's own embeddings (rolled round the case) where the scorer gives them and the case is
    long enough for rolls of its own (76 frames; 38 with a soundtrack under 3.04 s, whose rolls are drawn nearer);
    else the case's video scored again against the whole soundtrack rolled. ``reading``: the case's offset, around
    which a short soundtrack's embedding null places its rolls, as ``sync_file`` does."""
    k_max = scorer.contract.max_offset
    rolls, short = clip.null_rolls(k_max), clip.short_soundtrack(k_max)
    if scorer.embeddings and rolls and null_rolls(video.shape[2], k_max, short):
        return embedding_nulls(outputs["audio_emb"], outputs["video_emb"], k_max, short, reading if short else 0)
    return [scorer.run(clip.case_audio(planted, roll), video).confidence for roll in rolls]


def score_clip(scorer: Scorer, clip: RealClip, planted: Sequence[int] = DEFAULT_PLANTED,
               contexts: Sequence[int] = CONTEXTS) -> list[CaseResult]:
    """The original and every planted shift of one clip through ``scorer``."""
    out = []
    for k in (0, *planted):
        inputs = clip.case_inputs(int(k), scorer.contract.video)
        if inputs is None:
            continue
        res, outputs = scorer.run_with_outputs(*inputs)
        ratio = evidence_ratio(res.confidence, case_nulls(scorer, clip, int(k), inputs[1], outputs,
                                                          int(res.offset_frames)))
        ctx = context_evaluation([res.correlation], [int(k)], contexts, tolerance=TOLERANCE)
        exact = context_evaluation([res.correlation], [int(k)], contexts, tolerance=0)
        out.append(CaseResult(clip.path.name, clip.group, clip.source, int(k), int(res.offset_frames),
                              float(res.confidence), float(res.probability), int(res.frames),
                              {c: r.windows for c, r in ctx.items()}, {c: r.correct for c, r in ctx.items()},
                              {c: r.correct for c, r in exact.items()}, ratio,
                              null_too_short=not clip.null_rolls(scorer.contract.max_offset)))
    return out


@dataclass
class RealFootageReport:
    """Every case of every clip, plus the clips that could not be used and why."""

    model: str
    cases: list[CaseResult]
    skipped: dict[str, str] = field(default_factory=dict)
    coverage: dict[str, float] = field(default_factory=dict)  # clip -> share of its frames scored

    def select(self, group: str | None = None, source: str | None = None) -> list[CaseResult]:
        return [c for c in self.cases if (group is None or c.group == group) and (source is None or c.source == source)]

    @staticmethod
    def summary(cases: Iterable[CaseResult]) -> dict[str, Any]:
        cases = list(cases)
        orig = [c for c in cases if c.planted == 0]
        shifted = [c for c in cases if c.planted != 0]
        tracked = tracked_shifts(cases)
        right = [c.confidence for c in cases if c.right]
        wrong = [c.confidence for c in cases if not c.right]
        row: dict[str, Any] = {
            "clips": len(orig),
            "originals_right": sum(c.right for c in orig), "originals": len(orig),
            "planted_right": sum(c.right for c in shifted), "planted": len(shifted),
            "tracked_right": sum(tracked.values()), "tracked": len(tracked),
            "exact": sum(c.error == 0 for c in cases), "cases": len(cases),
            "confidence_right": float(np.median(right)) if right else float("nan"),
            "confidence_wrong": float(np.median(wrong)) if wrong else float("nan"),
            "unsure_right": sum(c.unsure for c in cases if c.right), "right": len(right),
            "unsure_wrong": sum(c.unsure for c in cases if not c.right), "wrong": len(wrong),
        }
        for ctx in sorted({k for c in cases for k in c.context_windows}):
            windows = sum(c.context_windows.get(ctx, 0) for c in cases)
            row[f"context{ctx}"] = sum(c.context_hits.get(ctx, 0) for c in cases) / windows if windows else float("nan")
            row[f"context{ctx}_exact"] = (sum(c.context_exact.get(ctx, 0) for c in cases) / windows
                                          if windows else float("nan"))
        return row

    def read_off(self, group: str = "real") -> dict[str, int]:
        """Clips this model reads consistently off as published: the original away from 0 by more than the tolerance,
        yet every planted shift but at most one found relative to that reading. Such a clip's sound is likely off by
        that much as published (a rough loudness check cannot see offsets under ~100 ms), or the model is biased on
        it; either way the absolute figures count all of its cases wrong, and the report says so."""
        by_clip: dict[str, list[CaseResult]] = {}
        for c in self.select(group=group):
            by_clip.setdefault(c.clip, []).append(c)
        out = {}
        for clip, cases in sorted(by_clip.items()):
            original = next((c for c in cases if c.planted == 0), None)
            tracked = tracked_shifts(cases)
            if original is not None and not original.right and tracked and sum(tracked.values()) >= len(tracked) - 1:
                out[clip] = original.detected
        return out

    def overall(self, group: str = "real") -> dict[str, Any]:
        return self.summary(self.select(group=group))

    def by_source(self, group: str = "real") -> dict[str, dict[str, Any]]:
        sources = sorted({c.source for c in self.select(group=group)})
        return {s: self.summary(self.select(group=group, source=s)) for s in sources}

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "overall": self.overall(), "by_source": self.by_source(),
                "skipped": self.skipped, "coverage": self.coverage,
                "cases": [{**asdict(c), "error": c.error, "right": c.right} for c in self.cases]}


def find_clips(root: Path, manifest: dict[str, dict[str, str]] | None = None,
               groups: Sequence[str] | None = None) -> list[tuple[Path, str, str]]:
    """(path, group, source) of the videos under ``root``; with ``groups``, only those manifest groups."""
    manifest = read_manifest(root) if manifest is None else manifest
    out = []
    for path in find_videos(root):
        row = manifest.get(path.name, {})
        group = row.get("group", "real")
        if groups is not None and group not in groups:
            continue
        out.append((path, group, _source_name(row.get("source_repo", ""), path, root)))
    return out


def _source_name(repo: str, path: Path, root: Path) -> str:
    if repo:
        return repo.split("/")[-1]
    rel = path.relative_to(root)
    return rel.parts[0] if len(rel.parts) > 1 else root.name


def load_clips(root: str | Path, preprocessing: VideoPreprocessing, detector: str = DEFAULT_DETECTOR,
               groups: Sequence[str] | None = None, names: Sequence[str] | None = None,
               progress: bool = True) -> tuple[list[RealClip], dict[str, str]]:
    """Decode and track every clip under ``root`` once (the expensive part); clips that fail are recorded."""
    from tqdm import tqdm

    root = Path(root)
    if not root.is_dir():
        raise EdgeSyncError(f"{root} is not a folder of videos")
    entries = find_clips(root, groups=groups)
    if names is not None:
        wanted = set(names)
        entries = [e for e in entries if e[0].name in wanted or e[0].stem in wanted]
        missing = wanted - {e[0].name for e in entries} - {e[0].stem for e in entries}
        if missing:
            raise EdgeSyncError(f"not found under {root} (or not in the groups asked for): {sorted(missing)}")
    if not entries:
        raise EdgeSyncError(f"no videos found under {root}" + (f" in groups {list(groups)}" if groups else ""))
    clips, skipped = [], {}
    for path, group, source in tqdm(entries, desc="decode + track", unit="clip", disable=not progress):
        try:
            clips.append(load_real_clip(path, preprocessing, detector, group=group, source=source))
        except EdgeSyncError as exc:  # MediaError, NoFaceError: the clip is skipped and recorded
            skipped[path.name] = str(exc).splitlines()[0]
            log.warning("skipping %s: %s", path.name, skipped[path.name])
    return clips, skipped


def evaluate_real(scorer: Scorer, clips: Sequence[RealClip], model: str, planted: Sequence[int] = DEFAULT_PLANTED,
                  skipped: dict[str, str] | None = None, progress: bool = True) -> RealFootageReport:
    from tqdm import tqdm

    cases = []
    for clip in tqdm(clips, desc=f"score {model}", unit="clip", disable=not progress):
        cases.extend(score_clip(scorer, clip, planted))
    return RealFootageReport(model, cases, dict(skipped or {}), {c.path.name: round(c.coverage, 4) for c in clips})
