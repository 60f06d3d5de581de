"""Self-supervised pre-training run (``edge-sync pretrain``): a model's encoders learn from unlabeled videos.

A user's own footage is nearly always in sync, so it trains the encoders without offset labels: the objectives of
:mod:`edge_sync.training.selfsup` (AV correspondence, temporal order, aligned InfoNCE, masked audio-visual prediction,
SimCLR/MoCo contrastive) read only the model's embeddings. The run writes an ordinary edge-sync checkpoint of the
model (the objectives' heads are dropped), which ``edge-sync train --config '{"model": PATH}'`` then fine-tunes on
planted offsets. Batches are in-sync windows of a folder of videos (``VideoFolderDataset(labels=False)``: each with
an out-of-sync negative cut from the same clip), of synthetic clips rendered in sync, or a mix of both.
"""
from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from edge_sync.models.io import save_checkpoint

log = logging.getLogger(__name__)

DEFAULT_OBJECTIVES = ("correspondence", "order", "infonce")
SHARED_KEYS = ("audio", "video", "clip_id")  # what real and synthetic windows both carry, so a mix collates
# synthetic item i has clip_id SYNTHETIC_CLIP_IDS + i: above any folder's file index, and >= 0 (selfsup's -1 marks
# a queue entry of unknown clip)
SYNTHETIC_CLIP_IDS = 1 << 40


@dataclass
class PretrainConfig:
    """Everything a pre-training run depends on; stored in the checkpoint's meta (``pretrain``)."""

    model: str = "teacher"  # teacher | student | a checkpoint path
    model_config: dict[str, Any] = field(default_factory=dict)  # overrides of TeacherConfig / StudentConfig
    data: str = "synthetic"  # synthetic (in-sync clips) | a folder of videos
    objectives: list[str] = field(default_factory=lambda: list(DEFAULT_OBJECTIVES))
    objective_weights: dict[str, float] = field(default_factory=dict)
    # name -> the objective's settings, e.g. {"contrastive": {"momentum": 0.99, "queue_size": 4096}} (MoCo)
    objective_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    synthetic_fraction: float = 0.0  # with a folder: this share of the windows are synthetic in-sync clips
    frames: int = 40
    batch_size: int = 16
    steps: int = 1000
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 50
    seed: int = 0
    workers: int = 0
    device: str = "auto"
    cache_dir: str | None = None
    speech_bank: int | None = None
    checkpoint_every: int = 200
    # batches of windows drawn in a seeded random order on every pass (else file by file, so a long clip fills whole
    # batches with its own windows: no negatives for the contrastive and correspondence objectives)
    shuffle: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class InSyncSynthetic(Dataset):
    """Synthetic talking mouths rendered in sync (offset 0, no drift), item i always the same clip; each gets its own
    ``clip_id`` (:data:`SYNTHETIC_CLIP_IDS` + i) so no two items count as windows of one clip."""

    def __init__(self, count: int, frames: int, seed: int, cache_dir: str | None, bank_size: int | None) -> None:
        self.count, self.frames, self.seed = count, frames, seed
        self.cache_dir, self.bank_size = Path(cache_dir) if cache_dir else None, bank_size

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        from edge_sync.data.synthetic import make_clip

        clip = make_clip(self.seed, index, "train", self.frames, offset=0, drift_prob=0.0, cache_dir=self.cache_dir,
                         bank_size=self.bank_size)
        return {"audio": torch.from_numpy(clip.audio), "video": torch.from_numpy(clip.video),
                "clip_id": torch.tensor(SYNTHETIC_CLIP_IDS + index, dtype=torch.int64)}


class UnlabeledWindows(Dataset):
    """``count`` in-sync windows of a folder, pass after pass with fresh draws (as training's ``FreshWindows``), item
    i synthetic instead with probability ``fraction``; only :data:`SHARED_KEYS` are kept when mixing."""

    def __init__(self, folder: Any, count: int, synthetic: Dataset | None = None, fraction: float = 0.0,
                 seed: int = 0, shuffle: bool = True) -> None:
        self.folder, self.count, self.synthetic, self.fraction, self.seed = folder, count, synthetic, fraction, seed
        self.shuffle = shuffle

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if self.synthetic is not None and np.random.default_rng([self.seed, 11, index]).random() < self.fraction:
            return self.synthetic[index]
        item, epoch = self.folder.on_pass(index)
        if self.shuffle:  # pass `epoch` visits the folder's items in its own seeded order
            item = int(np.random.default_rng([self.seed, 13, epoch]).permutation(len(self.folder))[item])
        sample = self.folder.sample(item, epoch=epoch)
        return sample if self.synthetic is None else {k: sample[k] for k in SHARED_KEYS}


