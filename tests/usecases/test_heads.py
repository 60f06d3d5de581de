"""Heads: the logistic arithmetic by hand, the file format, and finding a model's heads by its checkpoint."""
from __future__ import annotations

import json

import numpy as np
import pytest

from edge_sync.errors import EdgeSyncError
from edge_sync.usecases import heads as heads_mod
from edge_sync.usecases.heads import LogisticHead, UsecaseHeads, heads_for, read_heads, with_floor_of


def _head() -> LogisticHead:
    return LogisticHead(("a", "b"), np.array([1.0, -2.0]), np.array([2.0, 0.5]), np.array([0.5, -1.0]), 0.25, 0.6)


def test_probability_is_the_standardised_logistic() -> None:
    x = np.array([[3.0, -1.0], [1.0, -2.0]])
    z0 = 0.5 * (3 - 1) / 2 - 1.0 * (-1 + 2) / 0.5 + 0.25  # = -1.25
    p = _head().probability(x)
    assert p[0] == pytest.approx(1 / (1 + np.exp(1.25)))
    assert p[1] == pytest.approx(1 / (1 + np.exp(-0.25)))
    assert z0 == pytest.approx(-1.25)
    with pytest.raises(ValueError, match="expected 2 features"):
        _head().probability(np.zeros(3))


def test_round_trip_and_lookup_by_checkpoint(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(heads_mod, "HEADS_DIR", tmp_path)
    sha = "ab" * 32
    written = UsecaseHeads(sha, {"quality": _head()}, {"note": 1}).write(heads_mod.heads_path(sha))
    back = read_heads(written)
    assert back.checkpoint_sha256 == sha and back.evaluation == {"note": 1}
    np.testing.assert_allclose(back.get("quality").probability([2.0, 0.0]), _head().probability([2.0, 0.0]))
    assert heads_for({"source": {"checkpoint_sha256": sha}}).get("quality").threshold == 0.6
    assert heads_for({"source": {"checkpoint_sha256": "cd" * 32}}) is None  # another model: no heads
    assert heads_for({"source": {}}) is None
    assert back.evidence_floor is None  # a heads file without a floor: every reading gets its verdict


def test_the_evidence_floor_round_trips_stored_once(tmp_path) -> None:
    fit = {"rule": "0.9 x the lowest confidence of a right answer", "right_answers": 142}
    written = UsecaseHeads("ab" * 32, {"quality": _head()}, {}, evidence_floor=0.0306,
                           evidence_fit=fit).write(tmp_path / "h.json")
    back = read_heads(written)
    assert back.evidence_floor == 0.0306 and back.evidence_fit == fit
    assert json.loads(written.read_text())["evidence_floor"] == {**fit, "lse_c": 0.0306}


def test_a_bare_number_floor_still_reads(tmp_path) -> None:  # the format session 12 wrote
    written = UsecaseHeads("ab" * 32, {"quality": _head()}, {}).write(tmp_path / "h.json")
    data = json.loads(written.read_text())
    written.write_text(json.dumps({**data, "evidence_floor": 0.05}))
    back = read_heads(written)
    assert back.evidence_floor == 0.05 and back.evidence_fit is None


def test_a_floor_object_without_its_value_is_a_clear_error(tmp_path) -> None:
    written = UsecaseHeads("ab" * 32, {"quality": _head()}, {}).write(tmp_path / "h.json")
    written.write_text(json.dumps({**json.loads(written.read_text()), "evidence_floor": {"rule": "?"}}))
    with pytest.raises(EdgeSyncError, match="not a use-case heads file"):
        read_heads(written)


def test_refitted_heads_keep_the_floor_of_their_own_model_only() -> None:
    old = UsecaseHeads("ab" * 32, {"quality": _head()}, {"v": 1}, evidence_floor=0.03, evidence_fit={"n": 1})
    refit = UsecaseHeads("ab" * 32, {"quality": _head()}, {"v": 2})
    kept = with_floor_of(refit, old)
    assert (kept.evidence_floor, kept.evidence_fit, kept.evaluation) == (0.03, {"n": 1}, {"v": 2})
    other_model = UsecaseHeads("cd" * 32, {"quality": _head()}, {"v": 2})
    assert with_floor_of(other_model, old).evidence_floor is None
    assert with_floor_of(refit, None).evidence_floor is None


def test_a_broken_heads_file_is_a_clear_error(tmp_path) -> None:
    bad = tmp_path / "h.json"
    bad.write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(EdgeSyncError, match="not a use-case heads file"):
        read_heads(bad)
    with pytest.raises(EdgeSyncError, match="no use-case heads"):
        read_heads(tmp_path / "missing.json")


def test_the_bundled_student_has_fitted_heads() -> None:
    import edge_sync

    found = heads_for(edge_sync.load().manifest)
    assert found is not None and set(found.heads) == {"quality", "desync", "speakers"}
    assert found.evaluation["desync"]["all"]["roc_auc"] > 0.5  # fitted on clips, not a placeholder
    # the floor came from real clips with known offsets, under every right answer there
    assert 0 < found.evidence_floor < 1 and found.evidence_fit["right_answers"] > 50
    assert "evidence_floor" not in found.evaluation  # stored once
