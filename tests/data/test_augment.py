"""Augmentations keep audio, video and labels consistent, are deterministic, and never edit their input."""
from __future__ import annotations

import math

import pytest
import torch

from edge_sync.data.augment import (
    Augment, AVMixup, ChannelTilt, ColourJitter, FrequencyMask, HorizontalFlip, LowQuality, RandomResizedCrop,
    TemporalJitter, TimeMask, adjust_colour, degrade, mask_bands, mixup, mixup_batch, one_hot_targets, resized_crop, temporal_shift)
from edge_sync.spec import MAX_OFFSET as K
from edge_sync.spec import MFCC_PER_FRAME, N_MFCC, num_offsets

T = 12
FULL = {
    "jitter": {"p": 1.0}, "crop": {"p": 1.0}, "flip": {"p": 1.0}, "colour": {"p": 1.0}, "degrade": {"p": 1.0},
    "freq_mask": {"p": 1.0, "max_width": 3}, "time_mask": {"p": 1.0, "num_masks": 2},
}


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def make_sample(seed: int = 0, frames: int = T, offset: int = 2) -> dict[str, torch.Tensor]:
    g = gen(seed)
    return {
        "audio": torch.randn(1, N_MFCC, MFCC_PER_FRAME * frames, generator=g),
        "video": torch.rand(3, frames, 112, 112, generator=g) * 1.6 - 0.8,
        "offsets": torch.full((frames,), offset, dtype=torch.int64),
        "valid": torch.ones(frames, dtype=torch.bool),
    }


def marker_sample(offsets: list[int]) -> dict[str, torch.Tensor]:
    """Audio frame t + k carries the marker of video frame t (marker = t + 1, so edges are distinguishable)."""
    frames = len(offsets)
    video = torch.zeros(3, frames, 112, 112)
    audio = torch.full((1, N_MFCC, MFCC_PER_FRAME * frames), -1.0)
    for t, k in enumerate(offsets):
        video[:, t] = t + 1
        if 0 <= t + k < frames:
            audio[..., MFCC_PER_FRAME * (t + k): MFCC_PER_FRAME * (t + k + 1)] = t + 1
    return {"audio": audio, "video": video, "offsets": torch.tensor(offsets, dtype=torch.int64),
            "valid": torch.ones(frames, dtype=torch.bool)}


def audio_frame(audio: torch.Tensor, u: int) -> torch.Tensor:
    return audio[..., MFCC_PER_FRAME * u: MFCC_PER_FRAME * (u + 1)]


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


# --- pipeline-wide properties -----------------------------------------------------------------
def test_same_seed_same_output_and_different_seed_differs():
    aug = Augment.from_config(FULL)
    sample = make_sample()
    assert_same(aug(sample, gen(7)), aug(sample, gen(7)))
    assert not torch.equal(aug(sample, gen(7))["video"], aug(sample, gen(8))["video"])


def test_shapes_and_dtypes_preserved():
    sample = make_sample()
    out = Augment.from_config(FULL)(sample, gen(1))
    for key, value in sample.items():
        assert out[key].shape == value.shape and out[key].dtype == value.dtype, key
    assert out["video"].min() >= -1 and out["video"].max() <= 1


@pytest.mark.parametrize("seed", range(3))
def test_nothing_mutates_the_input(seed):
    sample = make_sample(seed)
    sample["target_probs"] = one_hot_targets(sample["offsets"])
    before = {k: v.clone() for k, v in sample.items()}
    g = gen(seed)
    Augment.from_config({**FULL, "freq_mask": {"p": 1.0, "fill": "mean"}})(sample, g)
    temporal_shift(sample, 2)
    mixup(sample, make_sample(seed + 10), 0.3)
    AVMixup(p=1.0)(sample, make_sample(seed + 10), g)
    batch = {k: torch.stack([v, v.clone()]) for k, v in sample.items()}
    batch_before = {k: v.clone() for k, v in batch.items()}
    mixup_batch(batch, 0.4, g)
    assert_same(sample, before)
    assert_same(batch, batch_before)


