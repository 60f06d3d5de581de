"""scripts/embedding_null_check.py: both nulls of every case, and the tally of unsure answers it prints."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


@pytest.fixture(scope="module")
def check():
    spec = importlib.util.spec_from_file_location("embedding_null_check", SCRIPTS / "embedding_null_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_on_a_talking_photo_both_nulls_are_measured_and_tallied(check, talking_dir):
    """The bundled INT8 artifact reads every case right, well above both nulls, which agree within the spread the
    choice of roll alone gives the streamed one."""
    pytest.importorskip("onnxruntime", reason="pip install 'edge-sync[onnxruntime]'")
    from edge_sync.evaluation.real_footage import load_real_clip
    from edge_sync.training.evaluate_cli import scorer_for

    _, scorer = scorer_for("student-int8")
    clip = load_real_clip(talking_dir / "talk.mp4", scorer.contract.video)
    cases = list(check.both_nulls(scorer, clip, planted=(0, -6, 4)))
    assert [c[0] for c in cases] == [0, -6, 4]
    for planted, res, streamed, embedded in cases:
        assert len(streamed) == len(embedded) == 3
        spread = max(streamed) / min(streamed)
        assert 1 / spread < np.median(embedded) / np.median(streamed) < spread, (streamed, embedded)
        assert res.confidence > 2 * max(np.median(streamed), np.median(embedded))
    result = check.tally(cases, floor=0.0124)
    assert result["counts"]["streamed", "right"] == result["counts"]["embedding", "right"] == [0, 3]
    assert result["counts"]["embedding", "wrong"] == [0, 0] and len(result["ratios"]) == 3
    # a floor above every reading makes each one unsure, under either null
    assert check.tally(cases, floor=10.0)["counts"]["embedding", "right"] == [3, 3]


def test_cases_too_short_for_an_embedding_null_are_left_out(check, talking_dir):
    """A case under 76 frames has no rolls of its own (sync streams its null): compared with nothing, it is skipped
    rather than counted as sure in the embedding column."""
    pytest.importorskip("onnxruntime", reason="pip install 'edge-sync[onnxruntime]'")
    import dataclasses

    from edge_sync.evaluation.real_footage import load_real_clip
    from edge_sync.training.evaluate_cli import scorer_for

    _, scorer = scorer_for("student-int8")
    clip = load_real_clip(talking_dir / "talk.mp4", scorer.contract.video)
    short = dataclasses.replace(clip, crops=clip.crops[:80])  # the original 80 frames; a +-8 shift leaves 72
    assert [c[0] for c in check.both_nulls(scorer, short, planted=(0, 8, -8))] == [0]
