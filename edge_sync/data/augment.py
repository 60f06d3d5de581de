"""Label-consistent audio-visual augmentations for sync training.

A sync label says *which audio frame goes with which video frame*, so an augmentation is only safe
if it moves the label exactly as it moves the data. Every transform here therefore takes and returns
a whole sample and updates ``offsets`` / ``valid`` / ``target_probs`` together with the tensors:

- :class:`TemporalJitter` slides the audio against the video and adds the slide to the offsets;
- :func:`mixup` / :func:`mixup_batch` blend two clips with one lambda and blend their labels too;
- the video transforms (:class:`HorizontalFlip`, :class:`ColourJitter`, :class:`RandomResizedCrop`) draw
  their parameters once per clip, because a per-frame change would itself look like (fake) motion;
- the MFCC masks (:class:`FrequencyMask`, :class:`TimeMask`) are SpecAugment-style and label-preserving.

Sample convention (one clip, torch tensors)::

    audio        float32 [1, F, S*T]   MFCC (F=13, S=4) or any [1, bands, steps] feature
    video        float32 [3, T, H, W]  normalised crops in [-1, 1]
    offsets      int64   [T]           true offset k per frame (k > 0: sound late by k frames)
    valid        bool    [T]           frames that carry a usable label
    target_probs float32 [2K+1, T]     optional soft labels over offsets -K..K (added by mixup)

Transforms never modify their input in place and never change dtypes or shapes. Randomness comes only
from the ``torch.Generator`` passed in, so the same seed gives the same output.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from edge_sync.features.mfcc import cepstral_offset
from edge_sync.spec import MAX_OFFSET, MFCC, num_offsets

Sample = dict[str, torch.Tensor]
FILLS = ("edge", "zero")
MASK_FILLS = ("zero", "mean")
# ITU-R BT.601 luma weights, as torchvision's rgb_to_grayscale; linear, so valid in normalised space
_LUMA = (0.299, 0.587, 0.114)


# --- random draws (all through the caller's generator) ------------------------------------------
def _uniform(generator: torch.Generator | None, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator, dtype=torch.float64))


def _symmetric(generator: torch.Generator | None, limit: float) -> float:
    """Uniform in [-limit, limit]: the draw of every "up to +-limit" augmentation parameter."""
    return _uniform(generator, -limit, limit)


def _randint(generator: torch.Generator | None, low: int, high: int) -> int:
    """Uniform integer in [low, high] inclusive."""
    return int(torch.randint(low, high + 1, (), generator=generator))


def _coin(generator: torch.Generator | None, p: float) -> bool:
    """True with probability p; p of 0 or 1 draws nothing, so switching a transform off keeps the stream."""
    if p <= 0.0:
        return False
    if p >= 1.0:
        return True
    return _uniform(generator, 0.0, 1.0) < p


def sample_beta(alpha: float, generator: torch.Generator | None = None, size: int = 1) -> torch.Tensor:
    """``size`` draws of Beta(alpha, alpha) as float64.

    torch's Beta/Gamma samplers ignore generators, so a numpy generator is seeded from the torch one:
    the result is still a pure function of the caller's generator state.
    """
    if alpha <= 0:
        raise ValueError(f"mixup alpha must be > 0, got {alpha}")
    seed = int(torch.randint(0, 2**62, (), generator=generator))
    return torch.from_numpy(np.random.default_rng(seed).beta(alpha, alpha, size=size))


# --- sample helpers -----------------------------------------------------------------------------
def check_sample(sample: Sample, max_offset: int = MAX_OFFSET) -> int:
    """Validate a single-clip sample and return its number of frames T."""
    missing = [k for k in ("audio", "video", "offsets", "valid") if k not in sample]
    if missing:
        raise KeyError(f"sample lacks {missing}; expected keys audio, video, offsets, valid (+ target_probs)")
    video, audio = sample["video"], sample["audio"]
    if video.ndim != 4 or video.shape[0] != 3:
        raise ValueError(f"video must be [3, T, H, W] for one clip, got {list(video.shape)}; "
                         "use mixup_batch for batches")
    frames = video.shape[1]
    if audio.ndim < 2 or audio.shape[-1] % frames != 0:
        raise ValueError(f"audio time {audio.shape[-1]} is not a whole multiple of the {frames} video frames")
    for key in ("offsets", "valid"):
        if tuple(sample[key].shape) != (frames,):
            raise ValueError(f"{key} must be [T={frames}], got {list(sample[key].shape)}")
    if "target_probs" in sample and tuple(sample["target_probs"].shape) != (num_offsets(max_offset), frames):
        raise ValueError(f"target_probs must be [{num_offsets(max_offset)}, {frames}], "
                         f"got {list(sample['target_probs'].shape)}")
    return frames


def in_range(offsets: torch.Tensor, max_offset: int = MAX_OFFSET) -> torch.Tensor:
    """Frames whose offset is one of the model's classes -K..K."""
    return (offsets >= -max_offset) & (offsets <= max_offset)


