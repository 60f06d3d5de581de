"""`export(...)`: resolve a model name or checkpoint, pick the exporter from the registry, write the artifact."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from edge_sync._paths import recorded_model_path
from edge_sync.errors import MissingExtraError
from edge_sync.exporters import EXPORTERS, get_exporter
from edge_sync.exporters.applicable import FLAGS, refuse_inapplicable


def export_targets(target: str) -> list[str]:
    """The targets an export writes: every installed one for 'all'; one target otherwise (refused, naming the
    extra to install, when its toolchain is missing)."""
    if target == "all":
        return [t for t, e in EXPORTERS.items() if e.available()]
    info = get_exporter(target)
    if not info.available():
        raise MissingExtraError(", ".join(info.modules), info.extra, f"{target} export")
    return [target]


def check_options(targets: list[str], precision: str, options: dict[str, Any],
                  flag: dict[str, str] | None = None) -> None:
    """Refuse a given (not None) option that none of ``targets`` reads at ``precision`` (see
    :mod:`edge_sync.exporters.applicable`); ``flag`` names options as the caller's user typed them."""
    given = [k for k in FLAGS if options.get(k) is not None]
    takes = {t: e.takes for t, e in EXPORTERS.items()}
    refuse_inapplicable(given, targets, precision, takes, flag or FLAGS)


def options_for(target: str, precision: str, options: dict[str, Any]) -> dict[str, Any]:
    """The options ``target`` reads at ``precision``: with 'all', a user option reaches only the targets that read
    it (other keyword options, e.g. tflite's ``recipe``, pass through)."""
    takes = EXPORTERS[target].takes
    return {k: v for k, v in options.items()
            if k not in FLAGS or (v is not None and precision in takes.get(k, ()))}


def export(model: str | Path = "student", target: str = "onnx", precision: str = "fp32",
           out_dir: str | Path = "artifacts", name: str | None = None, **options: Any) -> list[Path]:
    """Export ``model`` (bundled name or checkpoint path) to one target, or to every installed one ('all'), in this
    process. An option no chosen target reads is refused before the model is loaded."""
    from edge_sync.models.io import load

    targets = export_targets(target)
    check_options(targets, precision, options)
    net = load(model)
    source = {"model": recorded_model_path(model), "kind": getattr(net, "kind", None),
              "checkpoint_sha256": getattr(net, "checkpoint_sha256", None)}
    name = name or Path(str(model)).stem
    written = []
    for t in targets:
        written.append(EXPORTERS[t].export(net, Path(out_dir), precision=precision, name=name, source=source,
                                           **options_for(t, precision, options)))
    return written