def test_config_round_trip_order_and_errors():
    aug = Augment.from_config({"flip": True, "jitter": {"max_shift": 1}, "colour": False, "mixup": {"alpha": 0.2}})
    assert [t.name for t in aug.transforms] == ["jitter", "flip"]  # canonical order, not dict order
    assert aug.transforms[0].max_shift == 1 and aug.mixup is not None and aug.mixup.alpha == 0.2
    again = Augment.from_config(aug.to_config())
    assert again.to_config() == aug.to_config()
    with pytest.raises(ValueError, match="unknown augmentations"):
        Augment.from_config({"rotate": True})
    with pytest.raises(ValueError, match="bad parameters"):
        Augment.from_config({"flip": {"prob": 1}})


def test_probability_zero_is_identity():
    sample = make_sample()
    off = {name: {**params, "p": 0.0} for name, params in FULL.items()}
    out = Augment.from_config(off)(sample, gen(3))
    assert_same(out, sample)
    assert out is not sample  # a new dict: callers may add keys without touching the input


# --- temporal jitter --------------------------------------------------------------------------
@pytest.mark.parametrize("shift", [-2, -1, 1, 2])
def test_jitter_moves_labels_with_the_audio(shift):
    # non-decreasing offsets, so t + k is one-to-one and every marker lands in its own audio frame
    offsets = [-2, -2, -1, -1, 0, 0, 0, 1, 1, 2, 2, 3, 3, 3, 4, 4]
    frames = len(offsets)
    sample = marker_sample(offsets)
    out = temporal_shift(sample, shift, require_audio=True)
    assert torch.equal(out["offsets"], sample["offsets"] + shift)  # sound delayed by j -> k grows by j
    for s in (sample, out):
        matched = [t for t in range(frames) if s["valid"][t] and 0 <= t + int(s["offsets"][t]) < frames]
        assert len(matched) >= frames // 2
        for t in matched:  # the label still points at the audio frame carrying video frame t's marker
            assert torch.all(audio_frame(s["audio"], t + int(s["offsets"][t])) == t + 1), (shift, t)
    # a wrong sign would point every frame at the wrong audio
    wrong = {**out, "offsets": sample["offsets"] - shift}
    assert not all(torch.all(audio_frame(wrong["audio"], t + int(wrong["offsets"][t])) == t + 1)
                   for t in range(frames) if 0 <= t + int(wrong["offsets"][t]) < frames)


def test_jitter_sign_positive_shift_delays_audio():
    sample = marker_sample([0] * 8)
    out = temporal_shift(sample, 1, fill="zero")
    assert torch.all(audio_frame(out["audio"], 0) == 0)  # filled start
    assert torch.all(audio_frame(out["audio"], 3) == 3)  # video frame 2's sound now one frame later
    assert out["offsets"].tolist() == [1] * 8
    edge = temporal_shift(sample, -1, fill="edge")
    assert torch.all(audio_frame(edge["audio"], 7) == audio_frame(sample["audio"], 7)[..., -1:])


def test_jitter_invalidates_frames_leaving_the_range():
    sample = marker_sample([K, K - 1, 0, -K, -K + 1, 3])
    up = temporal_shift(sample, 1)
    assert up["valid"].tolist() == [False, True, True, True, True, True]
    down = temporal_shift(sample, -2)
    assert down["valid"].tolist() == [True, True, True, False, False, True]
    sample["valid"][2] = False  # already-invalid frames stay invalid
    assert not temporal_shift(sample, 1)["valid"][2]


def test_jitter_require_audio_invalidates_filled_matches():
    out = temporal_shift(marker_sample([0] * 6), 2, require_audio=True)
    assert out["valid"].tolist() == [True, True, True, True, False, False]


def test_jitter_shifts_soft_targets():
    sample = make_sample(offset=K - 1)
    sample["offsets"][0] = 0
    sample["target_probs"] = one_hot_targets(sample["offsets"])
    out = temporal_shift(sample, 1)
    assert torch.equal(out["target_probs"][:, 1:], one_hot_targets(out["offsets"])[:, 1:])
    assert out["valid"].tolist() == [True] * T
    out = temporal_shift(sample, 2)
    assert out["valid"].tolist() == [True] + [False] * (T - 1)


def test_random_jitter_is_consistent_and_bounded():
    sample = marker_sample([1] * 10)
    shifts = set()
    for seed in range(20):
        out = TemporalJitter(p=1.0, max_shift=2)(sample, gen(seed))
        shift = int(out["offsets"][0]) - 1
        shifts.add(shift)
        assert torch.equal(out["audio"], temporal_shift(sample, shift)["audio"])
    assert shifts == {-2, -1, 1, 2}


