"""`export(...)`: resolve a model name or checkpoint, pick the exporter from the registry, write the artifact."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from edge_sync.exporters import EXPORTERS, get_exporter
from edge_sync.errors import MissingExtraError


def export(model: str | Path = "student", target: str = "onnx", precision: str = "fp32",
           out_dir: str | Path = "artifacts", name: str | None = None, **options: Any) -> list[Path]:
    """Export ``model`` (bundled name or checkpoint path) to one target, or to every installed one ('all')."""
    from edge_sync.models.io import load

    net = load(model)
    source = {"model": str(model), "kind": getattr(net, "kind", None),
              "checkpoint_sha256": getattr(net, "checkpoint_sha256", None)}
    name = name or Path(str(model)).stem
    targets = [t for t, e in EXPORTERS.items() if e.available()] if target == "all" else [target]
    written = []
    for t in targets:
        info = get_exporter(t)
        if not info.available():
            raise MissingExtraError(", ".join(info.modules), info.extra, f"{t} export")
        written.append(info.export(net, Path(out_dir), precision=precision, name=name, source=source, **options))
    return written
