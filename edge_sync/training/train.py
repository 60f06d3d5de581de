"""Training and distillation loop: one function, resumable, seeded, and unchanged under torchrun (DDP).

Data are addressed by global step, not by epoch: at step s, rank r of W takes clips
``(s * W + r) * B ... + B - 1``, so a resumed run continues with exactly the clips it would have seen and
any world size sees each synthetic clip once. Rank 0 alone writes checkpoints and shows the progress bar.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from edge_sync._atomic import atomic_torch_save
from edge_sync.models.io import MODEL_KINDS, load, save_checkpoint
from edge_sync.training.losses import LossWeights, combined_loss
from edge_sync.training.windows import sample_windows

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Everything a run depends on; stored in the checkpoint's meta so a bundled model documents its recipe."""

    model: str = "teacher"  # teacher | student | a checkpoint path to fine-tune
    model_config: dict[str, Any] = field(default_factory=dict)  # overrides of TeacherConfig / StudentConfig
    data: str = "synthetic"  # synthetic | a folder of videos
    frames: int = 50
    batch_size: int = 16
    steps: int = 2000
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    grad_clip: float = 5.0
    seed: int = 0
    workers: int = 0
    checkpoint_every: int = 200
    augment: dict[str, Any] | None = None  # edge_sync.data.augment.Augment.from_config, None = off
    loss: LossWeights = field(default_factory=LossWeights)
    teacher: str | None = None  # distillation: path of the teacher checkpoint
    device: str = "auto"
    half_weights: bool = False  # store the final checkpoint in float16 (bundled weights)
    cache_dir: str | None = None
    speech_bank: int | None = None  # synthetic data: use only the first N utterances of the speech bank
    # with a folder of videos: this share of the clips (0..1) comes from the synthetic generator instead, so a model
    # fine-tuned on a few real clips keeps what it learned about sync rather than memorising those clips
    synthetic_fraction: float = 0.0
    freeze: list[str] = field(default_factory=list)  # parameter-name prefixes kept fixed, e.g. ["audio_encoder"]
    # freeze both trunks and train the rest on their features, computed once per clip of a folder (fast on a CPU;
    # see edge_sync.training.trunk_features)
    trunk_features: bool = False
    # distillation from a teacher whose trunks' features of each folder clip are computed once (the teacher is frozen
    # anyway): each step runs only its projections and head, so a Light-ASD teacher costs next to nothing on a CPU
    teacher_trunk_features: bool = False
    synthetic_pool: int = 256  # trunk_features with synthetic_fraction: in-sync synthetic clips rendered once
    # with teacher_trunk_features and synthetic_fraction: a checkpoint that teaches the synthetic clips mixed in (on
    # their raw inputs), which otherwise learn from their labels alone; a student distilled on synthetic clips keeps
    # what its synthetic teacher gave it (per-frame accuracy, the strict 5-frame context) while it learns real faces
    synthetic_teacher: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["loss"] = self.loss.to_dict()
        return d


@dataclass
class TrainResult:
    checkpoint: Path
    steps: int
    seconds: float
    final_loss: float
    history: list[dict[str, float]]
    written: bool = True  # False: stopped early (stop_after, stop_after_seconds); only the train-state was saved


# --- distributed helpers ---------------------------------------------------------------------------------
def _dist_info() -> tuple[int, int, int]:
    """(rank, world, local_rank) from torchrun's environment; (0, 1, 0) when run plainly."""
    return (int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
            int(os.environ.get("LOCAL_RANK", 0)))


def _device(name: str, local_rank: int) -> torch.device:
    if name == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    return torch.device(name)


class StepSampler(Sampler[int]):
    """Yields the dataset indices of steps ``start..steps-1`` for one rank (see module docstring)."""

    def __init__(self, size: int, start: int, steps: int, batch: int, rank: int, world: int) -> None:
        self.size, self.start, self.steps, self.batch, self.rank, self.world = size, start, steps, batch, rank, world

    def __iter__(self) -> Iterator[int]:
        for step in range(self.start, self.steps):
            base = (step * self.world + self.rank) * self.batch
            for j in range(self.batch):
                yield (base + j) % self.size

    def __len__(self) -> int:
        return max(0, self.steps - self.start) * self.batch


