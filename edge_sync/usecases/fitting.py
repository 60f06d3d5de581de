"""Fit and evaluate the use-case heads for one artifact's model on synthetic clips with known answers, and on
clips of real people as published and with their sound moved (:class:`RealClips`).

Train clips use the speech bank's training voices and sentences, hold-out clips the hold-out ones (and other
seeds), so the reported figures are on speech the heads never saw. Each clip is analysed once through the real
pipeline (encode -> decode -> faces -> model) and its features cached, so a rerun only refits. Needs
scikit-learn (``pip install edge-sync[dev]``); the fitted heads are applied with numpy alone.
"""
from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from tqdm import tqdm

from edge_sync.data.scenes import DESYNC_KINDS, make_desync_clip, make_speakers_clip
from edge_sync.errors import EdgeSyncError, MediaError
from edge_sync.spec import FRAME_MS
from edge_sync.usecases.features import DESYNC_FEATURES, QUALITY_FEATURES, SPEAKER_FEATURES, desync_features, \
    speaker_frame_features, vector
from edge_sync.usecases.heads import LogisticHead, UsecaseHeads, heads_path, read_heads, with_floor_of

log = logging.getLogger(__name__)
SPLIT_SEEDS = {"train": 0, "holdout": 100_000}


@dataclass
class Examples:
    x: np.ndarray
    y: np.ndarray
    group: np.ndarray  # desync: the manipulation kind; speakers: the clip index


def _cached(path: Path, make) -> dict[str, np.ndarray]:
    if path.is_file():
        with np.load(path) as f:
            return dict(f)
    data = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **data)
    return data


def desync_examples(engine: Any, split: str, per_kind: int, workdir: Path, progress: bool = True) -> Examples:
    """One row per clip: DESYNC_FEATURES, label manipulated (1) or genuine (0), group = kind."""
    rows, labels, groups = [], [], []
    jobs = [(kind, i) for i in range(per_kind) for kind in DESYNC_KINDS]
    for kind, i in tqdm(jobs, desc=f"desync clips ({split})", disable=not progress, unit="clip"):
        seed = SPLIT_SEEDS[split] + i

        def make() -> dict[str, np.ndarray]:
            clip = make_desync_clip(workdir / "clips" / f"{split}-{kind}-{seed}.mp4", kind, seed, split)
            sync = engine.sync_file(clip.path, null_check=False)  # fitting reads no null
            clip.path.unlink()
            return {"x": vector(desync_features(sync, sync.main), DESYNC_FEATURES)}

        data = _cached(workdir / "features" / f"desync-{split}-{kind}-{seed}.npz", make)
        rows.append(data["x"])
        labels.append(int(kind != "genuine"))
        groups.append(kind)
    return Examples(np.stack(rows), np.asarray(labels), np.asarray(groups))


@dataclass(frozen=True)
class RealClips:
    """In-sync clips of real people (a folder like ``shared/real_clips``), split by name into clips the heads are fitted
    on and an identity-disjoint hold-out they are judged on. Each clip counts as published (``real genuine``) and
    with its sound moved by each of ``shifts`` frames (``real shifted``): the synthetic clips alone left the heads
    reading a real clip's weak evidence as out of sync and a 5-frame offset as in sync."""

    root: Path
    train: tuple[str, ...]
    holdout: tuple[str, ...]
    shifts: tuple[int, ...] = (-8, -4, 4, 8)
    # name -> frames its sound is late as published (scripts/real_published_offsets.tsv for training clips,
    # real_holdout_offsets.tsv for hold-out ones): its "genuine" copy is moved back into sync, each shifted copy to
    # exactly its shift
    published: Mapping[str, int] = field(default_factory=dict)


def real_clips(root: str | Path, holdout: Sequence[str], group: str = "real",
               published: Mapping[str, int] | None = None) -> RealClips:
    """The manifest's ``group`` clips under ``root``: those named in ``holdout`` on one side, the rest on the other;
    ``published``: clips on either side measured late or early as published (frames, + = late)."""
    from edge_sync.evaluation.real_footage import find_clips

    names = sorted(p.name for p, _, _ in find_clips(Path(root), groups=(group,)))
    held = set(holdout)
    return RealClips(Path(root), tuple(n for n in names if n not in held), tuple(n for n in names if n in held),
                     published=dict(published or {}))


