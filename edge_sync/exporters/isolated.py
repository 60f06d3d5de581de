"""Export each target in its own child process and say one line per artifact; what the command line runs.

Why: one process for every toolchain held 6.1 GB at its peak and filled the terminal with other tools' INFO lines
and warnings. Here the parent imports no toolchain (not even torch); each target runs in
:mod:`edge_sync.exporters.worker`, whose memory goes back to the OS when it exits, and whose stdout and stderr go to
a log file (kept, and named in the error, only if the target fails) unless ``verbose``, when they reach the user's
stderr as they come. The user sees one progress line per artifact and each distinct edge-sync warning once.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_sync.errors import EdgeSyncError
from edge_sync.exporters.api import options_for
from edge_sync.exporters.job import ExportJob, JobResult

# Native loggers read these at import; they only thin out the log file (the parent already keeps it off the
# terminal). Set for the child only: the user's environment wins where it sets them.
QUIET_ENV = {"TF_CPP_MIN_LOG_LEVEL": "3", "GLOG_minloglevel": "2", "LITERT_TORCH_SHOW_PROGRESS": "n",
             "TQDM_DISABLE": "1"}


class ExportFailedError(EdgeSyncError, RuntimeError):
    """A target's child process failed; the message is its error and where its full log is."""


@dataclass(frozen=True)
class Done:
    """One artifact written: what the progress line says."""

    target: str
    precision: str
    path: Path
    bytes: int
    seconds: float
    peak_rss_mb: float


def artifact_bytes(path: Path) -> int:
    """Size of the files an artifact's manifest lists (what a device receives)."""
    from edge_sync.artifact import read_artifact

    return sum(int(f["bytes"]) for f in read_artifact(path).manifest["files"].values())


def progress_line(done: Done) -> str:
    """``exported onnx int8 -> artifacts/student.onnx-int8 (0.43 MB, 21.4 s)``: the one line per artifact."""
    return (f"exported {done.target} {done.precision} -> {done.path} ({done.bytes / 1e6:.2f} MB, "
            f"{done.seconds:.1f} s)")


def _child_env(verbose: bool) -> dict[str, str]:
    return dict(os.environ) if verbose else {**QUIET_ENV, **os.environ}


def run_child(job: ExportJob, work: Path, verbose: bool) -> tuple[JobResult, Path]:
    """Run one job in ``python -m edge_sync.exporters.worker``; returns its result and its log file."""
    job_file, result_file, log_file = (work / f"{job.target}.{ext}" for ext in ("job.json", "result.json", "log"))
    job_file.write_text(job.to_json())
    command = [sys.executable, "-m", "edge_sync.exporters.worker", str(job_file), str(result_file)]
    with open(log_file, "wb") as log:
        out = sys.stderr if verbose else log  # with -v the child's lines reach the user's stderr, stdout stays clean
        proc = subprocess.run(command, stdout=out, stderr=out, stdin=subprocess.DEVNULL, env=_child_env(verbose))
    result = JobResult.read(result_file)
    if result is None:
        result = JobResult(error=f"the export process ended with exit code {proc.returncode} before reporting")
    return result, log_file


def export_isolated(model: str, targets: list[str], precision: str, out_dir: Path, name: str | None = None,
                    options: dict[str, Any] | None = None, verbose: bool = False,
                    say: Callable[[str], None] = print) -> list[Done]:
    """Export ``model`` to each of ``targets`` (already checked) one child process at a time; ``say`` gets one
    progress line per artifact and each distinct edge-sync warning once. Raises :class:`ExportFailedError` at the
    first target that fails (the artifacts already written stay)."""
    options = options or {}
    done: list[Done] = []
    warned: set[str] = set()
    with tempfile.TemporaryDirectory(prefix="edge-sync-export-") as tmp:
        for target in targets:
            job = ExportJob(str(model), target, precision, str(out_dir), name, options_for(target, precision, options),
                            verbose, share_dir=tmp)
            start = time.perf_counter()
            result, log = run_child(job, Path(tmp), verbose)
            seconds = time.perf_counter() - start  # what the user waited: the child's start-up included
            for message in result.warnings if not verbose else ():  # with -v they were shown as they came
                if message not in warned:
                    warned.add(message)
                    say(f"edge-sync: warning: {message}")
            if result.error is not None or result.path is None:
                raise ExportFailedError(f"{target} {precision} export failed: {result.error}"
                                        + ("" if verbose else f" (full log: {_keep(log)})"))
            path = Path(result.path)
            done.append(Done(target, precision, path, artifact_bytes(path), seconds, result.peak_rss_mb))
            say(progress_line(done[-1]))
    return done


def _keep(log: Path) -> Path:
    """Move a failed target's log out of the temporary folder, so the path in the error still exists."""
    fd, kept = tempfile.mkstemp(prefix=f"edge-sync-export-{log.stem}-", suffix=".log")
    os.close(fd)
    Path(kept).write_bytes(log.read_bytes())
    return Path(kept)