# --- mixup ------------------------------------------------------------------------------------
def test_mixup_targets_sum_to_one_and_blend():
    a, b = make_sample(0, offset=2), make_sample(1, offset=-3)
    b["valid"][4] = False
    out = mixup(a, b, 0.3)
    assert out["target_probs"].shape == (num_offsets(), T) and out["target_probs"].dtype == torch.float32
    assert torch.allclose(out["target_probs"].sum(0), torch.ones(T))
    assert torch.allclose(out["target_probs"][K + 2], torch.full((T,), 0.3))
    assert torch.allclose(out["target_probs"][K - 3], torch.full((T,), 0.7))
    assert torch.allclose(out["audio"], 0.3 * a["audio"] + 0.7 * b["audio"])
    assert torch.allclose(out["video"], 0.3 * a["video"] + 0.7 * b["video"])
    assert torch.equal(out["valid"], a["valid"] & b["valid"])
    assert out["offsets"].tolist() == [-3] * T  # the heavier clip's hard label


def test_mixup_lambda_one_is_one_hot_of_first():
    a, b = make_sample(0, offset=5), make_sample(1, offset=-1)
    out = mixup(a, b, 1.0)
    assert torch.equal(out["target_probs"], one_hot_targets(a["offsets"]))
    assert torch.equal(out["audio"], a["audio"]) and torch.equal(out["video"], a["video"])


def test_av_mixup_and_batch_mixup():
    a, b = make_sample(0, offset=2), make_sample(1, offset=-3)
    mixed = AVMixup(p=1.0, alpha=0.4)(a, b, gen(5))
    assert_same(mixed, AVMixup(p=1.0, alpha=0.4)(a, b, gen(5)))
    lam = float(mixed["target_probs"][K + 2, 0])
    assert 0 <= lam <= 1 and torch.allclose(mixed["audio"], lam * a["audio"] + (1 - lam) * b["audio"], atol=1e-6)
    assert torch.equal(AVMixup(p=0.0)(a, b, gen(5))["target_probs"], one_hot_targets(a["offsets"]))

    clips = [make_sample(i, offset=i - 2) for i in range(4)]
    batch = {k: torch.stack([c[k] for c in clips]) for k in clips[0]}
    out = mixup_batch(batch, 0.4, gen(2))
    assert_same(out, mixup_batch(batch, 0.4, gen(2)))
    assert out["target_probs"].shape == (4, num_offsets(), T)
    assert torch.allclose(out["target_probs"].sum(1), torch.ones(4, T))
    for i in range(4):  # each clip's audio/video is the same blend as its labels
        weights = out["target_probs"][i, :, 0]
        lam = float(weights[K + i - 2])
        j = [c for c in range(4) if c != i and weights[K + c - 2] > 0]
        partner = j[0] if j else i
        expected = lam * batch["audio"][i] + (1 - lam) * batch["audio"][partner] if j else batch["audio"][i]
        assert torch.allclose(out["audio"][i], expected, atol=1e-5)
        expected = lam * batch["video"][i] + (1 - lam) * batch["video"][partner] if j else batch["video"][i]
        assert torch.allclose(out["video"][i], expected, atol=1e-5)
    assert torch.equal(mixup_batch(batch, 0.0)["target_probs"], one_hot_targets(batch["offsets"]))


# --- audio masks ------------------------------------------------------------------------------
@pytest.mark.parametrize("fill", ["zero", "mean"])
def test_mask_bands_fills_exactly_the_chosen_rows(fill):
    audio = make_sample()["audio"]
    out = mask_bands(audio, 4, 3, fill)
    changed = [r for r in range(N_MFCC) if not torch.equal(out[0, r], audio[0, r])]
    assert changed == [4, 5, 6]
    expected = torch.zeros_like(out[0, 4:7]) if fill == "zero" else audio[0, 4:7].mean(-1, keepdim=True).expand(3, -1)
    assert torch.allclose(out[0, 4:7], expected)


