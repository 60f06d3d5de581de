"""Fitting the use-case heads on real clips: the hold-out split, and the moved-sound copies each clip adds."""
from __future__ import annotations

import numpy as np
import pytest

from edge_sync.usecases.features import DESYNC_FEATURES
from edge_sync.usecases.fitting import (Examples, RealClips, evidence_floor, quality_subset, real_clips,
                                        real_examples)

pytest.importorskip("onnxruntime", reason="pip install 'edge-sync[onnxruntime]'")


def test_real_clips_keep_the_holdout_apart_and_only_the_real_group(tmp_path):
    rows = [("a.mp4", "real"), ("b.mp4", "real"), ("c.mp4", "real"), ("late.mp4", "real-suspect")]
    (tmp_path / "MANIFEST.tsv").write_text("file\tgroup\n" + "".join(f"{f}\t{g}\n" for f, g in rows))
    for name, _ in rows:
        (tmp_path / name).write_bytes(b"")
    clips = real_clips(tmp_path, ["b.mp4"])
    assert clips.train == ("a.mp4", "c.mp4") and clips.holdout == ("b.mp4",)


def test_real_examples_label_each_moved_soundtrack_and_measure_its_shift(tmp_path, engine):
    from edge_sync.data.talking_photo import make_talking_photo_clip

    root = tmp_path / "clips"
    root.mkdir()
    make_talking_photo_clip(root / "talk.mp4", "We check the sound against the mouth, one two three four.")
    clips = RealClips(root, ("talk.mp4",), (), shifts=(-6, 5))
    work = tmp_path / "work"
    ex = real_examples(engine, clips, "train", work, progress=False)
    assert ex.y.tolist() == [0, 1, 1]
    assert ex.group.tolist() == ["real genuine", "real shifted", "real shifted"]
    offsets = ex.x[:, DESYNC_FEATURES.index("abs_offset")]
    assert offsets[0] <= 1 and abs(offsets[1] - 6) <= 1 and abs(offsets[2] - 5) <= 1, offsets
    assert not list((work / "clips").glob("*.mkv"))  # the moved copies are analysed, then removed
    again = real_examples(engine, clips, "train", work, progress=False)  # from the feature cache
    np.testing.assert_array_equal(again.x, ex.x)


def test_a_clip_published_late_is_moved_into_sync_before_it_counts_as_genuine(tmp_path, engine):
    """Its sound 4 frames late as published: the genuine copy reads in sync and the -6 copy reads 6 off, where
    taking the file as it is would have fitted 'in sync' to a 4-frame offset and 'shifted' to a 2-frame one."""
    from edge_sync.data.talking_photo import make_talking_photo_clip

    root = tmp_path / "clips"
    root.mkdir()
    make_talking_photo_clip(root / "late.mp4", "We check the sound against the mouth, one two three four.",
                            offset_frames=4)
    clips = RealClips(root, ("late.mp4",), (), shifts=(-6,), published={"late.mp4": 4})
    ex = real_examples(engine, clips, "train", tmp_path / "work", progress=False)
    offsets = ex.x[:, DESYNC_FEATURES.index("abs_offset")]
    assert ex.y.tolist() == [0, 1] and offsets[0] <= 1 and abs(offsets[1] - 6) <= 1, offsets


def test_quality_subset_counts_real_in_sync_clips_as_in_sync():
    groups = np.array(["genuine", "shifted", "swapped", "real genuine", "real shifted"])
    ex = Examples(np.arange(5 * len(DESYNC_FEATURES), dtype=float).reshape(5, -1), np.array([0, 1, 1, 0, 1]), groups)
    q = quality_subset(ex)
    assert q.group.tolist() == ["genuine", "shifted", "real genuine", "real shifted"]
    assert q.y.tolist() == [1, 0, 1, 0]