def build_dataset(config: TrainConfig, world: int) -> Dataset:
    """Synthetic clips (one per sample, never repeated) or a user's folder of videos (cycled)."""
    if config.data == "synthetic":
        from edge_sync.data.synthetic import SyntheticSyncDataset, prepare_speech_bank

        if _dist_info()[0] == 0:
            prepare_speech_bank("train", Path(config.cache_dir) if config.cache_dir else None,
                                bank_size=config.speech_bank)
        if dist.is_initialized():
            dist.barrier()
        count = config.steps * config.batch_size * world
        return SyntheticSyncDataset(count=count, frames=config.frames, seed=config.seed, split="train",
                                    cache_dir=Path(config.cache_dir) if config.cache_dir else None,
                                    bank_size=config.speech_bank)
    from edge_sync.data.folders import VideoFolderDataset

    root = Path(config.data)
    if not root.is_dir():
        raise FileNotFoundError(f"--data must be 'synthetic' or a folder of videos; {root} is neither")
    folder = VideoFolderDataset(root, frames=config.frames, seed=config.seed,
                                cache_dir=Path(config.cache_dir) if config.cache_dir else None)
    real = FreshWindows(folder, config.steps * config.batch_size * world)
    if not config.synthetic_fraction:
        return real
    if not 0.0 < config.synthetic_fraction < 1.0:
        raise ValueError(f"synthetic_fraction must be in [0, 1), got {config.synthetic_fraction}")
    synthetic = build_dataset(replace(config, data="synthetic", synthetic_fraction=0.0), world)
    return MixedDataset(real, synthetic, config.synthetic_fraction, config.seed)


class FreshWindows(Dataset):
    """A folder dataset read ``count`` times in a row, each pass over it with new windows and offsets.

    Why: a folder of F-frame videos holds about F / T items, and an item's window and planted offset are fixed by
    (seed, epoch, index). Cycling the same items for a whole run shows a small real corpus as a few hundred fixed
    (window, offset) pairs, which a model memorises; item i here is the folder's item ``i % n`` drawn with epoch
    ``i // n``, so every pass draws afresh and a resumed run still sees exactly the same samples.
    """

    def __init__(self, folder: Any, count: int) -> None:
        self.folder, self.count = folder, int(count)

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        item, epoch = self.folder.on_pass(index)
        return self.folder.sample(item, epoch=epoch)


class MixedDataset(Dataset):
    """Item i is synthetic clip i with probability ``fraction`` (drawn from (seed, i)), else real window i;
    only the keys both kinds share (audio, video, offsets, valid) are kept, so batches collate."""

    KEYS = ("audio", "video", "offsets", "valid")

    def __init__(self, real: Dataset, synthetic: Dataset, fraction: float, seed: int,
                 keys: tuple[str, ...] = KEYS) -> None:  # more keys when both kinds carry them
        self.real, self.synthetic, self.fraction, self.seed = real, synthetic, float(fraction), seed
        self.keys = keys

    def __len__(self) -> int:
        return len(self.synthetic)

    def is_synthetic(self, index: int) -> bool:
        return bool(np.random.default_rng([self.seed, 7, index]).random() < self.fraction)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        item = self.synthetic[index] if self.is_synthetic(index) else self.real[index % len(self.real)]
        return {k: item[k] for k in self.keys}


class AugmentedDataset(Dataset):
    """Applies per-clip augmentation in the loader workers, seeded by (seed, index): reproducible on resume."""

    def __init__(self, dataset: Dataset, augment: Any, seed: int) -> None:
        self.dataset, self.augment, self.seed = dataset, augment, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        return self.augment(self.dataset[index], generator)


def build_model(config: TrainConfig) -> nn.Module:
    """The model to train: a new teacher / student / legacy SyncNet S (``model_config`` overrides its config), or
    a checkpoint to fine-tune. Legacy models come wrapped to take the mouth112 batches (see legacy_adapter)."""
    from edge_sync.training.legacy_adapter import as_trainable

    if config.model == "legacy":
        from edge_sync.models.legacy import LegacySyncNetFCN

        return as_trainable(LegacySyncNetFCN(**config.model_config))
    if config.model in ("teacher", "student"):
        kind = MODEL_KINDS[config.model]
        cfg_class = kind.model_class.config_class
        return kind.model_class(cfg_class.from_dict({**cfg_class().to_dict(), **config.model_config}))
    return as_trainable(load(config.model)).train()


