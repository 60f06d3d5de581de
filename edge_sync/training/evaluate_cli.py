"""`edge-sync eval`: evaluate one or more models on the same hold-out clips and print the tables."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from edge_sync._paths import artifact_path, bundled_artifact_named
from edge_sync.training.metrics import context_table_markdown, metrics_table_markdown


def scorer_for(name: str) -> tuple[str, Any]:
    """(label, scorer): an artifact directory, or a bundled artifact's name (student-int8), runs on the runtime
    (any backend); anything else is a PyTorch checkpoint or bundled name, scored by :class:`TorchScorer` with the
    same windows."""
    path = artifact_path(name)
    if (path / "manifest.json").is_file():
        import edge_sync

        engine = edge_sync.load(path)
        shown = name if bundled_artifact_named(name) else path.name  # a bundled artifact by the name it was asked by
        return f"{shown} ({engine.backend})", engine
    from edge_sync.evaluation.torch_scorer import TorchScorer
    from edge_sync.models.io import load, parameter_count
    from edge_sync.training.legacy_adapter import as_scored

    model = load(name)
    return f"{name} ({parameter_count(model):,} params, PyTorch)", TorchScorer(as_scored(model))


def run_real_eval(models: Sequence[str], data: str | Path, json_out: Path | None = None,
                  planted: Sequence[int] | None = None, detector: str | None = None,
                  names: Sequence[str] | None = None) -> str:
    """The real-footage protocol (:mod:`edge_sync.evaluation.real_footage`) for every model on the same clips.
    Clips are decoded and tracked once per crop kind, then every model scores the same crops."""
    from edge_sync.evaluation.real_footage import DEFAULT_PLANTED, evaluate_real, load_clips
    from edge_sync.evaluation.tables import render
    from edge_sync.features.faces import DEFAULT_DETECTOR

    planted = tuple(planted or DEFAULT_PLANTED)
    scorers = [scorer_for(m) for m in models]
    labels = [label for label, _ in scorers]
    # two artifacts of one name (runs/a/student.onnx-int8, runs/b/student.onnx-int8) must not share a row: such
    # labels carry the path as given
    scorers = [(label.replace(Path(m).name, m, 1) if labels.count(label) > 1 else label, scorer)
               for m, (label, scorer) in zip(models, scorers)]
    loaded: dict[str, tuple[list, dict]] = {}
    reports = []
    for label, scorer in scorers:
        pre = scorer.contract.video
        if pre.name not in loaded:
            loaded[pre.name] = load_clips(data, pre, detector or DEFAULT_DETECTOR, names=names)
        clips, skipped = loaded[pre.name]
        reports.append(evaluate_real(scorer, clips, label, planted, skipped))
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps({"data": str(data), "planted": list(planted),
                                        "detector": detector or DEFAULT_DETECTOR,
                                        "models": [r.to_dict() for r in reports]}, indent=1, default=float))
    return render(reports, planted)


def _dataset(data: str, seed: int, count: int, frames: int):
    if data == "synthetic":
        from edge_sync.data.synthetic import SyntheticSyncDataset

        return SyntheticSyncDataset(count=count, frames=frames, seed=seed, split="holdout", drift_prob=0.0)
    from edge_sync.data.folders import VideoFolderDataset

    return VideoFolderDataset(Path(data), frames=frames, seed=seed)


def run_eval(models: list[str], data: str, seed: int, count: int, frames: int, json_out: Path | None,
             device: str = "cpu") -> str:
    from edge_sync.models.io import load, parameter_count
    from edge_sync.training.evaluate import evaluate
    from edge_sync.training.legacy_adapter import as_trainable

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
