"""scripts/embedding_null_check.py: its confidence is SyncResult's, and on a talking photo the null read off the
student's embeddings is the same statistic as the null ``sync`` streams (what the script measures on real clips)."""
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


def test_confidence_is_the_sync_results(check):
    from edge_sync.runtimes.result import SyncResult

    rng = np.random.default_rng(0)
    corr = np.tanh(rng.normal(size=(31, 80))).astype(np.float32)
    probs = np.full((31, 80), 1 / 31, np.float32)
    assert check.confidence(corr) == pytest.approx(SyncResult.from_outputs(probs, corr).confidence, rel=1e-6)


def test_the_embedding_null_is_close_to_the_streamed_one(check, talking_dir):
    from edge_sync.evaluation.real_footage import load_real_clip
    from edge_sync.training.evaluate_cli import scorer_for

    _, scorer = scorer_for("student")
    k = scorer.contract.max_offset
    clip = load_real_clip(talking_dir / "talk.mp4", scorer.contract.video)
    audio, video = clip.case_inputs(0, scorer.contract.video)
    streamed = [scorer.run(clip.case_audio(0, r), video).confidence for r in clip.null_rolls(k)]
    embedded = check.embedding_nulls(scorer.model, audio, video, k)
    assert len(streamed) == len(embedded) == 3
    # the same statistic: its median within the spread that the choice of roll alone gives the streamed null here
    # (its three values span 1.7x on this clip; the embedding null's median is 1.24x the streamed one's)
    spread = max(streamed) / min(streamed)
    ratio = np.median(embedded) / np.median(streamed)
    assert 1 / spread < ratio < spread, (streamed, embedded)
    # and neither is anywhere near the in-sync reading's own confidence
    assert scorer.run(audio, video).confidence > 2 * max(np.median(streamed), np.median(embedded))