def freeze_parameters(model: nn.Module, prefixes: list[str]) -> int:
    """Stop gradients for parameters whose names start with any prefix, and keep their batch-norm statistics (call
    after ``model.train()``); how many tensors were frozen.
    A prefix that matches nothing is a typo that would silently train everything: it is an error."""
    names = [n for n, _ in model.named_parameters()]
    for prefix in prefixes:
        if not any(n.startswith(prefix) for n in names):
            tops = sorted({n.split(".")[0] for n in names})
            raise ValueError(f"freeze prefix {prefix!r} matches no parameter; top-level modules: {tops}")
    count = 0
    for name, p in model.named_parameters():
        if any(name.startswith(prefix) for prefix in prefixes):
            p.requires_grad_(False)
            count += 1
    for name, module in model.named_modules():  # batch-norm statistics are state too: keep them as they were
        if any(name.startswith(prefix) for prefix in prefixes) and isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()
    return count


def _lr_lambda(config: TrainConfig):
    def f(step: int) -> float:
        if step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
        return 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return f


def state_path(output: Path) -> Path:
    """Where the resumable training state of ``output`` lives."""
    return output.with_name(output.name + ".train-state")


def is_finished(output: str | Path) -> bool:
    """Whether ``output`` is its run's end: the checkpoint exists and was written at the step its train-state holds
    (a run stopped by a time budget saves only the state; one begun again with ``resume=False`` leaves an older
    checkpoint behind). By content, not file times, because checkpoints are copied between machines."""
    from edge_sync.models.io import read_checkpoint

    output = Path(output)
    if not output.is_file():
        return False
    state = state_path(output)
    return not state.is_file() or \
        torch.load(state, map_location="cpu", weights_only=False)["step"] == read_checkpoint(output)["meta"]["steps"]


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


# --- the loop --------------------------------------------------------------------------------------------
# TrainConfig fields that decide the stream of batches; runs trained together must agree on them.
DATA_FIELDS = ("data", "frames", "batch_size", "steps", "seed", "workers", "augment", "device", "cache_dir",
               "speech_bank", "synthetic_fraction", "trunk_features", "teacher_trunk_features",
               "synthetic_pool")


@dataclass
class _Run:
    """One model's share of a (possibly shared) training loop."""

    config: TrainConfig
    output: Path
    model: nn.Module
    teacher: nn.Module | None
    optimizer: torch.optim.Optimizer
    scheduler: Any
    start_step: int
    history: list[dict[str, float]]
    elapsed: float
    running: float | None = None
    synthetic_teacher: nn.Module | None = None  # TrainConfig.synthetic_teacher, loaded
    data_identity: Any = None  # data_identity(config.data), taken once: every train-state records it


# what a resumed run may change: where it runs and how many loader processes feed it. Why: samples are seeded by their
# index, not by the worker that makes them, so a schedule begun on a CPU (or a machine with fewer cores) can be ended
# on a lent GPU with the same clips; only the float arithmetic of the device differs
RESUME_MAY_CHANGE = ("device", "workers")


def data_identity(data: str) -> Any:
    """A run's data as resuming sees it: a folder by the names, sizes and (small files, such as a manifest) contents
    of its files, not by its path; anything else as written. Why: the recipe's real-footage stages read a folder of
    links made afresh by each call, and a state begun on one machine is ended on another where the clips lie
    elsewhere."""
    folder = Path(data)
    if data == "synthetic" or not folder.is_dir():
        return data
    files = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        size = path.stat().st_size
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if size <= 1 << 16 else None
        files.append([path.relative_to(folder).as_posix(), size, digest])
    return files


def resume_key(config: dict[str, Any], data: Any = None) -> dict[str, Any]:
    """What must match for a train-state to resume under ``config`` (a ``TrainConfig.to_dict()``); its data by
    :func:`data_identity`, or ``data`` when given (the identity a train-state recorded)."""
    key = {k: v for k, v in config.items() if k not in RESUME_MAY_CHANGE}
    if "data" in key:
        key["data"] = data_identity(key["data"]) if data is None else data
    return key


