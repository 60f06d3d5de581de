"""Export each target in its own child process and say one line per artifact; what the command line runs.

Why: one process for every toolchain held 6.1 GB at its peak and filled the terminal with other tools' INFO lines
and warnings. Here the parent imports no toolchain (not even torch); each target runs in
:mod:`edge_sync.exporters.worker`, whose memory goes back to the OS when it exits, and whose stdout and stderr go to
a log file (kept, and named in the error, only if the target fails) unless ``verbose``, when they reach the user's
stderr as they come. The user sees one progress line per artifact and each distinct edge-sync warning once.
"""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_sync.errors import EdgeSyncError
from edge_sync.exporters import EXPORTERS
from edge_sync.exporters.api import options_for
from edge_sync.exporters.job import ExportJob, JobResult

log = logging.getLogger(__name__)
# Native loggers read these at import; they only thin out the log file (the parent already keeps it off the
# terminal), keeping errors for a failed target's log. Set for the child only; the user's environment wins.
QUIET_ENV = {"TF_CPP_MIN_LOG_LEVEL": "2", "GLOG_minloglevel": "2", "LITERT_TORCH_SHOW_PROGRESS": "n",
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


def progress_line(done: Done) -> str:
    """``exported onnx int8 -> artifacts/student.onnx-int8 (0.43 MB, 21.4 s)``: the one line per artifact."""
    return (f"exported {done.target} {done.precision} -> {done.path} ({done.bytes / 1e6:.2f} MB, "
            f"{done.seconds:.1f} s)")


def _child_env(verbose: bool) -> dict[str, str]:
    return dict(os.environ) if verbose else {**QUIET_ENV, **os.environ}


def _stderr_fd() -> int:
    """The file descriptor behind sys.stderr, or the process's own stderr (2) where sys.stderr has none (a test
    runner's capture): never stdout, which carries the command's result."""
    try:
        return sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        return 2


def run_child(job: ExportJob, work: Path, verbose: bool) -> tuple[JobResult, Path]:
    """Run one job in ``python -m edge_sync.exporters.worker``; returns its result and its log file."""
    job_file, result_file, log_file = (work / f"{job.target}.{ext}" for ext in ("job.json", "result.json", "log"))
    job_file.write_text(job.to_json())
    command = [sys.executable, "-m", "edge_sync.exporters.worker", str(job_file), str(result_file)]
    with open(log_file, "wb") as log:
        out = _stderr_fd() if verbose else log  # with -v the child's lines reach the user's stderr as they come
        proc = subprocess.run(command, stdout=out, stderr=out, stdin=subprocess.DEVNULL, env=_child_env(verbose))
    result = JobResult.read(result_file)
    if result is None:
        result = JobResult(error=f"the export process ended with exit code {proc.returncode} before reporting")
    return result, log_file


def lanes(targets: list[str], jobs: int) -> list[list[str]]:
    """``targets`` in at most ``jobs`` lanes that run side by side: targets that share work (``ExporterInfo.shares``)
    stay in one lane, in their order, so the first one's work is there for the next; groups go to the shortest lane."""
    groups: dict[str, list[str]] = {}
    for target in targets:
        groups.setdefault(EXPORTERS[target].shares or target, []).append(target)
    out: list[list[str]] = [[] for _ in range(max(1, min(jobs, len(groups))))]
    for group in sorted(groups.values(), key=len, reverse=True):
        min(out, key=len).extend(group)
    return out


def export_isolated(model: str, targets: list[str], precision: str, out_dir: Path, name: str | None = None,
                    options: dict[str, Any] | None = None, verbose: bool = False,
                    say: Callable[[str], None] | None = None, jobs: int = 1) -> list[Done]:
    """Export ``model`` to each of ``targets`` (already checked), each in a child process, ``jobs`` at a time (see
    :func:`lanes`); ``say`` gets one progress line per artifact as it is written and each distinct edge-sync warning
    once. Returns the artifacts in the order of ``targets``. Raises :class:`ExportFailedError` for the first target
    that fails (no new target starts after it; the artifacts already written stay)."""
    from edge_sync.artifact import read_artifact

    options, say = options or {}, say or log.info
    done: dict[str, Done] = {}
    warned: set[str] = set()
    failed: list[ExportFailedError] = []
    lock = threading.Lock()

    def run_lane(lane: list[str], tmp: Path) -> None:
        for target in lane:
            if failed:
                return
            job = ExportJob(str(model), target, precision, str(out_dir), name, options_for(target, precision, options),
                            verbose, share_dir=str(tmp))
            start = time.perf_counter()
            result, log_file = run_child(job, tmp, verbose)
            seconds = time.perf_counter() - start  # what the user waited: the child's start-up included
            with lock:
                for message in result.warnings if not verbose else ():  # with -v they were shown as they came
                    if message not in warned:
                        warned.add(message)
                        say(f"edge-sync: warning: {message}")
                if result.error is not None or result.path is None:
                    reason = " ".join(str(result.error).split())  # one line, whatever the tool raised
                    failed.append(ExportFailedError(f"{target} {precision} export failed: {reason}"
                                                    + ("" if verbose else f" (full log: {_keep(log_file)})")))
                    return
                path = Path(result.path)
                done[target] = Done(target, precision, path, read_artifact(path).bytes, seconds, result.peak_rss_mb)
                say(progress_line(done[target]))

    with tempfile.TemporaryDirectory(prefix="edge-sync-export-") as tmp:
        plan = lanes(targets, jobs)
        with ThreadPoolExecutor(len(plan)) as pool:
            for future in [pool.submit(run_lane, lane, Path(tmp)) for lane in plan]:
                future.result()
    if failed:
        raise failed[0]
    return [done[t] for t in targets]


def _keep(log: Path) -> Path:
    """Move a failed target's log out of the temporary folder, so the path in the error still exists."""
    fd, kept = tempfile.mkstemp(prefix=f"edge-sync-export-{log.stem}-", suffix=".log")
    os.close(fd)
    Path(kept).write_bytes(log.read_bytes())
    return Path(kept)
