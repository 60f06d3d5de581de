"""Metrics on hand-built probability arrays with known answers; metrics.py must not need torch."""
from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge_sync.training.metrics import (
    PUBLISHED_LRS2_CONTEXT,
    clip_metrics,
    clip_offset,
    context_accuracy,
    context_evaluation,
    full_search_starts,
    context_table_markdown,
    frame_metrics,
    metrics_table_markdown,
    predicted_offsets,
    window_hits,
    window_truths,
)

REPO = Path(__file__).resolve().parents[2]


def peaked(offsets: list[int], k: int = 15, peak: float = 0.7) -> np.ndarray:
    """[2K+1, T] distributions with mass ``peak`` on each frame's offset, the rest spread evenly."""
    c = 2 * k + 1
    probs = np.full((c, len(offsets)), (1 - peak) / (c - 1))
    for t, off in enumerate(offsets):
        probs[off + k, t] = peak
    return probs


# --- per-frame -------------------------------------------------------------------------------------
def test_predicted_offsets_single_and_batch():
    offs = [-15, 0, 3, 15]
    assert predicted_offsets(peaked(offs)).tolist() == offs
    batch = np.stack([peaked(offs), peaked([1, 1, -2, 7])])
    got = predicted_offsets(batch)
    assert got.shape == (2, 4) and got.dtype == np.int64
    assert got.tolist() == [offs, [1, 1, -2, 7]]
    assert predicted_offsets(peaked([1, -1], k=1)).tolist() == [1, -1]  # K from the array's shape
    with pytest.raises(ValueError, match="odd"):
        predicted_offsets(np.zeros((4, 3)))


def test_frame_metrics_known_values():
    m = frame_metrics(np.array([0, 1, 3, -2]), np.array([0, 0, 0, 0]))
    assert m["accuracy"] == pytest.approx(1 / 4)
    assert m["accuracy_pm1"] == pytest.approx(2 / 4)
    assert m["mae_frames"] == pytest.approx((0 + 1 + 3 + 2) / 4)
    assert m["temporal_consistency"] == pytest.approx(1 / (1 + (1 + 2 + 5) / 3))
    assert m["n_frames"] == 4


def test_frame_metrics_valid_mask():
    pred, truth = np.array([0, 1, 9, 2]), np.array([0, 0, 0, 0])
    m = frame_metrics(pred, truth, valid=np.array([True, True, False, True]))
    assert m["accuracy"] == pytest.approx(1 / 3)
    assert m["accuracy_pm1"] == pytest.approx(2 / 3)
    assert m["mae_frames"] == pytest.approx((0 + 1 + 2) / 3)
    assert m["temporal_consistency"] == pytest.approx(1 / (1 + 1))  # only the pair (0, 1) is valid
    assert m["n_frames"] == 3
    # changing an invalid frame changes nothing
    assert frame_metrics(np.array([0, 1, -5, 2]), truth, np.array([True, True, False, True])) == m


def test_frame_metrics_batch_consistency_averaged_over_clips():
    pred = np.array([[2, 2, 2, 2, 2],      # steady: consistency 1
                     [0, 1, 0, 1, 0],      # a 1-frame jump every step: 0.5
                     [4, 0, 0, 0, 0]])     # only frame 0 valid: no pair, not counted
    truth = np.array([[2] * 5, [0] * 5, [4] * 5])
    valid = np.array([[True] * 5, [True] * 5, [True, False, False, False, False]])
    m = frame_metrics(pred, truth, valid)
    assert m["temporal_consistency"] == pytest.approx((1.0 + 0.5) / 2)
    assert m["n_frames"] == 11
    assert m["accuracy"] == pytest.approx((5 + 3 + 1) / 11)
    assert m["accuracy_pm1"] == pytest.approx(1.0)
    assert m["mae_frames"] == pytest.approx(2 / 11)


def test_frame_metrics_nothing_valid_is_nan():
    m = frame_metrics(np.array([1, 2]), np.array([1, 2]), np.array([False, False]))
    assert math.isnan(m["accuracy"]) and math.isnan(m["temporal_consistency"]) and m["n_frames"] == 0
    with pytest.raises(ValueError, match="same shape"):
        frame_metrics(np.zeros(3), np.zeros(4))


# --- per-clip ------------------------------------------------------------------------------------
def test_clip_offset_averages_distributions_not_votes():
    # two frames vote k=0 weakly, one frame is sure of k=-1: the average picks k=-1
    probs = np.array([[0.4, 0.4, 1.0],
                      [0.6, 0.6, 0.0],
                      [0.0, 0.0, 0.0]])
    assert clip_offset(probs) == -1  # class means 0.6, 0.4, 0
    assert clip_offset(probs, valid=np.array([True, True, False])) == 0
    assert clip_offset(peaked([7, 7, 6, 7])) == 7
    with pytest.raises(ValueError, match="no valid frame"):
        clip_offset(probs, valid=np.zeros(3, bool))


