"""Training on cached trunk features: fit what sits on top of frozen pretrained trunks at a fraction of the cost.

With both trunks frozen (a real-face pretrained trunk such as Light-ASD's, see
:mod:`edge_sync.models.trunks.light_asd`), their per-frame features of a clip never change during training, yet a
plain run recomputes them for every window of every step: on a 2-core CPU that is ~17 s a step for a Light-ASD
teacher. Here each segment of the folder goes through the trunks once (eval mode, no gradients), and training
windows are slices of those features: the projections, options, correlation and sync head train at ~20 ms a step.

Windows and offsets are drawn exactly as :class:`~edge_sync.data.folders.VideoFolderDataset` draws them (fresh on
every pass, see :class:`~edge_sync.training.train.FreshWindows`). Pixel augmentation cannot apply to cached
features, so runs that ask for it are refused. A trunk sees a few frames either side of each frame, so segments
are run in chunks that overlap by :data:`CHUNK_OVERLAP` frames: exact for trunks that reach no further.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

CHUNK = 200  # frames per trunk call (bounds memory on long segments)
CHUNK_OVERLAP = 16  # frames of context on each side of a chunk
TRUNKS = ("video_encoder", "audio_encoder")


class OnTrunkFeatures(nn.Module):
    """A sync model seen from its trunks' outputs: batches carry trunk features in ``audio`` / ``video``.

    Saves as the whole model (``checkpoint_module``), trunks included, so the checkpoint runs on raw inputs.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    @property
    def contract(self) -> Any:
        return self.model.contract

    @property
    def checkpoint_module(self) -> nn.Module:
        return self.model

    def forward_features(self, audio: torch.Tensor, video: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.model.forward_trunk_features(audio, video)

    def forward(self, audio: torch.Tensor, video: torch.Tensor, features: bool = True,
                windows: Any = None) -> dict[str, torch.Tensor]:
        """forward_features (what DistributedDataParallel calls); window losses need raw windows: refused."""
        if windows is not None:
            raise ValueError("window_ce needs raw video windows; it cannot train on cached trunk features")
        return self.forward_features(audio, video)


@torch.no_grad()
def _video_features(trunk: nn.Module, crops: Any, preprocessing: Any, device: torch.device) -> torch.Tensor:
    """[C, F] features of a segment's uint8 crops [F, S, S, 3], run in overlapping chunks."""
    frames = len(crops)
    parts = []
    for start in range(0, frames, CHUNK):
        lo, hi = max(0, start - CHUNK_OVERLAP), min(frames, start + CHUNK + CHUNK_OVERLAP)
        video = torch.from_numpy(preprocessing.normalise(crops[lo:hi]))[None].to(device)
        parts.append(trunk(video)[0, :, start - lo:start - lo + min(CHUNK, frames - start)].float().cpu())
    return torch.cat(parts, dim=1)


@torch.no_grad()
def _audio_features(trunk: nn.Module, mfcc: Any, device: torch.device) -> torch.Tensor:
    """[C, F] features of a segment's MFCC [13, 4F] (audio trunks are cheap: one call)."""
    return trunk(torch.from_numpy(mfcc)[None, None].to(device))[0].float().cpu()


def segment_features(folder: Any, model: nn.Module, device: torch.device | str = "cpu", progress: bool = True,
                     ) -> dict[int, list[tuple[torch.Tensor, torch.Tensor]]]:
    """(audio, video) trunk features [C, F] of every segment of every clip of ``folder``, by clip id."""
    from tqdm import tqdm

    device = torch.device(device)
    video_trunk, audio_trunk = model.video_encoder, model.audio_encoder
    modes = [video_trunk.training, audio_trunk.training]
    video_trunk.eval(), audio_trunk.eval()
    try:
        return {clip_id: [(_audio_features(audio_trunk, s.mfcc, device),
                           _video_features(video_trunk, s.crops, folder.preprocessing, device))
                          for s in folder.segments(clip_id)]
                for clip_id in tqdm(range(len(folder.files)), desc="trunk features", unit="clip", disable=not progress)}
    finally:
        video_trunk.train(modes[0]), audio_trunk.train(modes[1])


class TrunkFeatureWindows(Dataset):
    """``count`` training windows of a folder dataset, as trunk features: audio/video [C, T], offsets, valid."""

    def __init__(self, folder: Any, model: nn.Module, count: int, device: torch.device | str = "cpu",
                 progress: bool = True) -> None:
        self.folder, self.count = folder, int(count)
        self.features = segment_features(folder, model, device, progress)

    def __len__(self) -> int:
        return self.count

    def window_features(self, index: int) -> tuple[int, int, torch.Tensor, torch.Tensor, int]:
        """(folder item, pass, audio [C, T], video [C, T], k) of sample ``index``: its window's cached features,
        the sound late by k as the folder plants it."""
        item, epoch = self.folder.on_pass(index)
        clip_id, seg, s, k = self.folder.window(item, epoch=epoch)
        audio, video = self.features[clip_id][seg]
        t = self.folder.frames
        return item, epoch, audio[:, s - k:s - k + t], video[:, s:s + t], k

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        _, _, audio, video, k = self.window_features(index)
        t = self.folder.frames
        return {"audio": audio, "video": video, "offsets": torch.full((t,), k, dtype=torch.int64),
                "valid": torch.ones(t, dtype=torch.bool)}


TEACHER_KEYS = ("teacher_audio", "teacher_video", "teacher_mask")


class TeacherFeatureWindows(TrunkFeatureWindows):
    """A folder's fresh windows (raw, for the student) with the frozen teacher's trunk features of the same window.

    Why: distilling from a teacher on pretrained real-face trunks (Light-ASD's cost ~16 ms a frame on a CPU) would
    spend nearly all of each step in the teacher; its trunks never change, so their features are computed once per
    clip and each step runs only the teacher's projections and head (:meth:`SyncModel.forward_trunk_features`). The
    teacher sees the clean crops even when the student's are augmented.
    """

    def __init__(self, folder: Any, teacher: nn.Module, count: int, device: torch.device | str = "cpu",
                 progress: bool = True) -> None:
        super().__init__(folder, teacher, count, device, progress)
        audio, video = next(iter(self.features.values()))[0]
        self.channels = (audio.shape[0], video.shape[0])

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        item, epoch, audio, video, _ = self.window_features(index)
        return {**self.folder.sample(item, epoch=epoch), "teacher_audio": audio, "teacher_video": video,
                "teacher_mask": torch.tensor(True)}


class WithoutTeacher(Dataset):
    """Samples with zero teacher features and ``teacher_mask`` False (synthetic clips mixed into a distillation on
    cached teacher features train on their labels alone), so they collate with :class:`TeacherFeatureWindows`'."""

    def __init__(self, dataset: Dataset, channels: tuple[int, int], frames: int) -> None:
        self.dataset, self.channels, self.frames = dataset, channels, frames

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {**self.dataset[index], "teacher_audio": torch.zeros(self.channels[0], self.frames),
                "teacher_video": torch.zeros(self.channels[1], self.frames), "teacher_mask": torch.tensor(False)}


def with_teacher_features(dataset: Any, teacher: nn.Module, device: torch.device | str = "cpu",
                          progress: bool = True) -> Dataset:
    """A folder run's dataset (:class:`FreshWindows`, or a :class:`MixedDataset` of it and synthetic clips) with the
    teacher's cached trunk features added to its real windows."""
    from edge_sync.training.train import MixedDataset

    mixed = isinstance(dataset, MixedDataset)
    real = dataset.real if mixed else dataset
    windows = TeacherFeatureWindows(real.folder, teacher, len(real), device, progress)
    if not mixed:
        return windows
    synthetic = WithoutTeacher(dataset.synthetic, windows.channels, real.folder.frames)
    return MixedDataset(windows, synthetic, dataset.fraction, dataset.seed, keys=MixedDataset.KEYS + TEACHER_KEYS)


def synthetic_pool(count: int, frames: int, seed: int, bank_size: int | None = None, cache_dir: Any = None,
                   progress: bool = True) -> dict[str, list[Any]]:
    """``count`` in-sync synthetic clips of ``frames`` frames as folder segments (name -> [segment]).

    Why: synthetic clips are otherwise made fresh for every sample, which cached trunk features cannot follow; a
    fixed pool of them, read like a folder (fresh windows and planted offsets on every pass), keeps a head trained on
    real clips' features right on the synthetic protocol too.
    """
    from tqdm import tqdm

    from edge_sync.data.folders import CachedSegment
    from edge_sync.data.synthetic import make_clip

    pool = {}
    for i in tqdm(range(count), desc="synthetic pool", unit="clip", disable=not progress):
        clip = make_clip(seed, i, "train", frames, offset=0, drift_prob=0.0,
                         cache_dir=Path(cache_dir) if cache_dir else None, bank_size=bank_size)
        pool[f"synthetic_{i:05d}"] = [CachedSegment(0, 0, clip.audio.reshape(clip.audio.shape[-2:]), clip.frames_uint8)]
    return pool


def trunk_feature_dataset(dataset: Any, model: nn.Module, config: Any, device: torch.device | str = "cpu",
                          progress: bool = True) -> Dataset:
    """A folder run's dataset (:class:`FreshWindows`, or a :class:`MixedDataset` of it and synthetic clips) as trunk
    features; synthetic clips come from a :func:`synthetic_pool` of ``config.synthetic_pool`` clips."""
    from edge_sync.data.folders import VideoFolderDataset
    from edge_sync.training.train import MixedDataset

    mixed = isinstance(dataset, MixedDataset)
    real = dataset.real if mixed else dataset
    windows = TrunkFeatureWindows(real.folder, model, len(real), device, progress)
    if not mixed:
        return windows
    pool = synthetic_pool(config.synthetic_pool, config.frames + 2 * real.folder.max_offset, config.seed,
                          config.speech_bank, config.cache_dir, progress)
    folder = VideoFolderDataset("synthetic-pool", frames=config.frames, seed=config.seed, segments=pool,
                                max_offset=real.folder.max_offset)
    synthetic = TrunkFeatureWindows(folder, model, len(dataset), device, progress)
    return MixedDataset(windows, synthetic, dataset.fraction, dataset.seed)


def check_config(config: Any) -> None:
    """What training on cached features cannot do, refused before anything is computed."""
    problems = []
    if config.model == "legacy":
        problems.append("a teacher or student (the legacy SyncNet has no separate trunks to cache)")
    if config.data == "synthetic":
        problems.append("a folder of videos as --data (synthetic clips are made fresh for every sample)")
    if config.augment:
        problems.append("no pixel augmentation (--no-augment)")
    if config.teacher:
        problems.append("no teacher (distillation runs the teacher on raw inputs)")
    if config.loss.window_ce or config.loss.window_context:
        problems.append("no window_ce or window_context (window losses need raw windows)")
    if problems:
        raise ValueError("trunk_features (training on cached trunk features) needs " + "; ".join(problems))


def check_teacher_config(config: Any) -> None:
    """What distilling on the teacher's cached trunk features needs, refused before anything is computed."""
    problems = []
    if not config.teacher:
        problems.append("a teacher (--teacher)")
    if config.data == "synthetic":
        problems.append("a folder of videos as --data (synthetic clips are made fresh for every sample)")
    if config.trunk_features:
        problems.append("no trunk_features (the student trains on raw windows)")
    if (config.augment or {}).get("jitter"):
        problems.append("no temporal jitter in augment (it moves the student's labels away from the window the "
                        "teacher saw)")
    if problems:
        raise ValueError("teacher_trunk_features (the teacher on cached trunk features) needs " + "; ".join(problems))


def check_synthetic_teacher_config(config: Any) -> None:
    """What a teacher for the synthetic clips mixed into a distillation on cached teacher features needs."""
    problems = []
    if not config.teacher_trunk_features:
        problems.append("teacher_trunk_features (without it the teacher already sees every clip)")
    if not config.synthetic_fraction:
        problems.append("a synthetic_fraction (synthetic clips for it to teach)")
    if problems:
        raise ValueError("synthetic_teacher (a teacher for the synthetic clips mixed in) needs " + "; ".join(problems))


SYNTHETIC_TAUGHT = ("logits", "correlation")  # what distillation (distill, corr_distill) reads of a teacher


def teach_synthetic(teacher_outputs: dict[str, torch.Tensor], batch: dict[str, torch.Tensor],
                    synthetic_teacher: nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The folder teacher's outputs with the untaught rows (``teacher_mask`` False: the synthetic clips, whose teacher
    features are zeros) replaced by ``synthetic_teacher``'s on their raw inputs, and the batch with every row taught.

    Why: synthetic clips mixed into a real-face distillation keep a student's sync skills only as far as their labels
    go (one offset per clip); their teacher's per-frame distribution over offsets is the richer target the student
    was first distilled on. The synthetic teacher sees the student's (augmented) inputs, as in a plain distillation.
    Embeddings are not merged (two teachers' embedding spaces need not agree): the batch's ``relation_mask`` keeps
    the folder teacher's rows, the only ones whose embeddings ``video_relation`` / ``audio_relation`` may read.
    """
    untaught = ~batch["teacher_mask"].bool()
    if not bool(untaught.any()):
        return teacher_outputs, batch
    with torch.no_grad():
        taught = synthetic_teacher.forward_features(batch["audio"][untaught], batch["video"][untaught])
    merged = dict(teacher_outputs)
    for key in SYNTHETIC_TAUGHT:
        ours, theirs = teacher_outputs[key], taught[key].to(teacher_outputs[key].dtype)
        if ours.shape[1:] != theirs.shape[1:]:
            raise ValueError(f"the synthetic teacher's {key} is {tuple(theirs.shape[1:])} a clip, the teacher's "
                             f"{tuple(ours.shape[1:])}")
        merged[key] = ours.clone()
        merged[key][untaught] = theirs
    return merged, {**batch, "teacher_mask": torch.ones_like(batch["teacher_mask"]),
                    "relation_mask": batch["teacher_mask"]}


__all__ = ["CHUNK", "CHUNK_OVERLAP", "OnTrunkFeatures", "SYNTHETIC_TAUGHT", "TEACHER_KEYS", "TRUNKS",
           "TeacherFeatureWindows", "TrunkFeatureWindows", "WithoutTeacher", "check_config",
           "check_synthetic_teacher_config", "check_teacher_config", "segment_features", "synthetic_pool",
           "teach_synthetic", "trunk_feature_dataset", "with_teacher_features"]