def real_examples(engine: Any, clips: RealClips, split: str, workdir: Path, progress: bool = True) -> Examples:
    """One row per (clip, shift): DESYNC_FEATURES; label 1 (manipulated) for a moved soundtrack; group ``real
    genuine`` or ``real shifted``. A shifted copy is the clip re-muxed with its sound late by that many frames
    (:func:`edge_sync.usecases.fix.fix_file`: video stream-copied), analysed like any file a user brings."""
    from edge_sync.usecases.fix import fix_file

    names = clips.train if split == "train" else clips.holdout
    rows, labels, groups = [], [], []
    jobs = [(name, shift) for name in names for shift in (0, *clips.shifts)]
    for name, shift in tqdm(jobs, desc=f"real clips ({split})", disable=not progress, unit="clip"):
        src = clips.root / name
        move = shift - int(clips.published.get(name, 0))  # frames to move the file's sound by

        def make() -> dict[str, np.ndarray]:
            if move == 0:
                sync = engine.sync_file(src, null_check=False)
            else:
                iso = src.suffix.lower() in (".mp4", ".m4v", ".mov")  # keeps an edit list, which Matroska cannot
                moved = workdir / "clips" / f"real-{src.stem}-{move:+d}{src.suffix.lower() if iso else '.mkv'}"
                moved.parent.mkdir(parents=True, exist_ok=True)
                fix_file(src, moved, delay_ms=-move * FRAME_MS)  # fix moves the sound earlier by delay_ms
                try:
                    sync = engine.sync_file(moved, null_check=False)
                finally:
                    moved.unlink(missing_ok=True)
            return {"x": vector(desync_features(sync, sync.main), DESYNC_FEATURES)}

        try:
            data = _cached(workdir / "features" / f"real-{src.stem}-{move:+d}.npz", make)
        except MediaError as err:  # e.g. a moved copy of an MP4 whose edit list hides its first frames
            log.warning("leaving out %s moved by %+d frames: %s", name, shift, str(err).splitlines()[0])
            continue
        rows.append(data["x"])
        labels.append(int(shift != 0))
        groups.append("real shifted" if shift else "real genuine")
    return Examples(np.stack(rows), np.asarray(labels), np.asarray(groups))


def _joined(a: Examples, b: Examples) -> Examples:
    return Examples(np.concatenate([a.x, b.x]), np.concatenate([a.y, b.y]), np.concatenate([a.group, b.group]))


SPEAKER_CACHE = "speakers-v4"  # feature cache name: v4 since the best-offset columns (v3: equal sides; v2: window)


def _speaker_rows(engine: Any, clip: Any) -> dict[str, np.ndarray]:
    """SPEAKER_FEATURES and the truth for every face-track frame of a written two-face clip (deleted after).

    Tracks are matched to the faces by their mean box centre; a face the tracker missed for a while simply
    contributes fewer frames."""
    sync = engine.sync_file(clip.path, null_check=False)  # fitting reads no null
    clip.path.unlink()
    feats, labels = [], []
    for track in sync.tracks:
        face = int(np.argmin([abs(track.cues["box"][:, 0].mean() - fx) for fx in clip.face_x]))
        f = speaker_frame_features(sync, track)
        feats.append(f)
        labels.append(clip.speaking[face, track.start_frame:track.start_frame + len(f)])
    return {"x": np.concatenate(feats), "y": np.concatenate(labels).astype(np.int8)}


def _stacked(parts: list[dict[str, np.ndarray]], offset: int = 0) -> Examples:
    if not parts:  # e.g. a hold-out of one clip makes no pair
        return Examples(np.zeros((0, len(SPEAKER_FEATURES))), np.zeros(0, np.int8), np.zeros(0, np.int64))
    return Examples(np.concatenate([d["x"] for d in parts]), np.concatenate([d["y"] for d in parts]),
                    np.concatenate([np.full(len(d["y"]), offset + i) for i, d in enumerate(parts)]))


def speaker_examples(engine: Any, split: str, count: int, workdir: Path, progress: bool = True) -> Examples:
    """One row per face-track frame of ``count`` rendered two-person clips: SPEAKER_FEATURES, label speaking,
    group = clip index."""
    parts = []
    for i in tqdm(range(count), desc=f"speaker clips ({split})", disable=not progress, unit="clip"):
        seed = SPLIT_SEEDS[split] + i
        parts.append(_cached(workdir / "features" / f"{SPEAKER_CACHE}-{split}-{seed}.npz", lambda: _speaker_rows(
            engine, make_speakers_clip(workdir / "clips" / f"{split}-speakers-{seed}.mp4", seed, split))))
    return _stacked(parts)


