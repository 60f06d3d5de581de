"""The real-footage split files agree with each other: a hold-out clip is never trained on, the scored hold-out and
the clips realigned for scoring are the hold-out's, and the independent set's scored list is its manifest's."""
from __future__ import annotations

import csv
from pathlib import Path

from edge_sync.cli import _clip_names
from edge_sync.data.folders import read_published_offsets

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def _names(path: Path) -> list[str]:
    return _clip_names(str(path))  # the reader `eval --clips` and fit_usecases.py use


def test_scored_hold_out_is_the_hold_out_less_the_clips_found_late():
    holdout = set(_names(SCRIPTS / "real_holdout.txt"))
    scored = set(_names(SCRIPTS / "real_holdout_in_sync.txt"))
    late = read_published_offsets(SCRIPTS / "real_holdout_offsets.tsv")
    assert len(scored) >= 8 and scored < holdout  # the "at least 8 clips"
    assert set(late) == holdout - scored and all(v != 0 for v in late.values())


def test_training_offsets_never_name_a_hold_out_clip():
    training = read_published_offsets(SCRIPTS / "real_published_offsets.tsv")
    assert training and not set(training) & set(_names(SCRIPTS / "real_holdout.txt"))


def test_independent_scored_list_is_the_manifest_rows_marked_scored():
    with (SCRIPTS / "independent_real_clips.tsv").open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader((line for line in fh if not line.startswith("#")), delimiter="\t"))
    scored = {r["file"] for r in rows if r["scored"] == "1"}
    assert scored == set(_names(SCRIPTS / "independent_in_sync.txt"))
    assert all(r["why_not_scored"] for r in rows if r["scored"] == "0")
    assert all(r["source_repo"] and "@" in r["source_path"] and r["license"] for r in rows)
