"""scripts/strict_context_diagnosis.py: its 'window alone' view is the strict context protocol itself."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from edge_sync.data.synthetic import SyntheticSyncDataset
from edge_sync.models.io import load
from edge_sync.training.evaluate import strict_context_evaluation

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "strict_context_diagnosis.py"


def _script():
    spec = importlib.util.spec_from_file_location("strict_context_diagnosis", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_window_alone_is_the_strict_protocol_and_the_clip_views_differ():
    # 8 clips: session 24's student reads the first 3 alone without a miss (95.8% on these 8), so fewer leave no gain
    views, alone, in_clip = _script().diagnose("student", clips=8, frames=40, context=5)
    data = SyntheticSyncDataset(count=8, frames=40, seed=1000, split="holdout", drift_prob=0.0)
    strict = strict_context_evaluation(load("student").eval(), (data[i] for i in range(8)), contexts=(5,))[5]
    assert views["window alone"] == pytest.approx(100 * strict.accuracy)
    assert alone.shape == in_clip.shape == (5,)
    # the whole clip lets the video encoder see past the window: the bundled student gains there
    assert views["clip video + window audio"] > views["window alone"]
    assert in_clip.mean() > alone.mean()