def build_pretrain_dataset(config: PretrainConfig) -> Dataset:
    count = config.steps * config.batch_size
    synthetic = None
    if config.data == "synthetic" or config.synthetic_fraction:
        from edge_sync.data.synthetic import prepare_speech_bank

        prepare_speech_bank("train", Path(config.cache_dir) if config.cache_dir else None, bank_size=config.speech_bank)
        synthetic = InSyncSynthetic(count, config.frames, config.seed, config.cache_dir, config.speech_bank)
    if config.data == "synthetic":
        return synthetic
    if not 0.0 <= config.synthetic_fraction < 1.0:
        raise ValueError(f"synthetic_fraction must be in [0, 1), got {config.synthetic_fraction}")
    root = Path(config.data)
    if not root.is_dir():
        raise FileNotFoundError(f"--data must be 'synthetic' or a folder of videos; {root} is neither")
    from edge_sync.data.folders import VideoFolderDataset

    # the folder's out-of-sync negatives are as far from sync as the correspondence objective asks
    min_shift = config.objective_options.get("correspondence", {}).get("min_shift", 3)
    folder = VideoFolderDataset(root, frames=config.frames, seed=config.seed, labels=False,
                                min_negative_shift=min_shift,
                                cache_dir=Path(config.cache_dir) if config.cache_dir else None)
    if len(folder) == 0:
        raise ValueError(f"no usable clip in {root}: every video was skipped ({folder.skipped})")
    return UnlabeledWindows(folder, count, synthetic, config.synthetic_fraction, config.seed, config.shuffle)


def _pretrainer(model: torch.nn.Module, config: PretrainConfig) -> Any:
    from edge_sync.training.selfsup import SelfSupervisedPretrainer

    unknown = set(config.objective_weights) - set(config.objectives)
    if unknown:
        raise ValueError(f"objective_weights names objectives this run does not use: {sorted(unknown)}; "
                         f"objectives: {list(config.objectives)}")
    return SelfSupervisedPretrainer.from_names(model, list(config.objectives), seed=config.seed,
                                               weights=config.objective_weights, options=config.objective_options)


@dataclass
class PretrainResult:
    checkpoint: Path
    steps: int
    seconds: float
    final_loss: float
    history: list[dict[str, float]]
    written: bool = True  # pre-training has no time budget, so it always ends by writing its checkpoint


def pretrain(config: PretrainConfig, output: str | Path, progress: bool = True) -> PretrainResult:
    """Pre-train ``config.model``'s encoders and write its checkpoint to ``output`` (also every
    ``checkpoint_every`` steps, so a run cut short leaves its latest weights)."""
    from tqdm import tqdm

    from edge_sync.training.train import TrainConfig, _device, _lr_lambda, build_model

    if not config.objectives:
        raise ValueError("give at least one objective")
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    device = _device(config.device, 0)
    torch.manual_seed(config.seed)
    model = build_model(TrainConfig(model=config.model, model_config=config.model_config))
    if not hasattr(model, "embed"):
        raise ValueError(f"{config.model} has no embed(audio, video); self-supervision needs a teacher or student")
    pretrainer = _pretrainer(model, config).to(device)
    optimizer = torch.optim.AdamW([p for p in pretrainer.parameters() if p.requires_grad], lr=config.lr,
                                  weight_decay=config.weight_decay)
    schedule = TrainConfig(steps=config.steps, warmup_steps=config.warmup_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(schedule))
    loader = DataLoader(build_pretrain_dataset(config), batch_size=config.batch_size, shuffle=False,
                        num_workers=config.workers, pin_memory=device.type == "cuda",
                        persistent_workers=config.workers > 0)
    history: list[dict[str, float]] = []
    started = time.perf_counter()

    def write(step: int) -> None:
        meta = {"pretrain": config.to_dict(), "steps_done": step,
                "train_seconds": round(time.perf_counter() - started, 1), "device": str(device),
                "history": history[-20:]}
        save_checkpoint(model, output, meta=meta)

    bar = tqdm(total=config.steps, disable=not progress, unit="step", desc="pretrain")
    running = None
    for step, batch in enumerate(loader):
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        metrics = pretrainer.step(batch, optimizer)
        scheduler.step()
        running = metrics["loss"] if running is None else 0.95 * running + 0.05 * metrics["loss"]
        if step % 10 == 0 or step == config.steps - 1:
            history.append({"step": step, **{k: round(float(v), 5) for k, v in metrics.items()}})
        bar.update(1)
        bar.set_postfix(loss=f"{running:.3f}")
        if (step + 1) % config.checkpoint_every == 0 and step + 1 < config.steps:
            write(step + 1)
        if not np.isfinite(metrics["loss"]):
            raise FloatingPointError(f"pre-training diverged at step {step}: loss {metrics['loss']}; lower --lr")
    bar.close()
    write(config.steps)
    seconds = time.perf_counter() - started
    log.info("pre-trained %s for %d steps in %.0f s", output, config.steps, seconds)
    return PretrainResult(output, config.steps, seconds, float(running or float("nan")), history)
