"""Training and distillation loop: one function, resumable, seeded, and unchanged under torchrun (DDP).

Data are addressed by global step, not by epoch: at step s, rank r of W takes clips
``(s * W + r) * B ... + B - 1``, so a resumed run continues with exactly the clips it would have seen and
any world size sees each synthetic clip once. Rank 0 alone writes checkpoints and shows the progress bar.
"""
from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from edge_sync._atomic import atomic_torch_save
from edge_sync.models.io import MODEL_KINDS, load, save_checkpoint
from edge_sync.training.losses import LossWeights, combined_loss

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
    return VideoFolderDataset(root, frames=config.frames, seed=config.seed,
                              cache_dir=Path(config.cache_dir) if config.cache_dir else None)


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
    if config.model in ("teacher", "student"):
        kind = MODEL_KINDS[config.model]
        cfg_class = kind.model_class.config_class
        return kind.model_class(cfg_class.from_dict({**cfg_class().to_dict(), **config.model_config}))
    return load(config.model).train()


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


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


# --- the loop --------------------------------------------------------------------------------------------
def train(config: TrainConfig, output: str | Path, resume: bool = True, progress: bool = True,
          stop_after: int | None = None) -> TrainResult:
    """Train (or distil, when ``config.teacher`` is set) and write an edge-sync checkpoint to ``output``.

    ``stop_after`` ends the run after that many steps of this call (the state is saved, so a later call
    resumes), e.g. to fit a long recipe into several time-limited sessions.
    """
    from tqdm import tqdm

    output = Path(output)
    rank, world, local_rank = _dist_info()
    device = _device(config.device, local_rank)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    torch.manual_seed(config.seed + rank)

    model = build_model(config).to(device).train()
    teacher = None
    if config.teacher:
        teacher = load(config.teacher).to(device).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
        if config.loss.distill == 0:
            config.loss.distill = 1.0
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(config))
    start_step, history, elapsed = 0, [], 0.0
    state_file = state_path(output)
    if resume and state_file.is_file():
        state = torch.load(state_file, map_location=device, weights_only=False)
        if state["config"] != config.to_dict():
            raise ValueError(f"{state_file} was written by a run with another config; delete it or pass --no-resume")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_step, history, elapsed = state["step"], state["history"], state["seconds"]
        log.info("resuming %s at step %d", output, start_step)
    if world > 1:
        model = nn.parallel.DistributedDataParallel(model, device_ids=[local_rank] if device.type == "cuda" else None)

    augment = None
    dataset = build_dataset(config, world)
    if config.augment:
        from edge_sync.data.augment import Augment
        augment = Augment.from_config(config.augment)
        dataset = AugmentedDataset(dataset, augment, config.seed)
    loader = DataLoader(dataset, batch_size=config.batch_size, num_workers=config.workers,
                        sampler=StepSampler(len(dataset), start_step, config.steps, config.batch_size, rank, world),
                        persistent_workers=False, drop_last=True)
    bar = tqdm(total=config.steps, initial=start_step, disable=not progress or rank != 0, unit="step",
               desc=f"{'distil' if teacher else 'train'} {config.model}")
    t0 = time.perf_counter() - elapsed
    step = start_step
    generator = torch.Generator().manual_seed(config.seed * 1000 + rank)
    running = None
    for batch in loader:
        if augment is not None:
            batch = augment.mix_batch(batch, generator)  # no-op unless the config asks for mixup
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        outputs = _forward(model, batch)
        teacher_logits = None
        if teacher is not None:
            with torch.no_grad():
                teacher_logits = teacher.forward_features(batch["audio"], batch["video"])["logits"]
        loss, parts = combined_loss(outputs, batch, config.loss, teacher_logits=teacher_logits)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        scheduler.step()
        step += 1
        running = parts["total"] if running is None else 0.95 * running + 0.05 * parts["total"]
        bar.update(1)
        bar.set_postfix(loss=f"{running:.3f}", lr=f"{scheduler.get_last_lr()[0]:.1e}")
        if step % 25 == 0 or step == config.steps:
            history.append({"step": step, "loss": running, **{k: v for k, v in parts.items() if k != "total"}})
        stopping = stop_after is not None and step - start_step >= stop_after
        if rank == 0 and (step % config.checkpoint_every == 0 or step == config.steps or stopping):
            atomic_torch_save({"config": config.to_dict(), "model": _unwrap(model).state_dict(),
                          "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "step": step,
                          "history": history, "seconds": time.perf_counter() - t0}, state_file)
        if stopping:
            break
    bar.close()
    seconds = time.perf_counter() - t0
    net = _unwrap(model).eval()
    if rank == 0 and step >= config.steps:
        meta = {"recipe": config.to_dict(), "steps": step, "train_seconds": round(seconds, 1),
                "world_size": world, "device": str(device), "final_loss": running, "torch": torch.__version__}
        save_checkpoint(net.cpu(), output, meta=json.loads(json.dumps(meta, default=str)), half=config.half_weights)
    if world > 1:
        dist.barrier()
    if running is None and history:
        running = history[-1]["loss"]
    return TrainResult(output, step, seconds, float(running if running is not None else math.nan), history)


def _forward(model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """forward_features through DDP: DDP only syncs gradients of what its forward() returned, so route the
    call through the wrapper when there is one."""
    if isinstance(model, nn.parallel.DistributedDataParallel):
        return model(batch["audio"], batch["video"], features=True)
    return model.forward_features(batch["audio"], batch["video"])