def train(config: TrainConfig, output: str | Path, resume: bool = True, progress: bool = True,
          stop_after: int | None = None, end_at: int | None = None,
          stop_after_seconds: float | None = None) -> TrainResult:
    """Train (or distil, when ``config.teacher`` is set) and write an edge-sync checkpoint to ``output``.

    ``stop_after`` ends the run after that many steps of this call (the state is saved, so a later call
    resumes), e.g. to fit a long recipe into several time-limited sessions. ``end_at`` ends it for good at that step
    of the schedule and writes the checkpoint as it stands, the learning rate still following ``config.steps``: a
    run cut short by a time limit, reproduced exactly (its checkpoint records both numbers). ``stop_after_seconds``
    is ``stop_after`` in wall-clock time: the step that ends past it saves the state and the call returns, so a call
    with a hard time limit (a lent machine's) stops cleanly instead of losing the steps since the last checkpoint.
    """
    return train_together([config], [output], resume=resume, progress=progress, stop_after=stop_after,
                          end_at=end_at, stop_after_seconds=stop_after_seconds)[0]


def _start_run(config: TrainConfig, output: Path, device: torch.device, rank: int, world: int, local_rank: int,
               resume: bool, identity: Any) -> _Run:
    """``identity``: data_identity(config.data), taken once for every run of a shared loop (they share DATA_FIELDS)."""
    torch.manual_seed(config.seed + rank)  # the initialisation a run of its own would get
    model = build_model(config).to(device).train()
    teacher = None
    if config.teacher:
        from edge_sync.training.legacy_adapter import as_trainable

        teacher = as_trainable(load(config.teacher)).to(device).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
        if not (config.loss.distill or config.loss.corr_distill or config.loss.video_relation
                or config.loss.audio_relation):  # nothing to learn from it
            config.loss.distill = 1.0
    if config.teacher_trunk_features:
        from edge_sync.training.trunk_features import check_teacher_config

        check_teacher_config(config)
    synthetic_teacher = None
    if config.synthetic_teacher:
        from edge_sync.training.legacy_adapter import as_trainable
        from edge_sync.training.trunk_features import check_synthetic_teacher_config

        check_synthetic_teacher_config(config)
        synthetic_teacher = as_trainable(load(config.synthetic_teacher)).to(device).eval().requires_grad_(False)
        if synthetic_teacher.contract.max_offset != model.contract.max_offset:
            raise ValueError(f"synthetic_teacher {config.synthetic_teacher} scores offsets "
                             f"+-{synthetic_teacher.contract.max_offset}, the student +-{model.contract.max_offset}")
    freeze = list(config.freeze)
    if config.trunk_features:
        from edge_sync.training.trunk_features import TRUNKS, OnTrunkFeatures, check_config

        check_config(config)
        freeze += [t for t in TRUNKS if t not in freeze]
    frozen = freeze_parameters(model, freeze)
    if frozen:
        log.info("frozen: %d parameter tensors under %s", frozen, freeze)
    if config.trunk_features:
        model = OnTrunkFeatures(model)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.lr,
                                  weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(config))
    start_step, history, elapsed = 0, [], 0.0
    state_file = state_path(output)
    if resume and state_file.is_file():
        state = torch.load(state_file, map_location=device, weights_only=False)
        saved = resume_key(state["config"], state.get("data_identity"))
        asked = resume_key(config.to_dict(), identity)
        if saved != asked:
            differ = sorted(k for k in saved.keys() | asked.keys() if saved.get(k) != asked.get(k))
            raise ValueError(f"{state_file} was written by a run with another config (it differs in {differ}); "
                             f"delete it or pass --no-resume")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_step, history, elapsed = state["step"], state["history"], state["seconds"]
        log.info("resuming %s at step %d", output, start_step)
    if world > 1:
        model = nn.parallel.DistributedDataParallel(model, device_ids=[local_rank] if device.type == "cuda" else None)
    return _Run(config, output, model, teacher, optimizer, scheduler, start_step, history, elapsed,
                synthetic_teacher=synthetic_teacher, data_identity=identity)


