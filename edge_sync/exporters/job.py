"""One target's export as data: what the parent hands a child process and what the child hands back.

Kept apart from the runner and the worker so both sides agree on one JSON shape (and neither imports torch).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edge_sync.exporters.common import TimeRange


@dataclass(frozen=True)
class ExportJob:
    """Everything one target's export needs; ``options`` are :func:`edge_sync.exporters.api.export`'s, already
    filtered to those this target reads."""

    model: str
    target: str
    precision: str
    out_dir: str
    name: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    verbose: bool = False
    share_dir: str | None = None  # where the run's children share work (edge_sync.exporters.onnx.shared_exports)

    def to_json(self) -> str:
        opts = dict(self.options)
        if isinstance(opts.get("time_range"), TimeRange):
            opts["time_range"] = asdict(opts["time_range"])
        if opts.get("calib") is not None:
            opts["calib"] = str(opts["calib"])  # a calibration set folder
        return json.dumps({**asdict(self), "options": opts})

    @classmethod
    def from_json(cls, text: str) -> ExportJob:
        data = json.loads(text)
        opts = data["options"]
        if opts.get("time_range") is not None:
            opts["time_range"] = TimeRange(**opts["time_range"])
        if opts.get("buckets") is not None:
            opts["buckets"] = tuple(opts["buckets"])
        return cls(**data)


@dataclass(frozen=True)
class JobResult:
    """What a child reports: the artifact written, or the one-line error; its time, peak memory and the
    edge-sync warnings it logged (the parent shows each distinct one once)."""

    path: str | None = None
    error: str | None = None
    seconds: float = 0.0
    peak_rss_mb: float = 0.0
    warnings: list[str] = field(default_factory=list)

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self)))

    @classmethod
    def read(cls, path: Path) -> JobResult | None:
        """The child's result, or None when it died before writing one (killed, crashed in native code)."""
        try:
            return cls(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            return None