def test_the_evidence_floor_sits_under_every_right_answer() -> None:
    right = [0.13, 0.034, 0.2, 0.05]
    floor = evidence_floor(right)
    assert floor == pytest.approx(0.9 * 0.034) and all(c > floor for c in right)
    assert evidence_floor(right, margin=1.0) == pytest.approx(0.034)
    for bad in ([], [0.1, float("nan")], [-0.1]):
        with pytest.raises(ValueError, match="right answer"):
            evidence_floor(bad)
    with pytest.raises(ValueError, match="margin"):
        evidence_floor(right, margin=0)


def test_refitting_the_heads_keeps_the_models_evidence_floor(tmp_path, engine) -> None:
    """fit_usecases rewrites the heads file; the floor fitted beside it for the same model must survive."""
    import dataclasses

    from edge_sync.usecases.fitting import fit_usecases
    from edge_sync.usecases.heads import heads_for, read_heads

    out = tmp_path / "heads.json"
    bundled = heads_for(engine.manifest)
    dataclasses.replace(bundled, evidence_floor=0.0123, evidence_fit={"right_answers": 7}).write(out)
    refit = fit_usecases(engine, tmp_path / "work", per_kind=1, holdout_per_kind=1, speaker_clips=2,
                         holdout_speaker_clips=2, out=out, progress=False)
    assert read_heads(out).evidence_floor == refit.evidence_floor == 0.0123
    assert read_heads(out).evidence_fit == {"right_answers": 7}


def test_a_broken_previous_heads_file_is_replaced_not_fatal(tmp_path) -> None:
    from edge_sync.usecases.fitting import _previous_heads

    broken = tmp_path / "heads.json"
    assert _previous_heads(broken) is None  # none yet
    broken.write_text("{not json")
    assert _previous_heads(broken) is None


def test_refitting_one_head_keeps_the_others_and_their_figures(tmp_path, engine) -> None:
    from edge_sync.usecases.features import SPEAKER_FEATURES
    from edge_sync.usecases.fitting import fit_usecases
    from edge_sync.usecases.heads import heads_for, read_heads

    out = tmp_path / "heads.json"
    bundled = heads_for(engine.manifest)
    bundled.write(out)
    fit_usecases(engine, tmp_path / "work", speaker_clips=2, holdout_speaker_clips=1, out=out, progress=False,
                 only=("speakers",))
    refit = read_heads(out)
    for name in ("desync", "quality"):
        assert refit.heads[name].to_dict() == bundled.heads[name].to_dict()
        assert refit.evaluation[name] == bundled.evaluation[name]
    assert refit.heads["speakers"].features == SPEAKER_FEATURES and refit.evaluation["speakers"]["clips"] == 1
    assert refit.evidence_floor == bundled.evidence_floor
    with pytest.raises(ValueError, match="choose among"):
        fit_usecases(engine, tmp_path / "work", out=out, only=("speaker",))
    with pytest.raises(ValueError, match="no desync, quality head to keep"):
        fit_usecases(engine, tmp_path / "work", out=tmp_path / "none.json", only=("speakers",))


def test_a_split_too_small_to_pair_gives_no_real_speaker_rows(tmp_path) -> None:
    """A hold-out of one clip makes no pair: an empty set (and no real rows in the figures), not a crash."""
    from edge_sync.usecases.features import SPEAKER_FEATURES
    from edge_sync.usecases.fitting import evaluate_speakers, real_speaker_examples, real_speaker_pairs
    from edge_sync.usecases.heads import LogisticHead

    clips = RealClips(tmp_path, ("a.mp4", "b.mp4", "c.mp4"), ("d.mp4",))
    assert real_speaker_pairs(clips, "holdout") == [] and len(real_speaker_pairs(clips, "train")) == 3
    empty = real_speaker_examples(None, clips, "holdout", None, tmp_path)  # nothing to make: no engine needed
    assert empty.x.shape == (0, len(SPEAKER_FEATURES)) and len(empty.y) == len(empty.group) == 0
    n = len(SPEAKER_FEATURES)
    head = LogisticHead(SPEAKER_FEATURES, np.zeros(n), np.ones(n), np.ones(n), 0.0)
    rendered = Examples(np.zeros((4, n)), np.array([0, 1, 0, 1]), np.zeros(4))
    assert "real: head" not in evaluate_speakers(head, rendered, empty)