def test_random_frequency_mask_is_one_band_within_width():
    sample = make_sample()
    widths = set()
    for seed in range(30):
        out = FrequencyMask(p=1.0, max_width=4)(sample, gen(seed))["audio"]
        rows = [r for r in range(N_MFCC) if not torch.equal(out[0, r], sample["audio"][0, r])]
        assert rows == list(range(rows[0], rows[0] + len(rows))) and 1 <= len(rows) <= 4
        assert torch.all(out[0, rows] == 0)
        widths.add(len(rows))
    assert widths == {1, 2, 3, 4}


def test_time_mask_zeros_only_a_short_run():
    sample = make_sample()
    out = TimeMask(p=1.0, max_width=3)(sample, gen(4))["audio"]
    cols = [c for c in range(out.shape[-1]) if not torch.equal(out[..., c], sample["audio"][..., c])]
    assert 1 <= len(cols) <= 3 and cols == list(range(cols[0], cols[0] + len(cols)))
    assert torch.all(out[..., cols] == 0)


# --- video transforms -------------------------------------------------------------------------
def test_flip_is_label_preserving_and_flip_twice_is_identity():
    sample = make_sample()
    flip = HorizontalFlip(p=1.0)
    once = flip(sample)
    assert not torch.equal(once["video"], sample["video"])
    assert torch.equal(once["video"][..., 0], sample["video"][..., -1])
    assert_same({k: v for k, v in once.items() if k != "video"}, {k: v for k, v in sample.items() if k != "video"})
    assert_same(flip(once), sample)


def test_brightness_change_is_the_same_for_every_frame():
    sample = make_sample()
    out = ColourJitter(p=1.0, brightness=0.15, contrast=0.0, saturation=0.0)(sample, gen(3))
    diff = out["video"] - sample["video"]
    assert diff.abs().max() > 1e-3
    assert torch.allclose(diff, diff[:, :1].expand_as(diff), atol=1e-6)


def test_colour_jitter_is_one_change_per_clip_and_clamped():
    frame = torch.rand(3, 1, 112, 112, generator=gen(1)) * 2 - 1
    sample = {**make_sample(), "video": frame.expand(3, T, 112, 112).contiguous()}
    out = ColourJitter(p=1.0, brightness=0.3, contrast=0.5, saturation=0.5)(sample, gen(2))["video"]
    assert not torch.equal(out, sample["video"])
    assert torch.equal(out, out[:, :1].expand_as(out))  # identical frames stay identical
    assert out.min() >= -1 and out.max() <= 1
    grey = adjust_colour(sample["video"], saturation=0.0)
    assert torch.allclose(grey[0], grey[1]) and torch.allclose(grey[1], grey[2])


def test_contrast_is_one_affine_map_for_the_whole_clip():
    # frames of different brightness: a per-frame contrast centre would give each frame its own offset
    base = torch.rand(3, 1, 112, 112, generator=gen(4)) * 0.3 - 0.15
    ramp = torch.linspace(-0.4, 0.4, T).view(1, T, 1, 1)
    video = base + ramp
    out = ColourJitter(p=1.0, brightness=0.0, contrast=0.4, saturation=0.0)({**make_sample(), "video": video},
                                                                           gen(9))["video"]
    design = torch.stack([video.flatten(), torch.ones(video.numel())], dim=1).double()
    fit = torch.linalg.lstsq(design, out.flatten().double().unsqueeze(1)).solution
    assert abs(float(fit[0]) - 1.0) > 0.01  # contrast really changed
    assert torch.allclose((design @ fit).squeeze(1).float(), out.flatten(), atol=1e-5)
    centre = float((video * torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1, 1)).sum(0).mean())
    assert torch.allclose(adjust_colour(video, contrast=1.5), centre + 1.5 * (video - centre), atol=1e-6)


def test_crop_is_the_same_for_every_frame():
    base = torch.rand(3, 1, 112, 112, generator=gen(3)) * 0.2
    scale = torch.arange(1, T + 1, dtype=torch.float32).view(1, T, 1, 1)
    sample = {**make_sample(), "video": base * scale}
    out = RandomResizedCrop(p=1.0)(sample, gen(6))["video"]
    assert out.shape == sample["video"].shape and not torch.allclose(out, sample["video"])
    # bilinear resizing is linear, so one box for all frames keeps frame t = (t + 1) * frame 0
    assert torch.allclose(out, out[:, :1] * scale, atol=1e-5)