def real_speaker_pairs(clips: RealClips, split: str, count: int | None = None) -> list[tuple[str, str]]:
    """Which two real clips sit side by side: neighbours in a seeded shuffle of the split's clips (the hold-out's
    in name order), ``count`` pairs (default: one per clip), so every clip is on both sides once."""
    names = list(clips.train if split == "train" else clips.holdout)
    if split == "train":
        np.random.default_rng(0).shuffle(names)
    count = len(names) if count is None else count
    return [(names[i % len(names)], names[(i + 1) % len(names)]) for i in range(count)] if len(names) > 1 else []


def real_speaker_examples(engine: Any, clips: RealClips, split: str, count: int | None, workdir: Path,
                          progress: bool = True) -> Examples:
    """One row per face-track frame of two real clips side by side heard in turns
    (:func:`edge_sync.data.real_speakers.make_real_speakers_clip`); groups follow on from the rendered clips'."""
    from edge_sync.data.real_speakers import make_real_speakers_clip

    parts = []
    pairs = real_speaker_pairs(clips, split, count)
    for i, (left, right) in enumerate(tqdm(pairs, desc=f"real speaker clips ({split})", disable=not progress,
                                           unit="clip")):
        name = f"{SPEAKER_CACHE}-real-{split}-{Path(left).stem}-{Path(right).stem}-{i}"
        parts.append(_cached(workdir / "features" / f"{name}.npz", lambda: _speaker_rows(engine, make_real_speakers_clip(
            workdir / "clips" / f"{name}.mp4", clips.root / left, clips.root / right, seed=SPLIT_SEEDS[split] + i))))
    return _stacked(parts, offset=10_000)


def fit_head(x: np.ndarray, y: np.ndarray, names: tuple[str, ...]) -> LogisticHead:
    """Standardised L2 logistic regression with balanced classes; threshold 0.5 (the balanced decision)."""
    from sklearn.linear_model import LogisticRegression

    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale = np.where(scale > 1e-9, scale, 1.0)
    model = LogisticRegression(C=1.0, class_weight="balanced", max_iter=2000).fit((x - mean) / scale, y)
    return LogisticHead(names, mean, scale, model.coef_[0].astype(np.float64), float(model.intercept_[0]), 0.5)


def _binary_report(y: np.ndarray, p: np.ndarray, threshold: float,
                   decided: np.ndarray | None = None) -> dict[str, float]:
    from sklearn.metrics import average_precision_score, roc_auc_score

    decided = p >= threshold if decided is None else decided
    out = {"n": int(len(y)), "positives": int(y.sum()), "accuracy": float((decided == y).mean())}
    if 0 < y.sum() < len(y):
        out.update({"roc_auc": float(roc_auc_score(y, p)), "average_precision": float(average_precision_score(y, p))})
    return out


def evaluate_desync(head: LogisticHead, ex: Examples) -> dict[str, Any]:
    """ROC-AUC and AP of the head's probability; accuracy of the flag as `edge-sync desync` decides it."""
    from edge_sync.usecases.desync import decide

    p = head.probability(ex.x)
    flagged = np.array([decide(dict(zip(DESYNC_FEATURES, row)), head)[0] for row in ex.x])
    report = {"all": _binary_report(ex.y, p, head.threshold, flagged)}
    pairs = [("genuine", kind) for kind in DESYNC_KINDS[1:]] + [("real genuine", "real shifted")]
    for genuine, kind in pairs:
        keep = (ex.group == kind) | (ex.group == genuine)
        if (ex.group == kind).any():
            name = f"genuine vs {kind}" if genuine == "genuine" else "real: genuine vs shifted"
            report[name] = _binary_report(ex.y[keep], p[keep], head.threshold, flagged[keep])
    return report


def quality_subset(ex: Examples) -> Examples:
    """In sync (genuine) vs constant offsets, synthetic and real: what a sync-quality score must separate."""
    keep = np.isin(ex.group, ("genuine", "shifted", "real genuine", "real shifted"))
    x = ex.x[keep][:, [DESYNC_FEATURES.index(n) for n in QUALITY_FEATURES]]
    return Examples(x, np.isin(ex.group[keep], ("genuine", "real genuine")).astype(int), ex.group[keep])