def train_together(configs: list[TrainConfig], outputs: list[str | Path], resume: bool = True,
                   progress: bool = True, stop_after: int | None = None,
                   end_at: int | None = None, stop_after_seconds: float | None = None) -> list[TrainResult]:
    """Train several models on one stream of batches, each as :func:`train` would train it alone.

    Each model gets the initialisation, the clips, their order and augmentation that its own run would give it
    (batches are addressed by (seed, step), and each model is built after seeding as a lone run is), and its own
    optimiser, schedule, loss, teacher and checkpoints; only the making of the batches is shared. Why: synthetic
    clips are rendered on the CPU, which bounds a GPU run's speed, so models that share a recipe (the rows of an
    ablation) train for the price of one. The configs must agree on :data:`DATA_FIELDS`.
    """
    from tqdm import tqdm

    if not configs or len(configs) != len(outputs):
        raise ValueError(f"need one output per config, got {len(configs)} configs and {len(outputs)} outputs")
    outputs = [Path(o) for o in outputs]
    if len(set(outputs)) != len(outputs):
        raise ValueError(f"outputs must differ, got {[str(o) for o in outputs]}")
    first = configs[0]
    for cfg in configs[1:]:
        differ = [f for f in DATA_FIELDS if getattr(cfg, f) != getattr(first, f)]
        if differ:
            raise ValueError(f"models trained together share their batches, so they must agree on {differ}")
    rank, world, local_rank = _dist_info()
    device = _device(first.device, local_rank)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # shapes are fixed (batch, frames): let cuDNN pick its fastest kernels
    identity = data_identity(first.data)
    runs = [_start_run(cfg, out, device, rank, world, local_rank, resume, identity)
            for cfg, out in zip(configs, outputs)]
    start_step = runs[0].start_step
    if any(r.start_step != start_step for r in runs):
        raise ValueError("models trained together must resume from the same step; found "
                         + ", ".join(f"{r.output}: {r.start_step}" for r in runs))

    augment = None
    dataset = build_dataset(first, world)
    if first.trunk_features:
        from edge_sync.training.trunk_features import trunk_feature_dataset

        if len(runs) > 1:
            raise ValueError("trunk_features trains one model at a time (its features come from that model's trunks)")
        dataset = trunk_feature_dataset(dataset, _unwrap(runs[0].model).model, first, device,
                                        progress=progress and rank == 0)
    if first.teacher_trunk_features:
        from edge_sync.training.trunk_features import with_teacher_features

        if len(runs) > 1:
            raise ValueError("teacher_trunk_features distils one model at a time")
        dataset = with_teacher_features(dataset, runs[0].teacher, device, progress=progress and rank == 0)
    if first.augment:
        from edge_sync.data.augment import Augment
        augment = Augment.from_config(first.augment)
        dataset = AugmentedDataset(dataset, augment, first.seed)
    loader = DataLoader(dataset, batch_size=first.batch_size, num_workers=first.workers,
                        sampler=StepSampler(len(dataset), start_step, first.steps, first.batch_size, rank, world),
                        persistent_workers=False, drop_last=True)
    label = " + ".join(f"{'distil' if r.teacher else 'train'} {r.config.model}" for r in runs)
    bar = tqdm(total=first.steps, initial=start_step, disable=not progress or rank != 0, unit="step", desc=label)
    t0 = time.perf_counter() - max(r.elapsed for r in runs)
    step = start_step
    call_started = time.perf_counter()
    generator = torch.Generator().manual_seed(first.seed * 1000 + rank)
    for batch in loader:
        if end_at is not None and step >= end_at:  # resumed from a state already at the end
            break
        if augment is not None:
            batch = augment.mix_batch(batch, generator)  # no-op unless the config asks for mixup
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        step += 1
        stopping = ((stop_after is not None and step - start_step >= stop_after)
                    or (end_at is not None and step >= end_at))
        saved = [_step(run, batch, step, rank, t0, stopping) for run in runs]
        if not stopping and _out_of_time(call_started, stop_after_seconds, device, world):
            stopping = True  # this step ended past the budget: keep it (its state, unless _step just saved it)
            for run, done in zip(runs, saved):
                if not done:
                    _save_state(run, step, rank, t0)
        bar.update(1)
        bar.set_postfix(loss="/".join(f"{r.running:.3f}" for r in runs), lr=f"{runs[0].scheduler.get_last_lr()[0]:.1e}")
        if stopping:
            break
    bar.close()
    seconds = time.perf_counter() - t0
    results = []
    ended = end_at is not None and step >= end_at
    for run in runs:
        net = _unwrap(run.model).eval()
        written = step >= run.config.steps or ended
        if rank == 0 and written:
            meta = {"recipe": run.config.to_dict(), "steps": step, "train_seconds": round(seconds, 1),
                    "world_size": world, "device": str(device), "final_loss": run.running, "torch": torch.__version__}
            if step < run.config.steps:
                meta["ended_at"] = {"step": step, "schedule_steps": run.config.steps}
            if len(runs) > 1:
                meta["trained_together_with"] = [str(r.output) for r in runs if r is not run]
            note = getattr(net, "checkpoint_note", None)
            if note:
                meta["input"] = note
            save_checkpoint(getattr(net, "checkpoint_module", net).cpu(), run.output,
                            meta=json.loads(json.dumps(meta, default=str)), half=run.config.half_weights)
        running = run.running if run.running is not None else (run.history[-1]["loss"] if run.history else None)
        results.append(TrainResult(run.output, step, seconds, float(running if running is not None else math.nan),
                                   run.history, written))
    if world > 1:
        dist.barrier()
    return results


