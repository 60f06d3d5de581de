"""Fit the use-case heads (sync quality, desync flag, active speakers) for an artifact's model and write the
hold-out evaluation as Markdown.

    .venv/bin/python scripts/fit_usecases.py                       # the bundled student (ONNX FP32)
    .venv/bin/python scripts/fit_usecases.py --artifact DIR --report docs/usecases.md
    .venv/bin/python scripts/fit_usecases.py --real ../shared/real_clips --real-holdout scripts/real_holdout.txt

With --real, the real clips outside the hold-out are fitted on too (as published, and with their sound moved by
-8, -4, +4, +8 frames; and, for the speaker head, side by side in pairs heard in turns), the hold-out ones judged the
same way, and the folder's `real-suspect` clips (published out of sync by the manifest's rough check) listed with
what the fitted heads say about them. --only speakers refits that head alone and keeps the others.

Clips are made, analysed once and their features cached under --workdir, so a rerun only refits. The heads
land in edge_sync/weights/usecases/<checkpoint sha>.json, where every artifact of that model finds them.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import edge_sync
from edge_sync.cli import _clip_names
from edge_sync.data.folders import read_published_offsets
from edge_sync.usecases.fitting import HEAD_NAMES, REAL_SPEAKER_CLIPS, evaluation_markdown, fit_usecases, \
    real_clips


def suspect_table(engine, root: Path) -> str:
    """What `score` and `desync` say about the folder's `real-suspect` clips, next to the manifest's note."""
    from edge_sync.evaluation.real_footage import find_clips, read_manifest
    from edge_sync.usecases.desync import flag_sync
    from edge_sync.usecases.heads import resolve_heads
    from edge_sync.usecases.quality import score_sync

    heads = resolve_heads(engine.manifest, "auto")
    notes = read_manifest(root)
    lines = ["The folder's `real-suspect` clips (published out of sync, by the manifest's rough mouth-vs-loudness "
             "check; not ground truth):", "",
             "| clip | manifest's note | offset | P(in sync) | quality says | desync says |", "|---|---|---|---|---|---|"]
    for path, _, _ in find_clips(root, notes, groups=("real-suspect",)):
        sync = engine.sync_file(path)
        q, d = score_sync(sync, heads), flag_sync(sync, heads)
        note = notes.get(path.name, {}).get("description", "")
        note = note[note.find("SUSPECT"):][:90] if "SUSPECT" in note else note[:90]
        p = "-" if q.sync_probability is None else f"{q.sync_probability:.2f}"
        said = ("in sync" if q.in_sync else "OUT OF SYNC" if q.in_sync is not None
                else "unsure" if q.low_evidence else "no verdict")
        lines.append(f"| {path.name} | {note.replace('|', '/')} | {sync.offset_frames:+d} | {p} | {said} | "
                     f"{'flagged' if d.flagged else 'ok' if d.flagged is not None else 'no verdict'} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifact", default=None, help="artifact directory (default: the bundled student)")
    parser.add_argument("--workdir", type=Path, default=Path("out/usecases"))
    parser.add_argument("--per-kind", type=int, default=16, help="training clips per manipulation kind")
    parser.add_argument("--holdout-per-kind", type=int, default=12)
    parser.add_argument("--speaker-clips", type=int, default=16)
    parser.add_argument("--holdout-speaker-clips", type=int, default=12)
    parser.add_argument("--real-speaker-clips", type=int, default=REAL_SPEAKER_CLIPS,
                        help="with --real: two-person clips made of pairs of the real training clips")
    parser.add_argument("--only", nargs="+", choices=HEAD_NAMES, default=list(HEAD_NAMES),
                        help="refit these heads only; the others (and their figures) are kept from the heads file")
    parser.add_argument("--real", type=Path, default=None, help="a folder of in-sync real clips with a MANIFEST.tsv")
    parser.add_argument("--real-holdout", default="scripts/real_holdout.txt",
                        help="with --real: the hold-out clips (file of names, or comma-separated)")
    parser.add_argument("--real-published", type=Path, nargs="*", default=[],
                        help="with --real: clips whose sound is late (+) or early as published, in frames (TSVs with "
                             "file and offset_frames, e.g. scripts/real_published_offsets.tsv for training clips and "
                             "scripts/real_holdout_offsets.tsv for hold-out ones); each is moved into sync before it "
                             "counts as genuine")
    parser.add_argument("--report", type=Path, default=Path("docs/usecases.md"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    start = time.perf_counter()
    engine = edge_sync.load(args.artifact)
    published = {name: late for path in (args.real_published if args.real else [])
                 for name, late in read_published_offsets(path).items()}
    real = real_clips(args.real, _clip_names(args.real_holdout), published=published) if args.real else None
    heads = fit_usecases(engine, args.workdir, args.per_kind, args.holdout_per_kind, args.speaker_clips,
                         args.holdout_speaker_clips, real=real, only=args.only,
                         real_speaker_clips=args.real_speaker_clips)
    table = evaluation_markdown(heads)
    if real is not None:
        table += "\n\n" + suspect_table(engine, args.real)
    args.report.parent.mkdir(parents=True, exist_ok=True)
    command = " ".join(["scripts/fit_usecases.py", *sys.argv[1:]])
    args.report.write_text("# Use cases: hold-out evaluation\n\nMade by `" + command + "` "
                           f"({time.perf_counter() - start:.0f} s on this run; each clip is made and analysed once, "
                           "then its features are cached under --workdir: the first run made 168 clips in about "
                           "25 min on a 2-core CPU shared with other jobs).\n\n"
                           "Synthetic manipulations of real-photo clips are easier than real deepfakes: the desync "
                           "figures say the features and head work, not how they fare on generated faces. The `real:` "
                           "rows are identity-disjoint real clips as published and with their sound moved by -8, -4, "
                           "+4, +8 frames (`--real`); the heads were fitted on the other real clips the same way. "
                           "The `real:` active-speaker rows are pairs of those hold-out clips side by side, heard in "
                           "turns: each face keeps talking, unheard, while the other is heard; the head was fitted on "
                           "pairs of the training clips made the same way."
                           + ("" if set(args.only) == set(HEAD_NAMES) else
                              f" This run refit {', '.join(args.only)} only; the other rows are the previous fit's.")
                           + f"\n\n{table}\n")
    print(f"wrote {heads.path}\n\n{table}")


if __name__ == "__main__":
    main()