def test_clip_metrics_known_values():
    clips = [peaked([3] * 5), peaked([-2] * 4), peaked([0] * 6), peaked([10, 10, 12])]
    truth = [3, -1, 4, 10]  # errors 0, 1, 4, 0
    m = clip_metrics(clips, truth)
    assert m == {"accuracy": pytest.approx(0.5), "accuracy_pm1": pytest.approx(0.75),
                 "mae": pytest.approx(5 / 4), "n_clips": 4}
    m = clip_metrics(clips, truth, [None, None, None, np.array([False, False, True])])
    assert m["mae"] == pytest.approx((0 + 1 + 4 + 2) / 4)


# --- context windows -------------------------------------------------------------------------------
def context_reference(scores_list, truth_list, c, tol, stride, full_search=True):
    """Plain-python windows: returns (windows, correct); full search keeps windows whose frames s-K..s+c-1+K exist."""
    windows = correct = 0
    for scores, truth in zip(scores_list, truth_list):
        n_cls, frames = len(scores), len(scores[0])
        k = (n_cls - 1) // 2
        per_frame = truth if isinstance(truth, list) else [truth] * frames
        margin = k if full_search else 0
        for start in range(margin, frames - c - margin + 1, stride):
            means = [sum(scores[i][start:start + c]) / c for i in range(n_cls)]
            pred = max(range(n_cls), key=lambda i: (means[i], -i)) - k
            w = sorted(per_frame[start:start + c])
            med = w[c // 2] if c % 2 else (w[c // 2 - 1] + w[c // 2]) / 2
            windows += 1
            correct += abs(pred - med) <= tol
    return windows, correct


def test_context_windows_tiny_clip():
    k = 2
    scores = peaked([0, 0, 0, 2, 2, 2, 2], k=k)  # T = 7
    res = context_evaluation([scores], [0], contexts=(3, 5, 9), full_search=False)
    # c=3: windows start 0..4 -> predictions 0, 0, 2, 2, 2 against truth 0
    assert (res[3].windows, res[3].correct) == (5, 2)
    # c=5: starts 0..2 -> 0, 2, 2
    assert (res[5].windows, res[5].correct) == (3, 1)
    assert res[9].windows == 0 and math.isnan(res[9].accuracy)  # clip shorter than the context
    acc = context_accuracy([scores], [0], contexts=(3, 5, 9), full_search=False)
    assert acc[3] == pytest.approx(2 / 5) and acc[5] == pytest.approx(1 / 3) and math.isnan(acc[9])
    assert context_accuracy([scores], [0], contexts=(3, 5), tolerance=2, full_search=False) == {3: 1.0, 5: 1.0}
    # stride 2: starts 0, 2, 4 -> 0, 2, 2
    res = context_evaluation([scores], [0], contexts=(3,), stride=2, full_search=False)
    assert (res[3].windows, res[3].correct) == (3, 1)


def test_context_uses_window_median_of_per_frame_truth():
    scores = peaked([0] * 7, k=2)
    truth = np.array([0, 0, 0, 2, 2, 2, 2])
    # c=3 medians: 0, 0, 2, 2, 2 against prediction 0 everywhere
    assert context_accuracy([scores], [truth], contexts=(3,), full_search=False) == {3: pytest.approx(2 / 5)}
    # predictions at 1 are within +-1 of every window's truth, and exactly right for none
    ones = peaked([1] * 7, k=2)
    assert context_accuracy([ones], [truth], contexts=(3,), full_search=False) == {3: 1.0}
    assert context_accuracy([ones], [truth], contexts=(3,), tolerance=0, full_search=False) == {3: 0.0}


def test_context_accuracy_pools_windows_over_clips():
    a = peaked([0, 0, 0, 2, 2, 2, 2], k=2)  # 5 windows of 3, 2 correct
    b = peaked([-1, -1, -1, -1], k=2)       # 2 windows of 3, 2 correct
    assert context_accuracy([a, b], [0, -1], contexts=(3,), full_search=False) == {3: pytest.approx(4 / 7)}


def test_context_accuracy_matches_brute_force_reference():
    rng = np.random.default_rng(0)
    clips = [rng.random((31, t)) for t in (4, 15, 23, 40)]
    truths: list = [int(rng.integers(-15, 16)), rng.integers(-15, 16, 15), 3, rng.integers(-2, 3, 40)]
    # make some windows correct: boost the true offset in part of each clip
    for scores, truth in zip(clips, truths):
        per_frame = np.broadcast_to(truth, scores.shape[1])
        for t in range(0, scores.shape[1], 2):
            scores[per_frame[t] + 15, t] += 1.5
    lists = [s.tolist() for s in clips]
    tl = [t.tolist() if isinstance(t, np.ndarray) else t for t in truths]
    for stride, full in [(1, True), (3, True), (1, False), (3, False)]:
        res = context_evaluation(clips, truths, stride=stride, full_search=full)
        assert set(res) == {5, 7, 9, 11, 13, 15}
        for c, r in res.items():
            assert (r.windows, r.correct) == context_reference(lists, tl, c, 1, stride, full)
        assert 0 < res[5].accuracy <= 1
    # only the 40-frame clip is long enough for a full search at 5 frames: starts 15..20
    assert context_evaluation(clips, truths, contexts=(5,))[5].windows == 6


def test_full_search_skips_windows_whose_candidates_fall_off_the_clip():
    """A clip whose true offset is +2 with K=2: frames near the end have no true audio and score 0 there,
    which is exactly what happens to a real model; only windows with every candidate inside are counted."""
    k, frames = 2, 9
    truth = 2
    scores = peaked([truth] * frames, k=k)
    scores[:, frames - truth:] = 0.0  # the true audio (frame t + 2) is past the clip's end
    scores[0, frames - truth:] = 0.5  # padding makes some other candidate win there
    assert full_search_starts(frames, 3, k).tolist() == [2, 3, 4]
    assert context_accuracy([scores], [truth], contexts=(3,), tolerance=0) == {3: 1.0}
    assert context_accuracy([scores], [truth], contexts=(3,), tolerance=0, full_search=False)[3] < 1.0
    assert full_search_starts(frames, 6, k).size == 0
    assert math.isnan(context_accuracy([scores], [truth], contexts=(6,))[6])


def test_window_hits_and_truths():
    scores = np.zeros((3, 5))
    scores[0, 4] = scores[1, 1] = scores[2, 3] = 1.0  # predictions +2, -1, +1 with K=2
    assert window_hits(scores, np.array([2, 1, 1.5]), tolerance=0) == 1
    assert window_hits(scores, np.array([2, 1, 1.5]), tolerance=1) == 2
    truth = np.array([0, 0, 1, 3, 3])
    assert window_truths(truth, np.array([0, 2]), 3).tolist() == [0.0, 3.0]


# --- tables ---------------------------------------------------------------------------------------
def test_metrics_table_markdown():
    table = metrics_table_markdown({
        "teacher": {"accuracy": 0.9123, "mae_frames": 0.25, "n_frames": 100},
        "student": {"accuracy": 0.85, "mae_frames": float("nan")},
    })
    lines = table.strip().splitlines()
    assert lines[0] == "| model | accuracy | mae_frames | n_frames |"
    assert lines[1] == "|---|---|---|---|"
    assert lines[2] == "| teacher | 91.2% | 0.250 | 100 |"
    assert lines[3] == "| student | 85.0% | — | — |"


def test_context_table_markdown_with_published_rows():
    table = context_table_markdown({"ours": {5: 0.8, 7: 0.85, 15: 0.97}})
    lines = table.strip().splitlines()
    assert lines[0] == "| model | 5 frames | 7 frames | 15 frames |"
    assert lines[2] == "| ours | 80.0% | 85.0% | 97.0% |"
    assert any(line.startswith("| SyncNet") and "75.8%" in line and "96.1%" in line and "| — |" in line
               for line in lines)
    assert any("92.0%" in line and "99.8%" in line for line in lines)
    assert len(lines) == 2 + 1 + len(PUBLISHED_LRS2_CONTEXT)
    plain = context_table_markdown({"ours": {5: 0.8}}, include_published=False).strip().splitlines()
    assert plain == ["| model | 5 frames |", "|---|---|", "| ours | 80.0% |"]


def test_published_numbers_are_only_the_four_known_ones():
    assert PUBLISHED_LRS2_CONTEXT == {
        "SyncNet (original, published)": {5: 0.758, 15: 0.961},
        "best published models (approx.)": {5: 0.92, 15: 0.998},
    }


# --- dependency rule ------------------------------------------------------------------------------
def test_metrics_imports_without_torch():
    code = ("import sys; sys.modules['torch'] = None\n"
            "import numpy as np\n"
            "from edge_sync.training import metrics\n"
            "assert metrics.predicted_offsets(np.eye(3)).tolist() == [-1, 0, 1]\n"
            "assert sys.modules['torch'] is None\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
