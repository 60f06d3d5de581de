"""`edge-sync eval`: evaluate one or more models on the same hold-out clips and print the tables."""
from __future__ import annotations

import json
from pathlib import Path

from edge_sync.models.io import load, parameter_count
from edge_sync.training.evaluate import evaluate
from edge_sync.training.metrics import context_table_markdown, metrics_table_markdown


def _dataset(data: str, seed: int, count: int, frames: int):
    if data == "synthetic":
        from edge_sync.data.synthetic import SyntheticSyncDataset

        return SyntheticSyncDataset(count=count, frames=frames, seed=seed, split="holdout", drift_prob=0.0)
    from edge_sync.data.folders import VideoFolderDataset

    return VideoFolderDataset(Path(data), frames=frames, seed=seed)


def run_eval(models: list[str], data: str, seed: int, count: int, frames: int, json_out: Path | None,
             device: str = "cpu") -> str:
    dataset = _dataset(data, seed, count, frames)
    rows, contexts, heads, results = {}, {}, {}, {}
    for name in models:
        model = load(name)
        res = evaluate(model, dataset, device=device, progress=True)
        label = f"{name} ({parameter_count(model):,} params)"
        rows[label] = res.summary_row()
        contexts[label] = res.context
        heads[label] = {int(k): v for k, v in res.extra["context_head"].items()}
        results[name] = {**res.to_dict(), "params": parameter_count(model)}
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps({"data": data, "seed": seed, "count": count, "frames": frames,
                                        "models": results}, indent=2, default=float))
    return (f"{count} hold-out clips of {frames} frames ({data}, seed {seed})\n\n"
            + metrics_table_markdown(rows)
            + "\n\nLRS2 context protocol (per-frame similarity evidence averaged over c frames, +-1 frame):\n\n"
            + context_table_markdown(contexts)
            + "\n\nSame protocol on the sync head's per-frame probabilities (the head already pools ~31 frames):\n\n"
            + context_table_markdown(heads, include_published=False))