def test_resized_crop_full_box_is_identity_and_box_is_used():
    video = make_sample()["video"]
    assert torch.equal(resized_crop(video, 0, 0, 112, 112), video)
    corner = torch.zeros(3, 2, 112, 112)
    corner[..., 56:, 56:] = 1.0
    out = resized_crop(corner, 56, 56, 56, 56)
    assert torch.allclose(out, torch.ones_like(out))


# --- a poorer camera ----------------------------------------------------------------------------
def _detail(video: torch.Tensor) -> float:
    """Mean absolute difference between horizontal neighbours: the fine detail a small face loses."""
    return float((video[..., 1:] - video[..., :-1]).abs().mean())


def test_degrade_scale_removes_detail_and_keeps_the_picture():
    video = make_sample(3)["video"]
    small = degrade(video, scale=0.25)
    assert small.shape == video.shape and small.dtype == video.dtype
    assert _detail(small) < 0.5 * _detail(video)
    assert abs(float(small.mean() - video.mean())) < 0.02  # blurred, not darkened
    assert torch.equal(degrade(video), video)  # scale 1, gamma 1, no noise: untouched


def test_degrade_gamma_darkens_mid_tones_and_keeps_black_and_white():
    video = torch.linspace(-1, 1, 112).expand(3, 2, 112, 112).clone()
    dark = degrade(video, gamma=1.5)
    assert float(dark.mean()) < float(video.mean()) - 0.1
    assert torch.allclose(dark[..., 0], video[..., 0]) and torch.allclose(dark[..., -1], video[..., -1])


def test_degrade_noise_is_fresh_per_frame_and_clamped():
    video = torch.zeros(3, 4, 112, 112)
    noisy = degrade(video, noise=0.05, generator=gen(1))
    assert 0.04 < float(noisy.std()) < 0.06
    assert not torch.equal(noisy[:, 0], noisy[:, 1])
    assert degrade(torch.ones(3, 2, 8, 8), noise=1.0, generator=gen(2)).max() <= 1


def test_low_quality_is_one_camera_per_clip_within_its_ranges():
    sample = make_sample(4)
    out = LowQuality(p=1.0, min_scale=0.3, max_gamma=1.6, noise=0.0)(sample, gen(5))
    assert not torch.equal(out["video"], sample["video"])
    assert torch.equal(out["audio"], sample["audio"]) and torch.equal(out["offsets"], sample["offsets"])
    assert torch.equal(LowQuality(p=0.0)(sample, gen(5))["video"], sample["video"])


def test_channel_tilt_moves_each_sample_by_one_constant_smooth_spectral_offset():
    """p=1: the MFCC moves by the same 13 values at every step (a channel does not change over a window), by at most
    what the configured gains allow; p=0 or another seed: unchanged or different; a non-MFCC audio is refused."""
    sample = make_sample(3)
    out = ChannelTilt(p=1.0)(sample, gen(1))
    delta = out["audio"] - sample["audio"]
    assert torch.allclose(delta, delta[..., :1].expand_as(delta), atol=1e-5) and float(delta.abs().max()) > 0.1
    assert torch.equal(out["video"], sample["video"]) and torch.equal(out["offsets"], sample["offsets"])
    assert torch.equal(ChannelTilt(p=1.0)(sample, gen(1))["audio"], out["audio"])  # seeded
    assert not torch.equal(ChannelTilt(p=1.0)(sample, gen(2))["audio"], out["audio"])
    level_only = ChannelTilt(p=1.0, max_tilt_db=0.0, max_bump_db=0.0, max_gain_db=10.0)(sample, gen(1))
    shift = level_only["audio"] - sample["audio"]
    assert torch.allclose(shift[0, 1:], torch.zeros_like(shift[0, 1:]), atol=1e-5)  # a level moves energy only
    assert float(shift[0, 0].abs().max()) <= 10.0 * math.log(10.0) / 10.0 + 1e-5
    assert torch.equal(ChannelTilt(p=0.0)(sample, gen(1))["audio"], sample["audio"])
    with pytest.raises(ValueError, match="MFCC"):
        ChannelTilt(p=1.0)({**sample, "audio": torch.zeros(1, 40, 48)}, gen(1))
    assert isinstance(Augment.from_config({"channel": True}).transforms[0], ChannelTilt)
