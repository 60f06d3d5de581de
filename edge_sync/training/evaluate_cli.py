"""`edge-sync eval`: evaluate one or more models on the same hold-out clips and print the tables."""
from __future__ import annotations

import json
from pathlib import Path

from edge_sync.models.io import load, parameter_count
from edge_sync.training.evaluate import evaluate
from edge_sync.training.legacy_adapter import as_trainable
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
    rows, contexts, strict, every_window, heads, results = {}, {}, {}, {}, {}, {}
    for name in models:
        model = as_trainable(load(name))
        res = evaluate(model, dataset, device=device, progress=True)
        label = f"{name} ({parameter_count(model):,} params)"
        rows[label] = res.summary_row()
        contexts[label] = res.context
        strict[label] = {int(k): v for k, v in res.extra.get("context_strict", {}).items()}
        every_window[label] = {int(k): v for k, v in res.extra["context_all_windows"].items()}
        heads[label] = {int(k): v for k, v in res.extra["context_head"].items()}
        results[name] = {**res.to_dict(), "params": parameter_count(model)}
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps({"data": data, "seed": seed, "count": count, "frames": frames,
                                        "models": results}, indent=2, default=float))
    return (f"{count} hold-out clips of {frames} frames ({data}, seed {seed})\n\n"
            + metrics_table_markdown(rows)
            + "\n\nLRS2 context protocol, strict (the model sees only the c-frame window and the audio of offsets "
              "-15..15 around it; +-1 frame):\n\n"
            + context_table_markdown(strict)
            + "\n\nLRS2 context protocol on the whole clip's per-frame similarity averaged over c frames (the encoders "
              "also see ~4 frames either side; windows >= 15 frames from the clip's ends, so every offset has "
              "audio; +-1 frame):\n\n"
            + context_table_markdown(contexts, include_published=False)
            + "\n\nSame, every window (the clip's ends too, where large offsets compare with padding):\n\n"
            + context_table_markdown(every_window, include_published=False)
            + "\n\nSame protocol on the sync head's per-frame probabilities (the head already pools ~31 frames):\n\n"
            + context_table_markdown(heads, include_published=False))
