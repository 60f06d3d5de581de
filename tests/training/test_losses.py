"""Losses against hand computations (plain python/math) on tiny tensors, plus masks and gradients."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from edge_sync.models.correlation import shifted_correlation
from edge_sync.training.losses import (
    LossWeights,
    combined_loss,
    distillation_kl,
    focal_loss,
    info_nce,
    offset_cross_entropy,
    self_similarity_distill,
    temporal_consistency_loss,
    triplet_loss,
    window_context_loss,
)

K1 = 1  # 3 offset classes keep hand computations short


# --- plain-python references ------------------------------------------------------------------
def softmax(xs: list[float]) -> list[float]:
    m = max(xs)
    e = [math.exp(x - m) for x in xs]
    s = sum(e)
    return [v / s for v in e]


def kl(p: list[float], q: list[float]) -> float:
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q) if pi > 0)


def cos(u: list[float], v: list[float]) -> float:
    dot = sum(a * b for a, b in zip(u, v))
    return dot / (math.sqrt(sum(a * a for a in u)) * math.sqrt(sum(b * b for b in v)))


def frames_logits(frames: list[list[float]]) -> torch.Tensor:
    """[[logits of frame 0], [frame 1], ...] -> [1, C, T] double tensor."""
    return torch.tensor(frames, dtype=torch.float64).T.unsqueeze(0).contiguous()


def unit(angle: float) -> list[float]:
    return [math.cos(angle), math.sin(angle)]


def emb(vectors: list[list[list[float]]]) -> torch.Tensor:
    """[clip][frame] -> D-vector lists -> [B, D, T] double tensor."""
    return torch.tensor(vectors, dtype=torch.float64).permute(0, 2, 1).contiguous()


# --- cross-entropy -------------------------------------------------------------------------------
FRAMES = [[1.0, 2.0, 3.0], [0.0, 0.0, 0.0], [0.5, -1.0, 2.0]]


def test_cross_entropy_matches_hand_computation():
    logits = frames_logits(FRAMES)
    targets = torch.tensor([[-1, 1, 0]])  # classes 0, 2, 1
    expected = -(math.log(softmax(FRAMES[0])[0]) + math.log(softmax(FRAMES[1])[2])
                 + math.log(softmax(FRAMES[2])[1])) / 3
    got = offset_cross_entropy(logits, targets, max_offset=K1)
    assert got.dim() == 0
    assert float(got) == pytest.approx(expected, rel=1e-12)


def test_cross_entropy_label_smoothing():
    eps = 0.1
    logits = frames_logits(FRAMES[:1])
    p = softmax(FRAMES[0])
    q = [eps / 3, eps / 3, 1 - eps + eps / 3]  # target k = +1 -> class 2
    expected = -sum(qi * math.log(pi) for qi, pi in zip(q, p))
    got = offset_cross_entropy(logits, torch.tensor([[1]]), max_offset=K1, label_smoothing=eps)
    assert float(got) == pytest.approx(expected, rel=1e-12)


def test_cross_entropy_mask_ignores_invalid_frames():
    valid = torch.tensor([[True, False, True]])
    logits = frames_logits(FRAMES)
    targets = torch.tensor([[-1, -99, 0]])  # invalid frames may hold any sentinel
    expected = -(math.log(softmax(FRAMES[0])[0]) + math.log(softmax(FRAMES[2])[1])) / 2
    got = offset_cross_entropy(logits, targets, valid, max_offset=K1)
    assert float(got) == pytest.approx(expected, rel=1e-12)
    changed = logits.clone()
    changed[0, :, 1] = torch.tensor([50.0, -7.0, 3.0])
    got = offset_cross_entropy(changed, targets, valid, max_offset=K1)
    assert float(got) == pytest.approx(expected, rel=1e-12)


def test_cross_entropy_rejects_out_of_range_offsets_on_valid_frames():
    with pytest.raises(ValueError, match="-1..1"):
        offset_cross_entropy(frames_logits(FRAMES), torch.tensor([[0, 2, 0]]), max_offset=K1)
    with pytest.raises(ValueError, match="2K\\+1"):
        offset_cross_entropy(frames_logits(FRAMES), torch.tensor([[0, 0, 0]]), max_offset=15)


def test_soft_one_hot_targets_equal_hard_targets():
    torch.manual_seed(0)
    logits = torch.randn(2, 31, 6, dtype=torch.float64)
    offsets = torch.randint(-15, 16, (2, 6))
    soft = torch.nn.functional.one_hot(offsets + 15, 31).permute(0, 2, 1).double()
    valid = torch.tensor([[True, True, False, True, True, True], [False, True, True, True, True, False]])
    for ls in (0.0, 0.2):
        hard_ce = offset_cross_entropy(logits, offsets, valid, label_smoothing=ls)
        soft_ce = offset_cross_entropy(logits, soft, valid, label_smoothing=ls)
        assert float(hard_ce) == pytest.approx(float(soft_ce), rel=1e-12)
    assert float(focal_loss(logits, offsets, valid)) == pytest.approx(float(focal_loss(logits, soft, valid)),
                                                                       rel=1e-12)


def test_soft_mixture_targets():
    logits = frames_logits(FRAMES[:1])
    q = torch.tensor([0.25, 0.0, 0.75], dtype=torch.float64).view(1, 3, 1)
    p = softmax(FRAMES[0])
    expected = -(0.25 * math.log(p[0]) + 0.75 * math.log(p[2]))
    assert float(offset_cross_entropy(logits, q, max_offset=K1)) == pytest.approx(expected, rel=1e-12)


# --- focal ---------------------------------------------------------------------------------------
def test_focal_matches_hand_computation_and_reduces_to_ce():
    logits = frames_logits(FRAMES)
    targets = torch.tensor([[-1, 1, 1]])
    cls = [0, 2, 2]
    for gamma in (2.0, 0.5):
        expected = 0.0
        for f, c in zip(FRAMES, cls):
            p = softmax(f)[c]
            expected += -((1 - p) ** gamma) * math.log(p)
        got = focal_loss(logits, targets, gamma=gamma, max_offset=K1)
        assert float(got) == pytest.approx(expected / 3, rel=1e-12)
    ce = offset_cross_entropy(logits, targets, max_offset=K1)
    assert float(focal_loss(logits, targets, gamma=0.0, max_offset=K1)) == pytest.approx(float(ce), rel=1e-12)
    # confident correct frames are down-weighted more than CE does
    assert float(focal_loss(logits, targets, max_offset=K1)) < float(ce)


def test_focal_soft_targets_hand_computation():
    logits = frames_logits(FRAMES[:1])
    q = torch.tensor([0.5, 0.5, 0.0], dtype=torch.float64).view(1, 3, 1)
    p = softmax(FRAMES[0])
    expected = -(0.5 * (1 - p[0]) ** 2 * math.log(p[0]) + 0.5 * (1 - p[1]) ** 2 * math.log(p[1]))
    assert float(focal_loss(logits, q, max_offset=K1)) == pytest.approx(expected, rel=1e-12)


# --- triplet -------------------------------------------------------------------------------------
def triplet_reference(video, audio, offsets, valid, margin, k_max):
    """Plain-python triplet loss: lists [clip][frame] of vectors, offsets/valid [clip][frame]."""
    losses = []
    for b in range(len(video)):
        frames = len(video[b])
        for t in range(frames):
            if not valid[b][t]:
                continue
            p = t + offsets[b][t]
            if not 0 <= p < frames:
                continue
            negs = [s for s in range(frames) if abs(s - t) <= k_max and abs(s - p) >= 2]
            if not negs:
                continue
            d_pos = 1 - cos(video[b][t], audio[b][p])
            d_neg = min(1 - cos(video[b][t], audio[b][s]) for s in negs)
            losses.append(max(0.0, d_pos - d_neg + margin))
    return sum(losses) / len(losses) if losses else 0.0


ANGLES_V = [[0.0, 0.7, 1.9, 2.5, -0.4]]
ANGLES_A = [[0.1, 1.2, 1.5, 2.9, 0.3]]


def test_triplet_matches_hand_computation():
    video = [[unit(x) for x in clip] for clip in ANGLES_V]
    audio = [[[2.0 * c for c in unit(x)] for x in clip] for clip in ANGLES_A]  # unnormalised on purpose
    offsets = [[0, 1, -1, 0, 0]]
    valid = [[True] * 5]
    for margin, k_max in ((0.2, 15), (0.5, 2), (1.0, 1)):
        expected = triplet_reference(video, audio, offsets, valid, margin, k_max)
        got = triplet_loss(emb(video), emb(audio), torch.tensor(offsets), margin=margin, max_offset=k_max)
        assert float(got) == pytest.approx(expected, rel=1e-12)
        assert expected > 0


def test_triplet_hand_numbers_single_frame():
    # one usable frame: t=0, k=0, negatives s=2 only (window K=2, s=1 too close to the positive)
    video = [[unit(0.0), unit(0.0), unit(0.0)]]
    audio = [[unit(0.5), unit(3.0), unit(0.2)]]
    valid = torch.tensor([[True, False, False]])
    d_pos, d_neg = 1 - math.cos(0.5), 1 - math.cos(0.2)
    got = triplet_loss(emb(video), emb(audio), torch.tensor([[0, 0, 0]]), valid, margin=0.2, max_offset=2)
    assert float(got) == pytest.approx(d_pos - d_neg + 0.2, rel=1e-12)
    # a wide margin of safety gives exactly zero
    audio_easy = [[unit(0.0), unit(3.0), unit(3.0)]]
    got = triplet_loss(emb(video), emb(audio_easy), torch.tensor([[0, 0, 0]]), valid, margin=0.2, max_offset=2)
    assert float(got) == 0.0


def test_triplet_skips_out_of_clip_positives_and_masked_frames():
    video = [[unit(x) for x in clip] for clip in ANGLES_V]
    audio = [[unit(x) for x in clip] for clip in ANGLES_A]
    offsets = [[-1, 3, 0, 2, 0]]  # frames 0 and 3 point outside the clip
    valid = [[True, True, True, True, False]]
    expected = triplet_reference(video, audio, offsets, valid, 0.2, 15)
    got = triplet_loss(emb(video), emb(audio), torch.tensor(offsets), torch.tensor(valid))
    assert float(got) == pytest.approx(expected, rel=1e-12)
    # changing the skipped frames' video embeddings changes nothing
    video2 = [list(clip) for clip in video]
    video2[0][0], video2[0][3], video2[0][4] = unit(2.0), unit(-1.0), unit(0.9)
    got2 = triplet_loss(emb(video2), emb(audio), torch.tensor(offsets), torch.tensor(valid))
    assert float(got2) == pytest.approx(float(got), rel=1e-12)


def test_triplet_no_usable_frame_is_graph_connected_zero():
    v = emb([[unit(0.0), unit(1.0)]]).requires_grad_()
    a = emb([[unit(0.3), unit(1.2)]]).requires_grad_()
    loss = triplet_loss(v, a, torch.tensor([[0, 0]]))  # T=2: no negative 2 frames from the positive
    assert float(loss.detach()) == 0.0
    loss.backward()
    assert torch.all(v.grad == 0)


# --- InfoNCE -------------------------------------------------------------------------------------
def info_nce_reference(video, audio, offsets, valid, tau, symmetric):
    flat_v = [(b, t) for b in range(len(video)) for t in range(len(video[b]))]
    pairs = []
    for b, t in flat_v:
        p = t + offsets[b][t]
        if valid[b][t] and 0 <= p < len(video[b]):
            pairs.append(((b, t), (b, p)))

    def term(anchor, positive, candidates):
        logits = [cos(anchor, c) / tau for c in candidates]
        m = max(logits)
        lse = m + math.log(sum(math.exp(x - m) for x in logits))
        return lse - cos(anchor, positive) / tau

    all_a = [audio[b][s] for b, s in flat_v]
    all_v = [video[b][t] for b, t in flat_v]
    v2a = sum(term(video[b][t], audio[b][p], all_a) for (b, t), (_, p) in pairs) / len(pairs)
    if not symmetric:
        return v2a
    a2v = sum(term(audio[b][p], video[b][t], all_v) for (b, t), (_, p) in pairs) / len(pairs)
    return 0.5 * (v2a + a2v)


def test_info_nce_matches_hand_computation():
    video = [[unit(0.0), unit(1.0), unit(2.0)], [unit(-1.0), unit(0.5), unit(2.5)]]
    audio = [[[0.0, 3.0], unit(0.1), unit(1.1)], [unit(-0.9), unit(0.4), unit(3.0)]]
    offsets = [[1, 1, 1], [0, -1, 0]]  # clip 0, frame 2 points outside the clip
    valid = [[True, True, True], [True, True, False]]
    for tau in (0.07, 0.5):
        for symmetric in (False, True):
            expected = info_nce_reference(video, audio, offsets, valid, tau, symmetric)
            got = info_nce(emb(video), emb(audio), torch.tensor(offsets), torch.tensor(valid),
                           temperature=tau, symmetric=symmetric)
            assert float(got) == pytest.approx(expected, rel=1e-10)


def test_info_nce_prefers_the_true_shift_and_agrees_with_correlation_convention():
    torch.manual_seed(1)
    k = 2
    v = torch.nn.functional.normalize(torch.randn(2, 16, 12, dtype=torch.float64), dim=1)
    a = torch.nn.functional.normalize(torch.randn(2, 16, 12, dtype=torch.float64), dim=1)
    a[:, :, k:] = v[:, :, :-k]  # audio frame t+k carries video frame t: sound late by k
    corr = shifted_correlation(v, a, max_offset=3)
    assert torch.allclose(corr[:, k + 3, :-k], torch.ones(2, 12 - k, dtype=torch.float64))
    right = info_nce(v, a, torch.full((2, 12), k), temperature=0.1)
    wrong = info_nce(v, a, torch.full((2, 12), -k), temperature=0.1)
    assert float(right) < float(wrong)
    trip_right = triplet_loss(v, a, torch.full((2, 12), k), max_offset=3)
    trip_wrong = triplet_loss(v, a, torch.full((2, 12), -k), max_offset=3)
    assert float(trip_right) < float(trip_wrong)


# --- temporal consistency ----------------------------------------------------------------------
def test_temporal_consistency_hand_computation():
    logits = frames_logits(FRAMES)
    p = [softmax(f) for f in FRAMES]

    def js(x, y):
        m = [(a + b) / 2 for a, b in zip(x, y)]
        return 0.5 * (kl(x, m) + kl(y, m))

    def skl(x, y):
        return kl(x, y) + kl(y, x)

    assert float(temporal_consistency_loss(logits)) == pytest.approx((js(p[0], p[1]) + js(p[1], p[2])) / 2,
                                                                     rel=1e-10)
    got = temporal_consistency_loss(logits, divergence="sym_kl")
    assert float(got) == pytest.approx((skl(p[0], p[1]) + skl(p[1], p[2])) / 2, rel=1e-10)
    # only pairs with both frames valid count: (0, 1) here
    valid = torch.tensor([[True, True, False]])
    assert float(temporal_consistency_loss(logits, valid)) == pytest.approx(js(p[0], p[1]), rel=1e-10)
    changed = logits.clone()
    changed[0, :, 2] = torch.tensor([9.0, -9.0, 0.0])
    assert float(temporal_consistency_loss(changed, valid)) == pytest.approx(js(p[0], p[1]), rel=1e-10)


def test_temporal_consistency_zero_for_constant_predictions():
    logits = frames_logits([[0.3, 2.0, -1.0]] * 4)
    assert float(temporal_consistency_loss(logits)) == pytest.approx(0.0, abs=1e-15)
    assert float(temporal_consistency_loss(logits[:, :, :1])) == 0.0


# --- distillation -----------------------------------------------------------------------------
def test_distillation_zero_when_equal_positive_otherwise():
    torch.manual_seed(2)
    logits = torch.randn(2, 31, 5, dtype=torch.float64)
    assert float(distillation_kl(logits, logits.clone())) == pytest.approx(0.0, abs=1e-12)
    assert float(distillation_kl(logits, logits + 5.0)) == pytest.approx(0.0, abs=1e-12)  # shift-invariant
    assert float(distillation_kl(logits, torch.randn(2, 31, 5, dtype=torch.float64))) > 0


def test_distillation_hand_computation_and_temperature_scaling():
    student = frames_logits(FRAMES[:2])
    teacher = frames_logits([[3.0, 0.0, -1.0], [0.0, 4.0, 0.0]])
    tf = [[3.0, 0.0, -1.0], [0.0, 4.0, 0.0]]
    for temp in (1.0, 2.0, 4.0):
        expected = 0.0
        for s, t in zip(FRAMES[:2], tf):
            pt = softmax([x / temp for x in t])
            ps = softmax([x / temp for x in s])
            expected += kl(pt, ps) * temp ** 2
        got = distillation_kl(student, teacher, temperature=temp)
        assert float(got) == pytest.approx(expected / 2, rel=1e-12)
    # mask: only frame 1
    pt, ps = softmax([x / 4 for x in tf[1]]), softmax([x / 4 for x in FRAMES[1]])
    got = distillation_kl(student, teacher, torch.tensor([[False, True]]), temperature=4.0)
    assert float(got) == pytest.approx(16 * kl(pt, ps), rel=1e-12)


def test_distillation_gradient_goes_to_student_only():
    torch.manual_seed(3)
    s = torch.randn(1, 31, 4, requires_grad=True)
    t = torch.randn(1, 31, 4, requires_grad=True)
    distillation_kl(s, t).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    assert t.grad is None


# --- gradients and masks, all losses -----------------------------------------------------------
def test_gradients_flow_and_masked_frames_get_none():
    torch.manual_seed(4)
    b, c, t, d = 2, 31, 20, 8
    offsets = torch.randint(-3, 4, (b, t))
    valid = torch.ones(b, t, dtype=torch.bool)
    valid[:, 7] = False
    for name, fn in {
        "ce": lambda lg, v, a: offset_cross_entropy(lg, offsets, valid, label_smoothing=0.1),
        "focal": lambda lg, v, a: focal_loss(lg, offsets, valid),
        "temporal": lambda lg, v, a: temporal_consistency_loss(lg, valid),
        "distill": lambda lg, v, a: distillation_kl(lg, torch.randn(b, c, t), valid),
        "triplet": lambda lg, v, a: triplet_loss(v, a, offsets, valid, margin=2.0),
        # one-way: with symmetric=True invalid video frames still serve as negatives, so get gradient
        "info_nce": lambda lg, v, a: info_nce(v, a, offsets, valid, symmetric=False),
    }.items():
        logits = torch.randn(b, c, t, requires_grad=True)
        v = torch.randn(b, d, t, requires_grad=True)
        a = torch.randn(b, d, t, requires_grad=True)
        loss = fn(logits, v, a)
        assert loss.dim() == 0 and torch.isfinite(loss), name
        loss.backward()
        grad = logits.grad if name in ("ce", "focal", "temporal", "distill") else v.grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name
        assert torch.all(grad[:, :, 7] == 0), name  # invalid anchor frame: no gradient


def test_empty_mask_gives_zero_and_backward_works():
    logits = torch.randn(1, 31, 3, requires_grad=True)
    none = torch.zeros(1, 3, dtype=torch.bool)
    for loss in (offset_cross_entropy(logits, torch.zeros(1, 3, dtype=torch.long), none),
                 focal_loss(logits, torch.zeros(1, 3, dtype=torch.long), none),
                 temporal_consistency_loss(logits, none),
                 distillation_kl(logits, torch.randn(1, 31, 3), none)):
        assert float(loss.detach()) == 0.0
        loss.backward()
    v = torch.randn(1, 4, 3, requires_grad=True)
    loss = info_nce(v, torch.randn(1, 4, 3), torch.zeros(1, 3, dtype=torch.long), none)
    assert float(loss.detach()) == 0.0
    loss.backward()


# --- combined ---------------------------------------------------------------------------------
def _fake_outputs(b=2, t=10, d=8, seed=5):
    g = torch.Generator().manual_seed(seed)
    return {
        "logits": torch.randn(b, 31, t, generator=g, requires_grad=True),
        "video_emb": torch.nn.functional.normalize(torch.randn(b, d, t, generator=g), dim=1).requires_grad_(),
        "audio_emb": torch.nn.functional.normalize(torch.randn(b, d, t, generator=g), dim=1).requires_grad_(),
    }


def test_combined_loss_is_the_weighted_sum():
    out = _fake_outputs()
    offsets = torch.randint(-4, 5, (2, 10), generator=torch.Generator().manual_seed(0))
    valid = torch.ones(2, 10, dtype=torch.bool)
    valid[1, 8:] = False
    batch = {"offsets": offsets, "valid": valid}
    teacher = torch.randn(2, 31, 10)
    w = LossWeights(ce=1.0, focal=0.5, triplet=0.3, info_nce=0.2, temporal=0.1, distill=2.0,
                    label_smoothing=0.05, nce_symmetric=False)
    total, parts = combined_loss(out, batch, w, teacher_logits=teacher)
    lg, v, a = out["logits"], out["video_emb"], out["audio_emb"]
    with torch.no_grad():
        expected = {
            "ce": offset_cross_entropy(lg, offsets, valid, label_smoothing=0.05),
            "focal": focal_loss(lg, offsets, valid),
            "triplet": triplet_loss(v, a, offsets, valid),
            "info_nce": info_nce(v, a, offsets, valid, symmetric=False),
            "temporal": temporal_consistency_loss(lg, valid),
            "distill": distillation_kl(lg, teacher, valid),
        }
    assert set(parts) == set(expected) | {"total"}
    weighted = sum(getattr(w, k) * float(v_) for k, v_ in expected.items())
    for k, v_ in expected.items():
        assert parts[k] == pytest.approx(float(v_), rel=1e-6)
    assert float(total.detach()) == pytest.approx(weighted, rel=1e-6)
    assert parts["total"] == pytest.approx(weighted, rel=1e-6)
    total.backward()
    assert lg.grad is not None and v.grad is not None


def test_combined_loss_uses_soft_targets_and_checks_teacher():
    out = _fake_outputs(b=1, t=4)
    offsets = torch.tensor([[0, 1, 2, 3]])
    soft = torch.full((1, 31, 4), 1.0 / 31)
    ce = lambda tgt: float(offset_cross_entropy(out["logits"].detach(), tgt))  # noqa: E731
    total, parts = combined_loss(out, {"offsets": offsets, "target_probs": soft}, LossWeights())
    assert set(parts) == {"ce", "total"}
    assert parts["ce"] == pytest.approx(ce(soft), rel=1e-6)
    assert parts["ce"] != pytest.approx(ce(offsets), rel=1e-3)
    with pytest.raises(ValueError, match="teacher_logits"):
        combined_loss(out, {"offsets": offsets}, LossWeights(distill=1.0))
    with pytest.raises(ValueError, match="every loss weight is 0"):
        combined_loss(out, {"offsets": offsets}, LossWeights(ce=0.0))


def test_correlation_cross_entropy_trains_the_context_evidence():
    """corr_ce: cross-entropy with the correlation / temperature as the offset logits, weighted into the total."""
    out = _fake_outputs(b=2, t=6)
    corr = torch.randn(2, 31, 6, generator=torch.Generator().manual_seed(1)).clamp(-1, 1).requires_grad_()
    out["correlation"] = corr
    offsets = torch.tensor([[0, 1, 2, 3, -1, 5], [2, 2, 2, 2, 2, 2]])
    w = LossWeights(ce=1.0, corr_ce=0.5, corr_temperature=0.2)
    total, parts = combined_loss(out, {"offsets": offsets}, w)
    expected = float(offset_cross_entropy(corr.detach() / 0.2, offsets))
    assert parts["corr_ce"] == pytest.approx(expected, rel=1e-6)
    assert parts["total"] == pytest.approx(parts["ce"] + 0.5 * expected, rel=1e-6)
    total.backward()
    assert corr.grad is not None and corr.grad.abs().sum() > 0
    _, only = combined_loss(out, {"offsets": offsets}, LossWeights(ce=0.0, corr_ce=1.0))
    assert set(only) == {"corr_ce", "total"}


def test_window_cross_entropy_by_hand():
    """window_ce: the window's mean cosine per offset / temperature as logits, the window's offset as the class."""
    out = _fake_outputs(b=2, t=6)
    scores = torch.tensor([[0.5, 2.0, 1.0] + [0.0] * 28, [0.0] * 30 + [3.0]], requires_grad=True)  # c = 4 frames
    out["window_scores"] = scores
    batch = {"offsets": torch.zeros(2, 6, dtype=torch.long), "window_video": torch.zeros(2, 3, 4, 1, 1),
             "window_offsets": torch.tensor([-14, 15])}
    total, parts = combined_loss(out, batch, LossWeights(ce=0.0, window_ce=1.0, corr_temperature=0.5))
    by_hand = []
    for row, cls in ((scores[0].detach(), 1), (scores[1].detach(), 30)):
        logits = (row / (4 * 0.5)).tolist()
        by_hand.append(math.log(sum(math.exp(x) for x in logits)) - logits[cls])
    assert parts["window_ce"] == pytest.approx(sum(by_hand) / 2, rel=1e-6)
    total.backward()
    assert scores.grad.abs().sum() > 0
    # windows marked invalid are left out of the mean
    _, masked = combined_loss(out, {**batch, "window_valid": torch.tensor([True, False])},
                              LossWeights(ce=0.0, window_ce=1.0, corr_temperature=0.5))
    assert masked["window_ce"] == pytest.approx(by_hand[0], rel=1e-6)
    # without windows in the outputs (a model or batch without them) the term is simply absent
    _, parts = combined_loss(_fake_outputs(b=2, t=6), batch, LossWeights(ce=1.0, window_ce=1.0))
    assert "window_ce" not in parts


def test_window_context_is_zero_when_the_window_sees_what_the_clip_sees_and_grows_with_the_gap():
    """window_context: 1 - cos between each window frame's embedding and the same frame's whole-clip embedding
    (video frames s..s+c-1, audio s-K..s+c-1+K), averaged per window and summed over the two modalities."""
    g = torch.Generator().manual_seed(3)
    b, d, t, k, c = 2, 8, 20, 3, 4
    video = F.normalize(torch.randn(b, d, t, generator=g), dim=1)
    audio = F.normalize(torch.randn(b, d, t, generator=g), dim=1)
    start = torch.tensor([3, 9])
    same_v = torch.stack([video[i, :, s:s + c] for i, s in enumerate(start.tolist())])
    same_a = torch.stack([audio[i, :, s - k:s + c + k] for i, s in enumerate(start.tolist())])
    assert float(window_context_loss(same_v, same_a, video, audio, start)) == pytest.approx(0.0, abs=1e-6)
    # a window one frame off (the wrong frames) is far from the clip's view of its own frames
    shifted_v = torch.stack([video[i, :, s + 1:s + 1 + c] for i, s in enumerate(start.tolist())])
    wrong = window_context_loss(shifted_v, same_a, video, audio, start)
    by_hand = sum(float(1 - (shifted_v[i] * same_v[i]).sum(0).mean()) for i in range(b)) / b
    assert float(wrong) == pytest.approx(by_hand, rel=1e-5) and float(wrong) > 0.5
    # masked windows are left out; starts that leave no K frames of audio are refused
    kept = window_context_loss(shifted_v, same_a, video, audio, start, keep=torch.tensor([False, True]))
    assert float(kept) == pytest.approx(float(1 - (shifted_v[1] * same_v[1]).sum(0).mean()), rel=1e-5)
    with pytest.raises(ValueError, match="K=3"):
        window_context_loss(same_v, same_a, video, audio, torch.tensor([2, 9]))


def test_window_context_trains_the_window_not_the_clip():
    """The whole clip's embeddings are the target (no gradient); the window's own get one."""
    g = torch.Generator().manual_seed(4)
    video = F.normalize(torch.randn(1, 8, 12, generator=g), dim=1).requires_grad_()
    audio = F.normalize(torch.randn(1, 8, 12, generator=g), dim=1).requires_grad_()
    win_v = F.normalize(torch.randn(1, 8, 3, generator=g), dim=1).requires_grad_()
    win_a = F.normalize(torch.randn(1, 8, 7, generator=g), dim=1).requires_grad_()
    out = {**_fake_outputs(b=1, t=12), "video_emb": video, "audio_emb": audio, "window_video_emb": win_v,
           "window_audio_emb": win_a}
    batch = {"offsets": torch.zeros(1, 12, dtype=torch.long), "window_start": torch.tensor([4])}
    total, parts = combined_loss(out, batch, LossWeights(ce=0.0, window_context=2.0))
    assert parts["total"] == pytest.approx(2.0 * parts["window_context"], rel=1e-6)
    total.backward()
    assert win_v.grad.abs().sum() > 0 and win_a.grad.abs().sum() > 0
    assert video.grad is None and audio.grad is None
    with pytest.raises(ValueError, match="window_features"):
        combined_loss(_fake_outputs(b=1, t=12), batch, LossWeights(ce=0.0, window_context=1.0))


def test_distillation_learns_only_from_samples_that_have_a_teacher():
    """teacher_mask [B]: synthetic clips mixed into a distillation on cached teacher features carry zeros and False;
    distill and corr_distill then equal the same losses over the taught samples alone."""
    out = {**_fake_outputs(b=2, t=6), "correlation": torch.randn(2, 31, 6, requires_grad=True)}
    teacher = {"logits": torch.randn(2, 31, 6), "correlation": torch.randn(2, 31, 6)}
    offsets = torch.zeros(2, 6, dtype=torch.int64)
    w = LossWeights(ce=1.0, distill=1.0, corr_distill=0.5, corr_temperature=0.1)
    _, parts = combined_loss(out, {"offsets": offsets, "teacher_mask": torch.tensor([True, False])}, w,
                             teacher_outputs=teacher)
    first = {k: v[:1] for k, v in out.items()}
    with torch.no_grad():
        assert parts["distill"] == pytest.approx(float(distillation_kl(first["logits"], teacher["logits"][:1])), rel=1e-6)
        expected = distillation_kl(first["correlation"] / 0.1, teacher["correlation"][:1] / 0.1, temperature=1.0)
    assert parts["corr_distill"] == pytest.approx(float(expected), rel=1e-6)
    _, untaught = combined_loss(out, {"offsets": offsets, "teacher_mask": torch.tensor([False, False])}, w,
                                teacher_outputs=teacher)
    assert untaught["distill"] == 0.0 and untaught["corr_distill"] == 0.0
    with pytest.raises(ValueError, match="corr_distill"):
        combined_loss(out, {"offsets": offsets}, LossWeights(corr_distill=1.0))


def test_self_similarity_distill_compares_which_frames_look_alike_not_the_embedding_space():
    """Zero for any student whose frames relate as the teacher's do (another size, scale or rotation of the same
    embeddings), the mean squared cosine-matrix gap otherwise, over pairs of valid frames only."""
    torch.manual_seed(0)
    teacher = torch.randn(2, 8, 6)
    rotation, _ = torch.linalg.qr(torch.randn(12, 12))
    same_relations = torch.einsum("ed,bdt->bet", rotation[:, :8], teacher) * 3.0  # [2, 12, 6]
    assert float(self_similarity_distill(same_relations, teacher)) == pytest.approx(0.0, abs=1e-10)
    student = torch.randn(2, 12, 6, requires_grad=True)
    valid = torch.tensor([[True] * 6, [True, True, True, False, False, False]])
    loss = self_similarity_distill(student, teacher, valid)
    s, q = F.normalize(student.detach(), dim=1), F.normalize(teacher, dim=1)
    gap = (s.transpose(1, 2) @ s - q.transpose(1, 2) @ q).pow(2)
    by_hand = (gap[0].sum() + gap[1, :3, :3].sum()) / (36 + 9)
    assert float(loss) == pytest.approx(float(by_hand), rel=1e-5) and float(loss) > 0
    loss.backward()
    assert student.grad is not None and float(student.grad.abs().sum()) > 0
    with pytest.raises(ValueError, match="same B and T"):
        self_similarity_distill(student, teacher[:, :, :5])


def test_video_relation_learns_from_the_teacher_video_embeddings_of_taught_samples():
    out = {**_fake_outputs(b=2, t=6), "video_emb": torch.randn(2, 16, 6, requires_grad=True)}
    teacher = {"logits": torch.randn(2, 31, 6), "video_emb": torch.randn(2, 32, 6)}
    batch = {"offsets": torch.zeros(2, 6, dtype=torch.int64), "teacher_mask": torch.tensor([True, False])}
    _, parts = combined_loss(out, batch, LossWeights(ce=0.0, video_relation=1.0), teacher_outputs=teacher)
    expected = self_similarity_distill(out["video_emb"][:1].detach(), teacher["video_emb"][:1])
    assert parts["video_relation"] == pytest.approx(float(expected), rel=1e-6) and parts["video_relation"] > 0
    with pytest.raises(ValueError, match="video_relation"):
        combined_loss(out, batch, LossWeights(video_relation=1.0))
    # the same for the audio embeddings
    teacher["audio_emb"] = torch.randn(2, 32, 6)
    _, parts = combined_loss(out, batch, LossWeights(ce=0.0, audio_relation=1.0), teacher_outputs=teacher)
    expected = self_similarity_distill(out["audio_emb"][:1].detach(), teacher["audio_emb"][:1])
    assert set(parts) == {"audio_relation", "total"} and parts["audio_relation"] == pytest.approx(float(expected))
    # beside a synthetic teacher every row is taught, but only the folder teacher's rows (relation_mask) relate
    merged = {**batch, "teacher_mask": torch.tensor([True, True]), "relation_mask": torch.tensor([True, False])}
    _, parts = combined_loss(out, merged, LossWeights(ce=0.0, audio_relation=1.0), teacher_outputs=teacher)
    assert parts["audio_relation"] == pytest.approx(float(expected))