def one_hot_targets(offsets: torch.Tensor, max_offset: int = MAX_OFFSET) -> torch.Tensor:
    """Offsets [..., T] -> one-hot float32 [..., 2K+1, T]; out-of-range offsets are clamped (mark them invalid)."""
    index = offsets.clamp(-max_offset, max_offset) + max_offset
    return F.one_hot(index, num_offsets(max_offset)).to(torch.float32).movedim(-1, -2)


def with_target_probs(sample: Sample, max_offset: int = MAX_OFFSET) -> Sample:
    """The sample with one-hot ``target_probs`` if it has none, so mixed and unmixed clips collate together."""
    if "target_probs" in sample:
        return dict(sample)
    return {**sample, "target_probs": one_hot_targets(sample["offsets"], max_offset)}


# --- temporal jitter ----------------------------------------------------------------------------
def _shift_time(x: torch.Tensor, steps: int, fill: str) -> torch.Tensor:
    """out[..., i] = x[..., i - steps]; the uncovered end is the edge value or zero."""
    if steps == 0:
        return x.clone()
    n = x.shape[-1]
    steps = max(-n, min(n, steps))
    if steps > 0:
        pad = x[..., :1].expand(*x.shape[:-1], steps) if fill == "edge" else x.new_zeros(*x.shape[:-1], steps)
        return torch.cat([pad, x[..., : n - steps]], dim=-1)
    pad = x[..., -1:].expand(*x.shape[:-1], -steps) if fill == "edge" else x.new_zeros(*x.shape[:-1], -steps)
    return torch.cat([x[..., -steps:], pad], dim=-1)


def temporal_shift(sample: Sample, shift: int, max_offset: int = MAX_OFFSET, fill: str = "edge",
                   require_audio: bool = False) -> Sample:
    """Delay the audio by ``shift`` video frames (negative: advance it) and move the labels with it.

    Video frame t matched audio frame t + k; after the audio is delayed by j frames the same sound
    sits at t + k + j, so the new offset is k + j. Frames whose new offset leaves -K..K become
    invalid. With ``require_audio`` a frame also becomes invalid when its matching audio frame is not
    real audio any more (outside the clip or in the filled end). Soft labels shift along the offset
    axis; a frame that loses probability mass off the range is invalid and its row renormalised.
    """
    if fill not in FILLS:
        raise ValueError(f"fill must be one of {FILLS}, got {fill!r}")
    frames = check_sample(sample, max_offset)
    audio = sample["audio"]
    steps_per_frame = audio.shape[-1] // frames
    offsets = sample["offsets"] + shift
    valid = sample["valid"] & in_range(offsets, max_offset)
    if require_audio:
        t = torch.arange(frames, device=offsets.device)
        old_match, new_match = t + sample["offsets"], t + offsets
        valid &= (old_match >= 0) & (old_match < frames) & (new_match >= 0) & (new_match < frames)
    out = {**sample, "audio": _shift_time(audio, shift * steps_per_frame, fill), "offsets": offsets,
           "valid": valid}
    if "target_probs" in sample:
        probs = _shift_time(sample["target_probs"].movedim(0, -1), shift, "zero").movedim(-1, 0)
        mass = probs.sum(dim=0)
        out["valid"] = valid & (mass > 1.0 - 1e-4)
        out["target_probs"] = torch.where(mass > 0, probs / mass.clamp_min(1e-12), probs)
    return out