def _quality_report(head: LogisticHead, ex: Examples) -> dict[str, Any]:
    report = {}
    for name, groups in (("in sync vs shifted", ("genuine", "shifted")),
                         ("real: in sync vs shifted", ("real genuine", "real shifted"))):
        keep = np.isin(ex.group, groups)
        if keep.any():
            report[name] = _binary_report(ex.y[keep], head.probability(ex.x[keep]), 0.5)
            lse_c = ex.x[keep][:, 0]
            report[name.replace("in sync vs shifted", "lse_c alone")] = _binary_report(
                ex.y[keep], lse_c, float(np.median(lse_c)))
    return report


def evaluate_speakers(head: LogisticHead, ex: Examples, real: Examples | None = None) -> dict[str, Any]:
    """Frame accuracy, ROC-AUC and AP on the rendered hold-out clips, and on the real ones where given."""
    out: dict[str, Any] = {}
    for prefix, part in (("", ex), ("real: ", real)):
        if part is None or not len(part.y):
            continue
        raw = part.x[:, SPEAKER_FEATURES.index("sync_prob_near_0")]
        out.update({f"{prefix}head": _binary_report(part.y, head.probability(part.x), head.threshold),
                    f"{prefix}sync evidence alone": _binary_report(part.y, raw, 0.5),
                    f"{prefix}clips": int(len(np.unique(part.group)))})
    return out


HEAD_NAMES = ("desync", "quality", "speakers")
REAL_SPEAKER_CLIPS = 24  # real two-person training clips (pairs of the real training clips)


def fit_usecases(engine: Any, workdir: Path, per_kind: int = 16, holdout_per_kind: int = 12,
                 speaker_clips: int = 16, holdout_speaker_clips: int = 12, out: Path | None = None,
                 progress: bool = True, real: RealClips | None = None, only: Sequence[str] = HEAD_NAMES,
                 real_speaker_clips: int = REAL_SPEAKER_CLIPS) -> UsecaseHeads:
    """Fit the quality, desync and speaker heads for ``engine``'s model (on synthetic clips, and on ``real``'s
    training clips where given); evaluate on hold-out clips of each; write them. ``only``: refit these heads and
    keep the others (and their evaluation) from the heads file the refit replaces."""
    sha = (engine.manifest.get("source") or {}).get("checkpoint_sha256")
    if not sha:
        raise ValueError("the artifact's manifest names no source checkpoint_sha256; re-export it with edge-sync")
    unknown = set(only) - set(HEAD_NAMES)
    if unknown or not only:
        raise ValueError(f"only: choose among {', '.join(HEAD_NAMES)}, got {sorted(only)}")
    workdir = Path(workdir) / sha[:16]
    target = Path(out or heads_path(sha))
    previous = _previous_heads(target)
    kept = [name for name in HEAD_NAMES if name not in only]
    if kept and (previous is None or any(name not in previous.heads for name in kept)):
        raise ValueError(f"{target} has no {', '.join(kept)} head to keep; refit every head")
    heads = {name: previous.heads[name] for name in kept} if previous is not None else {}
    evaluation = {name: previous.evaluation.get(name) for name in kept} if previous is not None else {}
    recipe = dict(previous.evaluation.get("recipe", {})) if previous is not None and kept else {}
    recipe.update({"backend": engine.backend, "artifact": engine.manifest.get("name"),
                   "precision": engine.manifest.get("precision")})
    if real is not None or not kept:  # a kept head's real clips stay on record when this refit has none
        recipe["real"] = None if real is None else {"root": str(real.root), "train": list(real.train),
                                                    "holdout": list(real.holdout), "shifts": list(real.shifts)}
    if "desync" in only or "quality" in only:
        train_d = desync_examples(engine, "train", per_kind, workdir, progress)
        test_d = desync_examples(engine, "holdout", holdout_per_kind, workdir, progress)
        if real is not None:
            train_d = _joined(train_d, real_examples(engine, real, "train", workdir, progress))
            test_d = _joined(test_d, real_examples(engine, real, "holdout", workdir, progress))
        recipe.update({"per_kind": per_kind, "holdout_per_kind": holdout_per_kind})
        if "desync" in only:
            heads["desync"] = fit_head(train_d.x, train_d.y, DESYNC_FEATURES)
            evaluation["desync"] = evaluate_desync(heads["desync"], test_d)
        if "quality" in only:
            train_q, test_q = quality_subset(train_d), quality_subset(test_d)
            heads["quality"] = fit_head(train_q.x, train_q.y, QUALITY_FEATURES)
            evaluation["quality"] = _quality_report(heads["quality"], test_q)
    if "speakers" in only:
        train_s = speaker_examples(engine, "train", speaker_clips, workdir, progress)
        test_s = speaker_examples(engine, "holdout", holdout_speaker_clips, workdir, progress)
        real_test = None
        if real is not None:  # real people side by side: the head was fitted on rendered photos alone before
            train_s = _joined(train_s, real_speaker_examples(engine, real, "train", real_speaker_clips, workdir,
                                                             progress))
            real_test = real_speaker_examples(engine, real, "holdout", None, workdir, progress)
        heads["speakers"] = fit_head(train_s.x, train_s.y, SPEAKER_FEATURES)
        evaluation["speakers"] = evaluate_speakers(heads["speakers"], test_s, real_test)
        recipe.update({"speaker_clips": speaker_clips, "holdout_speaker_clips": holdout_speaker_clips,
                       "real_speaker_clips": real_speaker_clips if real is not None else 0})
    evaluation = {"recipe": recipe, **{name: evaluation[name] for name in HEAD_NAMES}}
    heads = with_floor_of(UsecaseHeads(sha, {name: heads[name] for name in HEAD_NAMES}, evaluation), previous)
    path = heads.write(target)
    log.info("use-case heads: %s", json.dumps(evaluation))
    return dataclasses.replace(heads, path=path)


