"""What `edge-sync info` reports: versions, contract, installed backends, bundled weights (no torch needed), and
which extra to install for what: runtime extras to run artifacts (a device), export extras to make them."""
from __future__ import annotations

import json
import platform
from importlib import metadata
from typing import Any

from edge_sync import __version__
from edge_sync._paths import BUNDLED_ARTIFACT, BUNDLED_ARTIFACTS, WEIGHTS_DIR
from edge_sync.runtimes.platforms import platform_name
from edge_sync.spec import AUDIO_RATE, MAX_OFFSET, MOUTH, SPEC_VERSION, VIDEO_FPS

# distribution name -> (the extra that installs it, what it is for). Running an artifact needs one runtime extra;
# export-only tools (torch, onnx, nncf, the LiteRT converter) live in the export extras, never in a runtime one.
BACKEND_DISTRIBUTIONS: dict[str, tuple[str, str]] = {
    "torch": ("export", "export"), "onnx": ("export", "export"), "nncf": ("export", "export"),
    "litert-torch": ("tflite", "export"), "transformers": ("trunks", "train"),
    "onnxruntime": ("onnxruntime", "run"), "openvino": ("openvino", "run"), "coremltools": ("coreml", "run"),
    "ai-edge-litert": ("litert", "run"), "tensorrt": ("tensorrt", "run"),
}


def dist_version(dist: str) -> str | None:
    """Installed version of a distribution, without importing it (None when absent)."""
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def collect_info() -> dict[str, Any]:
    weights = []  # PyTorch checkpoints: in a source checkout, not in the wheel (a device needs only the artifact)
    for path in sorted(WEIGHTS_DIR.glob("*.pt")):
        meta_path = path.with_suffix(".json")
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        weights.append({"name": path.stem, "path": str(path), "bytes": path.stat().st_size, **meta})
    return {
        "edge_sync": __version__,
        "python": platform.python_version(),
        "platform": f"{platform.system()} {platform.machine()}",
        "numpy": dist_version("numpy"),
        "contract": {"spec_version": SPEC_VERSION, "video_fps": VIDEO_FPS, "audio_rate": AUDIO_RATE,
                     "max_offset": MAX_OFFSET, "video_input": f"{MOUTH.size}x{MOUTH.size} {MOUTH.name}"},
        "backends": {dist: {"version": dist_version(dist), "extra": extra, "for": role}
                     for dist, (extra, role) in BACKEND_DISTRIBUTIONS.items()},
        "export_targets": _export_targets(),
        "runtime_backends": _runtime_backends(),
        "bundled_artifact": {"path": str(BUNDLED_ARTIFACT), "installed": BUNDLED_ARTIFACT.is_dir()},
        "bundled_artifacts": {name: {"path": str(WEIGHTS_DIR / folder), "installed": (WEIGHTS_DIR / folder).is_dir(),
                                     "default": WEIGHTS_DIR / folder == BUNDLED_ARTIFACT}
                              for name, folder in BUNDLED_ARTIFACTS.items()},
        "bundled_weights": weights,
    }


def _export_targets() -> dict[str, Any]:
    """Exporters from the registry and whether their toolchain is installed (imports no toolchain)."""
    from edge_sync.exporters import EXPORTERS

    return {t: {"installed": e.available(), "extra": e.extra, "precisions": list(e.precisions)}
            for t, e in EXPORTERS.items()}


def _runtime_backends() -> dict[str, Any]:
    from edge_sync.runtimes.registry import BACKENDS

    return {b.name: {"installed": b.installed(), "runs_here": b.runs_here(), "platforms": list(b.platforms),
                     "extra": b.extra,
                     "targets": list(b.targets), "preference": b.preference}
            for b in sorted(BACKENDS.values(), key=lambda b: b.preference)}


ROLE_WORDS = {"run": "to run artifacts", "export": "to export", "train": "to train"}


def format_info(data: dict[str, Any]) -> str:
    lines = [f"edge-sync {data['edge_sync']} (python {data['python']}, {data['platform']}, numpy {data['numpy']})",
             "contract: " + ", ".join(f"{k}={v}" for k, v in data["contract"].items()), "packages:"]
    for dist, b in data["backends"].items():
        state = b["version"] or f"not installed ({ROLE_WORDS[b['for']]}: pip install 'edge-sync[{b['extra']}]')"
        lines.append(f"  {dist:<15} {state}")
    for key, label, what in (("export_targets", "export targets", "precisions"),
                             ("runtime_backends", "runtime backends (auto prefers the first installed)", "targets")):
        lines.append(f"{label}:")
        for name, e in data[key].items():
            state = "ready" if e["installed"] else f"needs pip install 'edge-sync[{e['extra']}]'"
            if e["installed"] and not e.get("runs_here", True):
                state = f"installed; predicts on {', '.join(platform_name(p) for p in e['platforms'])} only"
            lines.append(f"  {name:<15} {state:<45} {what}: {', '.join(e[what])}")
    lines.append("bundled artifacts (--artifact NAME):")
    for name, art in data["bundled_artifacts"].items():
        lines.append(f"  {name + (' (default)' if art['default'] else ''):<23} {art['path']}"
                     + ("" if art["installed"] else " (missing)"))
    if data["bundled_weights"]:
        lines.append("bundled PyTorch checkpoints (export, parity, training):")
    else:
        lines.append("bundled PyTorch checkpoints: not in this install (the wheel carries the runtime artifact only; "
                     "export and train from a source checkout)")
    for w in data["bundled_weights"]:
        lines.append(f"  {w['name']:<10} {w['bytes'] / 1e6:.1f} MB  {w['path']}")
    return "\n".join(lines + install_advice(data))


def install_advice(data: dict[str, Any]) -> list[str]:
    """Which extra for what, from the registries: one runtime extra per backend to run artifacts (nothing
    export-only in them), the export extras per target to make artifacts."""
    run = dict.fromkeys(b["extra"] for b in data["runtime_backends"].values() if b.get("runs_here", True))
    export = dict.fromkeys(e["extra"] for e in data["export_targets"].values())
    return ["install:",
            f"  to run artifacts (a device): pip install 'edge-sync[onnxruntime]'; other runtimes: "
            + ", ".join(f"[{x}]" for x in run if x != "onnxruntime"),
            f"  to export: pip install 'edge-sync[export]'; per target: "
            + ", ".join(f"{t} [{e['extra']}]" for t, e in data["export_targets"].items()),
            "  to train: pip install 'edge-sync[train]'"]