# --- mixup --------------------------------------------------------------------------------------
def mixup(a: Sample, b: Sample, lam: float, max_offset: int = MAX_OFFSET) -> Sample:
    """Blend two clips of equal length with one ``lam`` for audio, video and labels alike.

    ``target_probs`` = lam * p_a + (1 - lam) * p_b per frame, where p is a clip's soft labels or the
    one-hot of its offsets. ``offsets`` are those of the clip with the larger weight, so code that
    wants hard labels still has a sensible one; ``valid`` needs both clips valid (and in range).
    """
    frames = check_sample(a, max_offset)
    if check_sample(b, max_offset) != frames or a["audio"].shape != b["audio"].shape:
        raise ValueError(f"mixup needs clips of equal shape, got audio {list(a['audio'].shape)} vs "
                         f"{list(b['audio'].shape)}, video {list(a['video'].shape)} vs {list(b['video'].shape)}")
    lam = float(lam)
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"mixup lambda must be in [0, 1], got {lam}")
    pa = with_target_probs(a, max_offset)["target_probs"]
    pb = with_target_probs(b, max_offset)["target_probs"]

    def mix(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (lam * x + (1.0 - lam) * y).to(x.dtype)

    return {
        **a,
        "audio": mix(a["audio"], b["audio"]),
        "video": mix(a["video"], b["video"]),
        "offsets": (a if lam >= 0.5 else b)["offsets"].clone(),
        "valid": a["valid"] & b["valid"] & in_range(a["offsets"], max_offset) & in_range(b["offsets"], max_offset),
        "target_probs": mix(pa, pb),
    }


def mixup_batch(batch: Sample, alpha: float, generator: torch.Generator | None = None,
                max_offset: int = MAX_OFFSET, per_sample: bool = True) -> Sample:
    """Mix every clip of a collated batch with a random partner of the same batch.

    ``batch`` holds the sample keys with a leading batch dim (audio [B,1,F,ST], video [B,3,T,H,W],
    offsets/valid [B,T], optional target_probs [B,2K+1,T]). One lambda per clip (or one for the
    batch with ``per_sample=False``) is drawn from Beta(alpha, alpha) and used for both modalities
    and the labels. The result always carries ``target_probs``; alpha <= 0 only adds one-hot targets.
    """
    video = batch["video"]
    if video.ndim != 5:
        raise ValueError(f"mixup_batch needs a batch with video [B, 3, T, H, W], got {list(video.shape)}")
    size = video.shape[0]
    probs = batch["target_probs"] if "target_probs" in batch else one_hot_targets(batch["offsets"], max_offset)
    if alpha <= 0 or size < 2:
        return {**batch, "target_probs": probs}
    perm = torch.randperm(size, generator=generator)
    lam = sample_beta(alpha, generator, size if per_sample else 1).to(torch.float32).expand(size)

    def mix(x: torch.Tensor) -> torch.Tensor:
        w = lam.to(x.device).view(size, *([1] * (x.ndim - 1)))
        return (w * x + (1.0 - w) * x[perm]).to(x.dtype)

    keep = (lam >= 0.5).to(batch["offsets"].device).view(size, 1)
    ok = batch["valid"] & in_range(batch["offsets"], max_offset)
    return {
        **batch,
        "audio": mix(batch["audio"]),
        "video": mix(video),
        "offsets": torch.where(keep, batch["offsets"], batch["offsets"][perm]),
        "valid": ok & ok[perm],
        "target_probs": mix(probs),
    }


# --- MFCC masks ---------------------------------------------------------------------------------
def _fill_values(audio: torch.Tensor, fill: str) -> torch.Tensor:
    """Per-coefficient fill [..., F, 1]: zero, or the coefficient's mean over the clip."""
    if fill not in MASK_FILLS:
        raise ValueError(f"mask fill must be one of {MASK_FILLS}, got {fill!r}")
    if fill == "zero":
        return audio.new_zeros(*audio.shape[:-1], 1)
    return audio.mean(dim=-1, keepdim=True)


def _apply_mask(audio: torch.Tensor, bands: torch.Tensor, steps: torch.Tensor, fill: str) -> torch.Tensor:
    """A copy of ``audio`` [..., F, S] with the cells in the masked bands or steps replaced by the fill.

    The fill is computed from the unmasked input, so several masks never feed on each other.
    """
    cells = bands.view(-1, 1) | steps.view(1, -1)
    return torch.where(cells, _fill_values(audio, fill), audio)


def mask_bands(audio: torch.Tensor, start: int, width: int, fill: str = "zero") -> torch.Tensor:
    """A copy of ``audio`` [..., F, S] with coefficients start..start+width-1 replaced by the fill."""
    bands = torch.zeros(audio.shape[-2], dtype=torch.bool, device=audio.device)
    bands[start:start + width] = True
    return _apply_mask(audio, bands, torch.zeros(audio.shape[-1], dtype=torch.bool, device=audio.device), fill)


def mask_steps(audio: torch.Tensor, start: int, width: int, fill: str = "zero") -> torch.Tensor:
    """A copy of ``audio`` [..., F, S] with time steps start..start+width-1 replaced by the fill."""
    steps = torch.zeros(audio.shape[-1], dtype=torch.bool, device=audio.device)
    steps[start:start + width] = True
    return _apply_mask(audio, torch.zeros(audio.shape[-2], dtype=torch.bool, device=audio.device), steps, fill)


def _random_runs(length: int, max_width: int, count: int, generator: torch.Generator | None) -> torch.Tensor:
    """Boolean [length] marking ``count`` runs of 1..max_width consecutive positions."""
    marked = torch.zeros(length, dtype=torch.bool)
    for _ in range(count):
        width = _randint(generator, 1, max(1, min(max_width, length)))
        start = _randint(generator, 0, length - width)
        marked[start:start + width] = True
    return marked


# --- video transforms ---------------------------------------------------------------------------
def adjust_colour(video: torch.Tensor, brightness: float = 0.0, contrast: float = 1.0,
                  saturation: float = 1.0) -> torch.Tensor:
    """One colour change for a whole clip [3, T, H, W] in normalised [-1, 1] space, clamped.

    brightness is added (in normalised units, so the change is the same everywhere); contrast scales
    around the clip's mean grey, not each frame's, so no frame-to-frame flicker is introduced;
    saturation blends each pixel with its own grey.
    """
    luma = torch.tensor(_LUMA, dtype=video.dtype, device=video.device).view(3, 1, 1, 1)
    x = video + brightness
    if contrast != 1.0:
        mean_grey = (x * luma).sum(dim=0).mean()
        x = mean_grey + contrast * (x - mean_grey)
    if saturation != 1.0:
        grey = (x * luma).sum(dim=0, keepdim=True)
        x = grey + saturation * (x - grey)
    return x.clamp(-1.0, 1.0)


def resized_crop(video: torch.Tensor, top: int, left: int, height: int, width: int) -> torch.Tensor:
    """Crop the same box from every frame of [3, T, H, W] and resize back to H x W (bilinear)."""
    size = video.shape[-2:]
    crop = video[..., top:top + height, left:left + width]
    if tuple(crop.shape[-2:]) == tuple(size):
        return crop.clone()
    frames = crop.transpose(0, 1)  # [T, 3, h, w]: interpolate treats T as the batch
    resized = F.interpolate(frames, size=tuple(size), mode="bilinear", align_corners=False)
    return resized.transpose(0, 1).contiguous().to(video.dtype)


# --- transform classes --------------------------------------------------------------------------
class Transform(Protocol):
    """A single-clip augmentation: returns a new sample, never edits the input."""

    name: ClassVar[str]
    p: float

    def __call__(self, sample: Sample, generator: torch.Generator | None = None) -> Sample: ...


@dataclass
class TemporalJitter:
    """With probability p, delay/advance the audio by 1..max_shift frames (sign random) and fix the labels."""

    name: ClassVar[str] = "jitter"
    p: float = 0.5
    max_shift: int = 2
    fill: str = "edge"
    require_audio: bool = False
    max_offset: int = MAX_OFFSET

    def __call__(self, sample: Sample, generator: torch.Generator | None = None) -> Sample:
        if self.max_shift < 1 or not _coin(generator, self.p):
            return dict(sample)
        shift = _randint(generator, 1, self.max_shift) * (1 if _coin(generator, 0.5) else -1)
        return temporal_shift(sample, shift, self.max_offset, self.fill, self.require_audio)


def _mask_runs(audio: torch.Tensor, axis: int, max_width: int, num_masks: int, fill: str,
               generator: torch.Generator | None) -> torch.Tensor:
    """Mask random runs along ``axis`` (-2: bands, -1: steps) of a [.., bands, steps] feature."""
    runs = _random_runs(audio.shape[axis], max_width, num_masks, generator).to(audio.device)
    other = -1 if axis == -2 else -2
    none = torch.zeros(audio.shape[other], dtype=torch.bool, device=audio.device)
    bands, steps = (runs, none) if axis == -2 else (none, runs)
    return _apply_mask(audio, bands, steps, fill)


@dataclass
class FrequencyMask:
    """With probability p, mask ``num_masks`` bands of 1..max_width consecutive coefficients."""

    name: ClassVar[str] = "freq_mask"
    p: float = 0.5
    max_width: int = 2
    num_masks: int = 1
    fill: str = "zero"

    def __call__(self, sample: Sample, generator: torch.Generator | None = None) -> Sample:
        audio = sample["audio"]
        if audio.ndim < 3:
            raise ValueError(f"frequency masking needs a [1, bands, steps] feature, got {list(audio.shape)}")
        if not _coin(generator, self.p):
            return dict(sample)
        return {**sample, "audio": _mask_runs(audio, -2, self.max_width, self.num_masks, self.fill, generator)}


@dataclass
class ChannelTilt:
    """With probability p, the sound as another microphone or room would give it: over the mel bands, a gain that
    tilts linearly by up to +-max_tilt_db from the lowest to the highest band, a smooth bump of up to +-max_bump_db
    and an overall level of up to +-max_gain_db, applied to the MFCC as the constant offset it amounts to
    (:func:`edge_sync.features.mfcc.cepstral_offset`). Why: a model that keys on the spectral balance of its
    training clips' recordings reads another recording of the same speech at another lag; distilled from a teacher
    that heard the clean sound, the student learns to ignore the channel."""

    name: ClassVar[str] = "channel"
    p: float = 0.5
    max_tilt_db: float = 12.0
    max_bump_db: float = 6.0
    max_gain_db: float = 10.0

    def __call__(self, sample: Sample, generator: torch.Generator | None = None) -> Sample:
        audio = sample["audio"]
        if audio.ndim < 3 or audio.shape[-2] != MFCC.numcep:
            raise ValueError(f"the channel augmentation needs a [1, {MFCC.numcep}, steps] MFCC, "
                             f"got {list(audio.shape)}")
        if not _coin(generator, self.p):
            return dict(sample)
        x = np.linspace(0.0, 1.0, MFCC.nfilt)
        gain_db = (_symmetric(generator, self.max_tilt_db) * (x - 0.5)
                   + _symmetric(generator, self.max_bump_db) * np.sin(np.pi * x)
                   + _symmetric(generator, self.max_gain_db))
        offset = torch.from_numpy(cepstral_offset(gain_db * math.log(10.0) / 10.0)).to(audio.dtype)
        return {**sample, "audio": audio + offset[:, None]}


@dataclass
class TimeMask:
    """With probability p, mask ``num_masks`` runs of 1..max_width MFCC steps (keep runs short: the
    model must still see which sound goes with which frame)."""

    name: ClassVar[str] = "time_mask"
    p: float = 0.5
    max_width: int = 4
    num_masks: int = 1
    fill: str = "zero"

    def __call__(self, sample: Sample, generator: torch.Generator | None = None) -> Sample:
        if not _coin(generator, self.p):
            return dict(sample)
        audio = sample["audio"]
        return {**sample, "audio": _mask_runs(audio, -1, self.max_width, self.num_masks, self.fill, generator)}


@dataclass
class HorizontalFlip:
    """With probability p, mirror every frame left-right (a mirrored mouth speaks the same sounds)."""

    name: ClassVar[str] = "flip"
    p: float = 0.5

    def __call__(self, sample: Sample, generator: torch.Generator | None = None) -> Sample:
        if not _coin(generator, self.p):
            return dict(sample)
        return {**sample, "video": sample["video"].flip(-1)}


@dataclass
class ColourJitter:
    """With probability p, one random brightness/contrast/saturation change for the whole clip.

    brightness is the largest added shift in normalised units; contrast and saturation are the
    largest relative change of their factor (factor ~ U(1 - c, 1 + c)).
    """

    name: ClassVar[str] = "colour"
    p: float = 0.8
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2

    def __call__(self, sample: Sample, generator: torch.Generator | None = None) -> Sample:
        if not _coin(generator, self.p):
            return dict(sample)
        shift = _symmetric(generator, self.brightness) if self.brightness else 0.0
        contrast = _uniform(generator, 1 - self.contrast, 1 + self.contrast) if self.contrast else 1.0
        saturation = _uniform(generator, 1 - self.saturation, 1 + self.saturation) if self.saturation else 1.0
        return {**sample, "video": adjust_colour(sample["video"], shift, contrast, saturation)}


def degrade(video: torch.Tensor, scale: float = 1.0, gamma: float = 1.0, noise: float = 0.0,
            generator: torch.Generator | None = None) -> torch.Tensor:
    """A poorer camera for a clip [3, T, H, W] in normalised [-1, 1] space: each frame shrunk to ``scale`` of its
    size (area) and blown back up (bilinear), as a small face is; intensities raised to ``gamma`` (> 1 darkens
    the mid-tones, as under poor light); Gaussian noise of SD ``noise`` (normalised units), fresh per pixel."""
    x = video
    size = tuple(video.shape[-2:])
    small = (max(1, round(size[0] * scale)), max(1, round(size[1] * scale)))
    if small != size:
        frames = x.transpose(0, 1)  # [T, 3, H, W]
        frames = F.interpolate(F.interpolate(frames, size=small, mode="area"), size=size, mode="bilinear",
                               align_corners=False)
        x = frames.transpose(0, 1)
    if gamma != 1.0:
        x = ((x.clamp(-1.0, 1.0) + 1.0) / 2.0).pow(gamma) * 2.0 - 1.0
    if noise > 0:
        x = x + noise * torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    return x.clamp(-1.0, 1.0).contiguous().to(video.dtype)


@dataclass
class LowQuality:
    """With probability p, one poorer camera for the whole clip (:func:`degrade`): scale ~ U(min_scale, 1),
    gamma log-uniform in [1 / max_gamma, max_gamma], noise SD ~ U(0, noise). Why: the real clips a model trains on
    are mostly large, well-lit faces; a small, dim or noisy face (a medium shot at 360p, a dark room) is a mouth
    seen through fewer, noisier pixels."""

    name: ClassVar[str] = "degrade"
    p: float = 0.5
    min_scale: float = 0.3
    max_gamma: float = 1.6
    noise: float = 0.06

    def __call__(self, sample: Sample, generator: torch.Generator | None = None) -> Sample:
        if not _coin(generator, self.p):
            return dict(sample)
        scale = _uniform(generator, self.min_scale, 1.0)
        gamma = math.exp(_symmetric(generator, math.log(self.max_gamma)))
        sd = _uniform(generator, 0.0, self.noise)
        return {**sample, "video": degrade(sample["video"], scale, gamma, sd, generator)}


@dataclass
class RandomResizedCrop:
    """With probability p, crop one box (area fraction in ``scale``, aspect ratio in ``ratio``) from every
    frame and resize it back: the mouth moves a little in the crop, the same way in every frame."""

    name: ClassVar[str] = "crop"
    p: float = 0.5
    scale: tuple[float, float] = (0.8, 1.0)
    ratio: tuple[float, float] = (0.9, 1.1)

    def __call__(self, sample: Sample, generator: torch.Generator | None = None) -> Sample:
        if not _coin(generator, self.p):
            return dict(sample)
        height, width = sample["video"].shape[-2:]
        area = _uniform(generator, *self.scale) * height * width
        aspect = math.exp(_uniform(generator, math.log(self.ratio[0]), math.log(self.ratio[1])))
        h = max(1, min(height, round(math.sqrt(area / aspect))))
        w = max(1, min(width, round(math.sqrt(area * aspect))))
        top, left = _randint(generator, 0, height - h), _randint(generator, 0, width - w)
        return {**sample, "video": resized_crop(sample["video"], top, left, h, w)}


@dataclass
class AVMixup:
    """With probability p, mix two clips with lam ~ Beta(alpha, alpha); otherwise return the first with
    one-hot targets, so every output has ``target_probs``."""

    name: ClassVar[str] = "mixup"
    p: float = 0.5
    alpha: float = 0.4
    max_offset: int = MAX_OFFSET

    def __call__(self, a: Sample, b: Sample, generator: torch.Generator | None = None) -> Sample:
        if not _coin(generator, self.p):
            return with_target_probs(a, self.max_offset)
        return mixup(a, b, float(sample_beta(self.alpha, generator)[0]), self.max_offset)

    def batch(self, batch: Sample, generator: torch.Generator | None = None) -> Sample:
        """Batched mixup with probability p for the whole batch (one-hot targets otherwise)."""
        alpha = self.alpha if _coin(generator, self.p) else 0.0
        return mixup_batch(batch, alpha, generator, self.max_offset)


# --- pipeline -----------------------------------------------------------------------------------
TRANSFORMS: dict[str, type] = {cls.name: cls for cls in (
    TemporalJitter, RandomResizedCrop, HorizontalFlip, ColourJitter, LowQuality, ChannelTilt, FrequencyMask,
    TimeMask)}


@dataclass
class Augment:
    """Single-clip transforms applied in order, plus optional batch mixup for the trainer.

    Build it from a config dict whose keys are transform names (``jitter``, ``crop``, ``flip``, ``colour``,
    ``degrade``, ``channel``, ``freq_mask``, ``time_mask``, ``mixup``) and values their parameters (``True`` for
    defaults, ``False``/``None`` to leave it out). Transforms run in that fixed order whatever the
    dict order, so a config read from JSON or YAML always means the same pipeline.
    """

    transforms: list[Transform] = field(default_factory=list)
    mixup: AVMixup | None = None

    @classmethod
    def from_config(cls, config: dict[str, Any] | None) -> Augment:
        config = dict(config or {})
        unknown = set(config) - set(TRANSFORMS) - {"mixup"}
        if unknown:
            raise ValueError(f"unknown augmentations {sorted(unknown)}; known: {sorted([*TRANSFORMS, 'mixup'])}")

        def build(kind: type, params: Any) -> Any:
            if params is None or params is False:
                return None
            params = {} if params is True else dict(params)
            for key in ("scale", "ratio"):
                if key in params:
                    params[key] = tuple(params[key])
            try:
                return kind(**params)
            except TypeError as err:
                raise ValueError(f"bad parameters for augmentation {kind.name!r}: {err}") from None

        transforms = [t for name, kind in TRANSFORMS.items() if (t := build(kind, config.get(name))) is not None]
        return cls(transforms, build(AVMixup, config.get("mixup")))

    def to_config(self) -> dict[str, Any]:
        """The dict :meth:`from_config` takes, for checkpoints and training recipes."""
        config = {t.name: asdict(t) for t in self.transforms}
        if self.mixup is not None:
            config["mixup"] = asdict(self.mixup)
        return config

    def __call__(self, sample: Sample, generator: torch.Generator | None = None) -> Sample:
        check_sample(sample)
        out = dict(sample)
        for transform in self.transforms:
            out = transform(out, generator)
        return out

    def mix_batch(self, batch: Sample, generator: torch.Generator | None = None) -> Sample:
        """Batched mixup if configured; the batch unchanged otherwise."""
        return batch if self.mixup is None else self.mixup.batch(batch, generator)


__all__ = [
    "Augment", "AVMixup", "ChannelTilt", "ColourJitter", "FrequencyMask", "HorizontalFlip", "LowQuality",
    "RandomResizedCrop", "TemporalJitter", "TimeMask", "TRANSFORMS", "adjust_colour", "check_sample", "degrade",
    "in_range", "mask_bands",
    "mask_steps", "mixup", "mixup_batch", "one_hot_targets", "resized_crop", "sample_beta", "temporal_shift",
    "with_target_probs",
]