def _out_of_time(started: float, budget: float | None, device: torch.device, world: int) -> bool:
    """Whether this call has run ``budget`` seconds; every rank gets rank 0's answer, so all stop at one step."""
    if budget is None:
        return False
    over = time.perf_counter() - started >= budget
    if world == 1:
        return over
    flag = torch.tensor([float(over)], device=device)
    dist.broadcast(flag, src=0)
    return bool(flag.item())


def _step(run: _Run, batch: dict[str, torch.Tensor], step: int, rank: int, t0: float, stopping: bool) -> bool:
    """One optimisation step of one model on the shared batch, and its train-state when due (True: saved)."""
    weights = run.config.loss
    if weights.window_ce or weights.window_context:  # windows from (seed, step, rank): a resumed run draws the same
        generator = torch.Generator().manual_seed((run.config.seed * 1_000_003 + step) * 64 + rank)
        windows = sample_windows(batch, _unwrap(run.model).contract.max_offset, weights.window_min_frames,
                                 weights.window_max_frames, generator)
        if windows is None:
            raise ValueError(f"window_ce / window_context need clips of at least {weights.window_min_frames} + 2K "
                             f"frames; --frames {batch['video'].shape[2]} is too short")
        batch = {**batch, **windows}
    outputs = _forward(run.model, batch)
    teacher_outputs = None
    if run.teacher is not None:
        with torch.no_grad():
            if "teacher_video" in batch:
                teacher_outputs = run.teacher.forward_trunk_features(batch["teacher_audio"], batch["teacher_video"])
                if run.synthetic_teacher is not None:
                    from edge_sync.training.trunk_features import teach_synthetic

                    teacher_outputs, batch = teach_synthetic(teacher_outputs, batch, run.synthetic_teacher)
            else:
                teacher_outputs = run.teacher.forward_features(batch["audio"], batch["video"])
    loss, parts = combined_loss(outputs, batch, run.config.loss, teacher_outputs=teacher_outputs)
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    nn.utils.clip_grad_norm_(run.model.parameters(), run.config.grad_clip)
    run.optimizer.step()
    run.scheduler.step()
    run.running = parts["total"] if run.running is None else 0.95 * run.running + 0.05 * parts["total"]
    if step % 25 == 0 or step == run.config.steps:
        run.history.append({"step": step, "loss": run.running, **{k: v for k, v in parts.items() if k != "total"}})
    due = step % run.config.checkpoint_every == 0 or step == run.config.steps or stopping
    if due:
        _save_state(run, step, rank, t0)
    return due


def _save_state(run: _Run, step: int, rank: int, t0: float) -> None:
    """The run's train-state after ``step`` (rank 0 writes it): what a later call resumes from."""
    if rank == 0:
        atomic_torch_save({"config": run.config.to_dict(), "model": _unwrap(run.model).state_dict(),
                           "optimizer": run.optimizer.state_dict(), "scheduler": run.scheduler.state_dict(),
                           "step": step, "history": run.history, "seconds": time.perf_counter() - t0,
                           "data_identity": run.data_identity},
                          state_path(run.output))


def _forward(model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """forward_features through DDP: DDP only syncs gradients of what its forward() returned, so route the
    call through the wrapper when there is one."""
    windows = (batch["window_audio"], batch["window_video"]) if "window_video" in batch else None
    if isinstance(model, nn.parallel.DistributedDataParallel) or windows is not None:
        return model(batch["audio"], batch["video"], features=True, windows=windows)
    return model.forward_features(batch["audio"], batch["video"])