def _previous_heads(path: Path) -> UsecaseHeads | None:
    """The heads file a refit replaces (its evidence floor carries over); a broken one is replaced, not fatal."""
    if not path.is_file():
        return None
    try:
        return read_heads(path)
    except EdgeSyncError as err:
        log.warning("%s; it is replaced and any evidence floor in it is lost", err)
        return None


def evaluation_markdown(heads: UsecaseHeads) -> str:
    """The hold-out figures as Markdown tables (ROC-AUC, mAP, accuracy)."""
    ev = heads.evaluation
    lines = [f"Hold-out clips for model `{heads.checkpoint_sha256[:12]}` "
             f"({ev['recipe']['artifact']}, {ev['recipe']['precision']}, {ev['recipe']['backend']}).", "",
             "| use case | comparison | n (positives) | ROC-AUC | AP | accuracy at threshold |",
             "|---|---|---|---|---|---|"]

    def row(case: str, name: str, r: dict[str, float]) -> str:
        return (f"| {case} | {name} | {r['n']} ({r['positives']}) | {r.get('roc_auc', float('nan')):.3f} "
                f"| {r.get('average_precision', float('nan')):.3f} | {r['accuracy']:.1%} |")

    for name, r in ev["desync"].items():
        lines.append(row("desync flag", name, r))
    for name, r in ev["quality"].items():
        lines.append(row("sync quality", name, r))
    for prefix in ("", "real: "):
        if f"{prefix}head" in ev["speakers"]:
            lines.append(row("active speaker (frames)", f"{prefix}fitted head", ev["speakers"][f"{prefix}head"]))
            lines.append(row("active speaker (frames)", f"{prefix}sync evidence alone",
                             ev["speakers"][f"{prefix}sync evidence alone"]))
    return "\n".join(lines)


EVIDENCE_MARGIN = 0.9  # the floor sits this far under the weakest right answer, so none of those becomes "unsure"


def evidence_floor(right_confidences: Sequence[float], margin: float = EVIDENCE_MARGIN) -> float:
    """The LSE-C floor under which a reading carries too little sync evidence for a verdict: ``margin`` x the lowest
    confidence among a model's right answers on real clips with known offsets (an originals-and-planted-shifts
    evaluation, `edge-sync eval --data`). Every reading the model got right there keeps its verdict; on real faces
    it cannot read, its answers fall under it (docs/applications.md)."""
    values = np.asarray(list(right_confidences), np.float64)
    if values.size == 0 or not np.all(np.isfinite(values)) or np.any(values < 0):
        raise ValueError("evidence_floor needs the finite, non-negative confidences of at least one right answer")
    if not 0 < margin <= 1:
        raise ValueError(f"margin must be in (0, 1], got {margin}")
    return float(margin * values.min())
