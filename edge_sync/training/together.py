"""Train several models on one stream of batches (``edge_sync.training.train.train_together``) from the shell.

    python -m edge_sync.training.together --steps 3000 --batch-size 32 --frames 40 --lr 2e-3 --half \\
        --run legacy:legacy.json:runs/legacy_baseline.pt --run teacher:attention.json:runs/teacher_attention.pt

Each ``--run MODEL:CONFIG_JSON:OUTPUT`` is what ``edge-sync train --model MODEL --config CONFIG_JSON -o OUTPUT``
would train with the shared options (CONFIG_JSON may be empty: ``MODEL::OUTPUT``; its fields override the shared
options for that run); every model gets the batches,
initialisation and recipe of that command, and the batches are made once.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from edge_sync.training.losses import LossWeights
from edge_sync.training.train import TrainConfig, train_together

# `edge-sync train`'s default augmentation (edge_sync.cli.DEFAULT_AUGMENT; a test keeps the two equal). Not imported
# from the CLI module, so this runs where the CLI's other commands' dependencies are missing (a GPU machine).
DEFAULT_AUGMENT = {"jitter": True, "crop": True, "flip": True, "colour": True, "freq_mask": True}


def trained_line(result: Any) -> str:
    """What a training (or pre-training) call did: the checkpoint it wrote, or where it stopped and what resumes it."""
    if not result.written:
        return (f"stopped at step {result.steps}; state saved to {result.checkpoint}.train-state (the same command "
                f"resumes it)")
    return f"wrote {result.checkpoint} after {result.steps} steps in {result.seconds:.0f} s (final loss " \
           f"{result.final_loss:.3f})"


def parse_run(text: str) -> tuple[str, Path | None, Path]:
    parts = text.split(":")
    if len(parts) != 3 or not parts[0] or not parts[2]:
        raise argparse.ArgumentTypeError(f"--run takes MODEL:CONFIG_JSON:OUTPUT (CONFIG_JSON may be empty), "
                                         f"got {text!r}")
    return parts[0], Path(parts[1]) if parts[1] else None, Path(parts[2])


def run_config(model: str, config_json: Path | None, args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig `edge-sync train --model MODEL --config CONFIG_JSON` builds from the same options."""
    extra = json.loads(config_json.read_text()) if config_json else {}
    loss = LossWeights(**extra.pop("loss", {}))
    augment = extra.pop("augment", DEFAULT_AUGMENT if args.augment else None)
    shared = dict(model=model, data=args.data, steps=args.steps, batch_size=args.batch_size, frames=args.frames,
                  lr=args.lr, seed=args.seed, workers=args.workers, device=args.device, half_weights=args.half)
    # the JSON may override a shared option for its run (a lower lr to fine-tune pretrained trunks, say); options that
    # shape the batches must still agree across runs (train_together checks); "teacher" makes its run a distillation
    return TrainConfig(**{**shared, "teacher": None, **extra}, augment=augment, loss=loss)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m edge_sync.training.together", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", type=parse_run, action="append", required=True, help="MODEL:CONFIG_JSON:OUTPUT")
    p.add_argument("--data", default="synthetic")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--frames", type=int, default=50)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--device", default="auto")
    p.add_argument("--no-augment", dest="augment", action="store_false")
    p.add_argument("--half", action="store_true", help="store the final weights in float16")
    p.add_argument("--no-resume", dest="resume", action="store_false")
    p.add_argument("--end-at", type=int, default=None, help="end every run at this step of the --steps schedule "
                   "and write its checkpoint (edge-sync train --end-at): a run cut short, reproduced or finished from "
                   "its saved state")
    p.add_argument("--stop-after-seconds", type=float, default=None, help="stop after the step that ends past this "
                   "many seconds of this call, saving each run's state to resume (a machine lent for a fixed time)")
    args = p.parse_args(argv)
    configs = [run_config(model, cfg, args) for model, cfg, _ in args.run]
    for res in train_together(configs, [out for _, _, out in args.run], resume=args.resume, end_at=args.end_at,
                              stop_after_seconds=args.stop_after_seconds):
        print(trained_line(res))


if __name__ == "__main__":
    main()
