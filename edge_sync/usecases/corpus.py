"""Score a corpus of thousands of clips (LSE-D / LSE-C style, :mod:`edge_sync.usecases.quality`), crash-safe and
resumable, on a bounded local process pool or on a Dask cluster, with identical results.

How it stays safe at scale:

* **The JSON-lines output is the journal.** Each finished clip becomes one line, written by the calling process
  only (single writer), flushed and fsync'ed at once, so a crash (or Ctrl-C, or a killed machine) loses at most the
  clips that were in flight. The file is locked while a job writes it, so two jobs cannot interleave lines.
* **Resume** (the default) skips every clip whose path already has a line. A torn last line (a crash mid-write)
  is cut off and that clip is scored again; other unreadable lines are ignored with a warning. Lines that record an
  ``"error"`` (a corrupt or truncated file, no audio, no face) are final: a broken file stays broken, and thousands
  of them should not be re-decoded on every resume. Pass ``retry_errors=True`` to score them again (e.g. after
  fixing files, or for ``WorkerDied`` errors such as a worker killed for memory). ``resume=False`` starts over and
  truncates the output.
* **Bounded work in flight**: at most ``2 x workers`` clips are queued at a time, so a corpus of any size costs a
  list of paths in memory, not thousands of futures.
* **One engine per worker**: each worker process loads the artifact once (pool initializer; on Dask a per-process
  cache), not once per clip.
* **A per-clip failure is a line, not a crash**: any exception while scoring a clip becomes
  ``{"path": ..., "status": "error", "error_type": ..., "error": ...}``. A worker process that dies (a native crash,
  the kernel's OOM killer) breaks a local pool: the clips that were in flight are then rescored one at a time in a
  fresh worker, so only the clip that kills its worker again is recorded as ``WorkerDied``. Dask reschedules such
  clips itself and reports ``KilledWorker`` after its allowed failures.
* **A clip that hangs** (a stalled decoder, a file on a dead network mount) would hold its worker for ever: with
  ``clip_timeout`` (local pool only) a watchdog in each worker stops it once a clip has run that long, and the clip,
  rescored alone and stopped again, is recorded as ``ClipTimeout``.
* **Workers die with the job**: a job killed outright (``kill -9``, the OOM killer) runs no cleanup, so each pool
  worker watches its parent itself (Linux: a parent-death signal; everywhere: a thread that waits on the parent's
  end of a pipe) and exits at once; multiprocessing's resource tracker, a child of the job, then sees its last pipe
  close and exits too. The Dask runner is left as it is: a LocalCluster's worker processes already exit when the
  job's end of a pipe closes (distributed's own parent watch), and a remote cluster's workers are that cluster's.

Line format (keys sorted; ``path`` is the absolute path as found, symlinks not resolved)::

    {"path": "/data/a.mp4", "status": "ok", "lse_d": 1.37, "lse_c": 0.11, "offset_frames": 2, ...,
     "model": "student.onnx-fp32@52743b165731", "heads": "9f1c...", "seconds": 0.8}
    {"path": "/data/b.mp4", "status": "error", "error_type": "MediaError", "error": "... has no audio ...", ...}

``model`` names the artifact (name, target, precision, checkpoint hash) and ``heads`` the use-case heads file
behind ``sync_probability``: resuming a journal with another model is refused (mixed scores are not comparable);
other heads only warn.

Every field except ``seconds`` (the clip's own scoring time) is independent of ``workers`` and ``runner``; the
order of lines is the order clips finished. :func:`read_results` reads a journal back (the last line per path);
:func:`write_parquet` converts it to one Parquet table (``pip install 'edge-sync[parquet]'``).

Dask (``runner="dask"``, ``pip install 'edge-sync[dask]'``): with ``scheduler=None`` a LocalCluster of ``workers``
processes is started and closed here; with ``scheduler="tcp://host:8786"`` the job runs on that existing cluster,
whose workers must see the same clip paths (a shared filesystem) and have edge-sync installed (``artifact=None``
means the bundled model of the worker's install; an artifact path must exist on the workers too).
"""
from __future__ import annotations

import ctypes
import hashlib
import json
import logging
import math
import multiprocessing
import os
import signal
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass
from multiprocessing.connection import wait as wait_ready
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from edge_sync._atomic import atomic_path
from edge_sync._json import JsonResult
from edge_sync._deps import require
from edge_sync.errors import EdgeSyncError
from edge_sync.features.media import VIDEO_EXTENSIONS, find_videos

log = logging.getLogger(__name__)

TIMING_FIELDS = ("seconds",)  # fields that vary run to run; everything else is the result
WORKER_DIED = "WorkerDied"
CLIP_TIMEOUT = "ClipTimeout"
_TIMEOUT_EXIT = 124  # a worker's exit status when its watchdog stops it (as timeout(1))
_ORPHAN_EXIT = 125  # a worker's exit status when it finds its parent gone
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
IN_FLIGHT_PER_WORKER = 2
RUNNERS = ("pool", "dask")


@dataclass
class CorpusSummary(JsonResult):
    """What one :func:`score_corpus` call did. ``clips_per_second`` counts the clips processed by this call
    (scored + failed) over its wall time, worker start-up included."""

    total: int  # clips found in the inputs
    scored: int  # scored by this call
    skipped: int  # already in the output (resume)
    failed: int  # recorded as errors by this call
    seconds: float
    clips_per_second: float
    output: str
    parquet: str | None = None
    runner: str = "pool"
    workers: int = 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        """One line for a person: what was done, how fast, where it went."""
        where = self.output + (f" (+ {self.parquet})" if self.parquet else "")
        who = "in-process" if self.runner == "pool" and self.workers == 0 else f"{self.runner} x{self.workers}"
        return (f"{self.total} clips: {self.scored} scored, {self.failed} failed, {self.skipped} already done; "
                f"{self.seconds:.1f} s ({self.clips_per_second:.2f} clips/s, {who}) -> {where}")


# ---------------------------------------------------------------------------------------------- inputs


def find_clips(inputs: str | Path | Sequence[str | Path],
               extensions: Sequence[str] = VIDEO_EXTENSIONS) -> list[str]:
    """Video files in ``inputs`` (files are taken as given; folders are searched recursively by
    :func:`edge_sync.features.media.find_videos`, skipping hidden names such as macOS ``._clip.mp4`` forks), as
    sorted, de-duplicated absolute paths."""
    if isinstance(inputs, (str, Path)):
        inputs = [inputs]
    found: set[str] = set()
    for item in inputs:
        item = Path(item)
        if item.is_file():
            found.add(os.path.abspath(item))
        elif item.is_dir():
            found.update(os.path.abspath(p) for p in find_videos(item, tuple(extensions)))
        else:
            raise EdgeSyncError(f"{item} does not exist (expected a video file or a folder of videos)")
    return sorted(found)


# ---------------------------------------------------------------------------------------------- scoring


def _clean(value: Any) -> Any:
    """JSON-safe: NaN/inf become null (strict JSON readers reject them), numpy scalars become Python ones."""
    if hasattr(value, "item") and not isinstance(value, (list, dict, str)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def error_record(path: str, error_type: str, message: str, seconds: float = 0.0) -> dict[str, Any]:
    return {"path": path, "status": "error", "error_type": error_type, "error": message,
            "seconds": round(seconds, 3)}


def score_one(engine: Any, heads: Any, path: str, identity: dict[str, Any] | None = None,
              null_check: bool = True) -> dict[str, Any]:
    """One clip -> one journal record; any exception becomes an error record (the job goes on). ``null_check``:
    measure the evidence null (recorded in the line, since it decides which low-evidence readings say UNSURE)."""
    from edge_sync.usecases.quality import score_file

    start = time.perf_counter()
    try:
        score = score_file(engine, path, heads=heads, null_check=null_check)
    except Exception as exc:  # noqa: BLE001 - a per-clip failure must never stop a corpus job
        message = " ".join(str(exc).split()) or repr(exc)
        return error_record(path, type(exc).__name__, message, time.perf_counter() - start)
    record = {k: _clean(v) for k, v in score.to_dict().items()}
    record.update(identity or {})
    record.update(path=path, status="ok", null_check=null_check, seconds=round(time.perf_counter() - start, 3))
    return record


def identity(manifest: dict[str, Any], heads: Any) -> dict[str, Any]:
    """What produced a score, recorded in every line so a resumed journal never mixes models silently:
    ``model`` = artifact name, target, precision and checkpoint hash (FP32 and INT8 of one model score
    differently); ``heads`` = hash of the use-case heads file behind ``sync_probability`` (None: no heads)."""
    sha = str((manifest.get("source") or {}).get("checkpoint_sha256") or "")[:12]
    model = f"{manifest.get('name', '?')}.{manifest.get('target', '?')}-{manifest.get('precision', '?')}"
    heads_id = None
    if heads is not None and getattr(heads, "path", None) is not None:
        heads_id = hashlib.sha256(Path(heads.path).read_bytes()).hexdigest()[:12]
    return {"model": f"{model}@{sha}" if sha else model, "heads": heads_id}


@dataclass(frozen=True)
class EngineSpec:
    """What every worker loads (picklable: it travels to pool and Dask workers). Paths are absolute."""

    artifact: str | None = None  # None: the bundled student
    backend: str = "auto"
    threads: int | None = 1  # the model's and OpenCV's threads per worker (None: the libraries' defaults)
    heads: str | None = None  # a use-case heads file; None: those fitted for the artifact's model
    clip_timeout: float | None = None  # seconds one clip may take in a worker before the worker is stopped
    null_check: bool = True  # measure each clip's evidence null (Engine.sync_file)


def _load(spec: EngineSpec, low_memory: bool = True) -> tuple[Any, Any, dict[str, Any]]:
    """The engine, the use-case heads (None: none fitted) and their identity, loaded once per process."""
    import edge_sync
    from edge_sync.usecases.heads import heads_for

    engine = edge_sync.load(spec.artifact, backend=spec.backend, threads=spec.threads, low_memory=low_memory)
    heads = heads_for(engine.manifest, spec.heads)
    return engine, heads, identity(engine.manifest, heads)


def _local_identity(spec: EngineSpec) -> dict[str, Any] | None:
    """The identity of the model this job will score with, where its artifact can be read here (a remote Dask
    cluster may hold it at a path this machine lacks: then None, and the journal is not checked)."""
    from edge_sync._paths import artifact_path
    from edge_sync.artifact import read_artifact
    from edge_sync.usecases.heads import heads_for

    try:
        manifest = read_artifact(artifact_path(spec.artifact), verify=False).manifest
        return identity(manifest, heads_for(manifest, spec.heads))
    except (EdgeSyncError, OSError):
        return None


def _limit_opencv_threads(threads: int | None) -> None:
    """Face detection runs in OpenCV's own thread pool: cap it like the model's, or N workers x all cores
    oversubscribe the CPU."""
    if threads:
        import cv2

        cv2.setNumThreads(int(threads))


class _WorkerInitError(Exception):
    """A worker could not load the engine: fatal for the job (every clip would fail the same way)."""


_WORKER: tuple[Any, Any, dict[str, Any]] | None = None
_WORKER_ERROR: str | None = None
_WORKER_SPEC: EngineSpec | None = None  # the job's spec: its clip timeout and null check reach every task


def _die_with_parent() -> None:
    """End this worker as soon as the job that started it is gone. A job killed with SIGKILL runs no cleanup, and
    an idle worker would wait for work on its queue for ever (it holds that pipe's write end itself, so it never
    sees end-of-file); a busy one would finish its clip first, for a result nobody reads. Linux sends SIGKILL at
    the parent's death (PR_SET_PDEATHSIG: immediate, even in native code holding the GIL; it tracks the thread
    that spawned the worker, which is the one running the pool until it is shut down); on every platform a thread
    waits on the parent's end of the spawn pipe, which closes when the parent dies."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):  # no usable libc: the thread below still works
            pass
    if os.getppid() != parent.pid:  # the parent died before the signal was asked for: nobody will send it
        os._exit(_ORPHAN_EXIT)
    threading.Thread(target=_exit_when_gone, args=(parent.sentinel,), name="edge-sync-parent-watch",
                     daemon=True).start()


def _exit_when_gone(sentinel: int) -> None:
    wait_ready([sentinel])  # ready only at end-of-file: the parent closed the pipe, or died
    os._exit(_ORPHAN_EXIT)


def _init_pool_worker(spec: EngineSpec) -> None:
    global _WORKER, _WORKER_ERROR, _WORKER_SPEC

    _die_with_parent()  # first: a job killed while workers load must not leave them behind
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it stops the pool
    _WORKER_SPEC = spec
    try:
        _limit_opencv_threads(spec.threads)
        _WORKER = _load(spec)
    except Exception as exc:  # noqa: BLE001 - reported by every task, see _pool_task
        _WORKER_ERROR = f"{type(exc).__name__}: {exc}"


def _pool_task(path: str) -> dict[str, Any]:
    if _WORKER is None or _WORKER_SPEC is None:
        raise _WorkerInitError(_WORKER_ERROR or "the worker was not initialised")
    engine, heads, ident = _WORKER
    timeout, null_check = _WORKER_SPEC.clip_timeout, _WORKER_SPEC.null_check
    if not timeout:
        return score_one(engine, heads, path, ident, null_check)
    # a hung decoder sits in native code, where no Python exception reaches it: the watchdog ends the whole
    # worker, and the parent, seeing the pool break, rescores the clips in flight alone and times each
    watchdog = threading.Timer(timeout, os._exit, (_TIMEOUT_EXIT,))
    watchdog.daemon = True
    watchdog.start()
    try:
        return score_one(engine, heads, path, ident, null_check)
    finally:
        watchdog.cancel()


_DASK_ENGINES: dict[EngineSpec, tuple[Any, Any, dict[str, Any]]] = {}
_DASK_LOCK = threading.Lock()


def _dask_task(path: str, spec: EngineSpec) -> dict[str, Any]:
    """Runs on a Dask worker: the engine is loaded on the first clip a worker process gets, then cached."""
    with _DASK_LOCK:  # a worker with several threads loads once
        if spec not in _DASK_ENGINES:
            try:
                _limit_opencv_threads(spec.threads)
                _DASK_ENGINES[spec] = _load(spec)
            except Exception as exc:  # noqa: BLE001
                raise _WorkerInitError(f"{type(exc).__name__}: {exc}") from None
        engine, heads, ident = _DASK_ENGINES[spec]
    return score_one(engine, heads, path, ident, spec.null_check)


# ---------------------------------------------------------------------------------------------- the journal


def _parse_line(line: bytes) -> dict[str, Any] | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) and isinstance(record.get("path"), str) else None


def iter_records(path: str | Path) -> Iterator[dict[str, Any]]:
    """Every readable record of a journal, in file order (torn or foreign lines are skipped)."""
    with open(path, "rb") as f:
        for line in f:
            if line.endswith(b"\n"):
                record = _parse_line(line)
                if record is not None:
                    yield record


def read_results(path: str | Path) -> dict[str, dict[str, Any]]:
    """A journal's current result per clip path: its last readable line (a retried error is replaced)."""
    return {r["path"]: r for r in iter_records(path)}


class Journal:
    """The JSON-lines output: opened for appending under an exclusive lock, torn tail removed, one fsync'ed line
    per record. Only the process that opened it writes."""

    def __init__(self, path: str | Path, resume: bool = True) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        created = not self.path.exists()
        self._file = open(self.path, "a+b")
        try:
            self._lock()
            if created:
                _fsync_dir(self.path.parent)
            self.status: dict[str, str] = {}  # path -> "ok" | "error" of its last line
            self.identities: dict[str, set[Any]] = {"model": set(), "heads": set()}  # of the scored lines
            if resume:
                self._recover()
            else:
                self._file.truncate(0)
                os.fsync(self._file.fileno())
        except BaseException:
            self._file.close()
            raise

    def _lock(self) -> None:
        try:
            import fcntl
        except ImportError:  # Windows: no advisory lock; one job per output is then the user's to keep
            return
        try:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise EdgeSyncError(f"{self.path} is being written by another scoring job (it is locked); wait for it "
                                "to finish or write to another output") from None

    def _recover(self) -> None:
        """Read the status of every clip already in the journal (streamed: a journal of millions of lines costs a
        dict of paths, not its text) and cut off a torn last line."""
        self._file.seek(0)
        offset, bad = 0, 0
        for line in self._file:
            if not line.endswith(b"\n"):  # a crash mid-write: drop the partial line, its clip is scored again
                log.warning("%s: removing a torn last line (%d bytes) left by an interrupted job; that clip is "
                            "scored again", self.path, len(line))
                self._file.truncate(offset)
                os.fsync(self._file.fileno())
                break
            offset += len(line)
            if not line.strip():
                continue
            record = _parse_line(line)
            if record is None:
                bad += 1
            else:
                status = self.status[record["path"]] = record.get("status", "error" if "error" in record else "ok")
                if status == "ok":
                    for key, seen in self.identities.items():
                        seen.add(record.get(key))
        if bad:
            log.warning("%s: ignored %d unreadable line(s)", self.path, bad)

    def check_identity(self, current: dict[str, Any] | None) -> None:
        """Refuse to add one model's scores to a journal of another's; warn where only the heads changed."""
        if current is None:
            return
        models = self.identities["model"] - {None, current["model"]}
        if models:
            raise EdgeSyncError(f"{self.path} holds scores made with {', '.join(sorted(models))}; this job scores "
                                f"with {current['model']}: write to another output, or start over with resume=False "
                                "(--no-resume)")
        heads = {h for h in self.identities["heads"] if h != current["heads"]}
        if heads and self.status:
            log.warning("%s: earlier lines' sync_probability came from other use-case heads (%s) than this job's "
                        "(%s); LSE-D/LSE-C are unaffected", self.path, ", ".join(map(str, sorted(heads, key=str))),
                        current["heads"])

    def done(self, retry_errors: bool = False) -> set[str]:
        """Paths that resume skips: those with a result (and those with an error unless ``retry_errors``)."""
        return {p for p, status in self.status.items() if not (retry_errors and status == "error")}

    def append(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, sort_keys=True, allow_nan=False) + "\n"
        self._file.write(line.encode())
        self._file.flush()
        os.fsync(self._file.fileno())
        self.status[record["path"]] = record["status"]

    def close(self) -> None:
        self._file.close()  # releases the lock

    def __enter__(self) -> "Journal":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _fsync_dir(folder: Path) -> None:
    """Make a new file's directory entry durable too (POSIX; a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------------- parquet

# pyarrow type factories by name: fixed types whatever the rows hold
_PARQUET_TYPES = {"path": "string", "status": "string", "error_type": "string", "error": "string",
                  "lse_d": "float64", "lse_c": "float64", "offset_frames": "int64", "audio_delay_ms": "float64",
                  "frames": "int64", "scale": "string", "sync_probability": "float64", "in_sync": "bool_",
                  "threshold": "float64", "track_id": "int64", "backend": "string", "model": "string",
                  "heads": "string", "seconds": "float64"}


def write_parquet(journal: str | Path, parquet: str | Path) -> Path:
    """The journal's current results (one row per clip in it, sorted by path) as a Parquet file, written atomically.
    Known fields keep fixed types whatever the rows hold (an all-error corpus still has a float ``lse_d``)."""
    pa = require("pyarrow", "parquet", "writing Parquet")
    import pyarrow.parquet as pq

    rows = [r for _, r in sorted(read_results(journal).items())]
    names = list(_PARQUET_TYPES) + sorted({k for r in rows for k in r} - set(_PARQUET_TYPES))
    columns = {}
    for name in names:
        values = [r.get(name) for r in rows]
        kind = _PARQUET_TYPES.get(name)
        columns[name] = pa.array(values, type=getattr(pa, kind)() if kind else None)
    table = pa.table(columns)
    with atomic_path(parquet) as tmp:
        pq.write_table(table, tmp)
    return Path(parquet)


# ---------------------------------------------------------------------------------------------- runners


Emit = Callable[[dict[str, Any]], None]


def _run_in_process(todo: Sequence[str], emit: Emit, spec: EngineSpec) -> None:
    import cv2

    before = cv2.getNumThreads()
    try:
        _limit_opencv_threads(spec.threads)
        engine, heads, ident = _load(spec)
        for path in todo:
            emit(score_one(engine, heads, path, ident, spec.null_check))
    finally:
        cv2.setNumThreads(before)


class _Pool:
    """A spawn-context process pool whose workers each hold one engine."""

    def __init__(self, workers: int, spec: EngineSpec) -> None:
        # spawn, not fork: the caller may hold backend thread pools and locks that a forked child would inherit
        self.executor = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                                            initializer=_init_pool_worker, initargs=(spec,))

    def submit(self, path: str) -> Future:
        return self.executor.submit(_pool_task, path)

    def processes(self) -> list[Any]:
        """The worker processes (started by the first submit), to read their exit status once they are gone."""
        return list((getattr(self.executor, "_processes", None) or {}).values())

    def close(self, cancel: bool = False) -> None:
        self.executor.shutdown(wait=True, cancel_futures=cancel)

    def terminate(self) -> None:
        """Stop now (Ctrl-C, an error): the workers ignore SIGINT, and clips already handed to them would
        otherwise run to the end, for results nobody keeps."""
        stop = getattr(self.executor, "terminate_workers", None)  # Python 3.14+
        if stop is not None:
            stop()
            return
        for process in list((getattr(self.executor, "_processes", None) or {}).values()):
            process.terminate()
        self.executor.shutdown(wait=True, cancel_futures=True)


def _result(future: Future) -> dict[str, Any]:
    try:
        return future.result()
    except _WorkerInitError as exc:
        raise EdgeSyncError(f"a worker could not load the model: {exc}") from None


def _run_pool(todo: Sequence[str], emit: Emit, workers: int, spec: EngineSpec) -> None:
    limit = IN_FLIGHT_PER_WORKER * workers
    queue = iter(todo)
    pool = _Pool(workers, spec)
    in_flight: dict[Future, str] = {}
    unsent: list[str] = []  # a path taken from the queue whose submit found the pool broken
    try:
        while True:
            try:
                while len(in_flight) < limit and (path := next(queue, None)) is not None:
                    try:
                        in_flight[pool.submit(path)] = path
                    except BrokenProcessPool:
                        unsent.append(path)
                        raise
                if not in_flight:
                    break
                done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in done:
                    record = _result(future)
                    del in_flight[future]
                    emit(record)
            except BrokenProcessPool:
                # a worker died (native crash, OOM killer): keep what finished, then find the culprit by
                # rescoring the rest of what was in flight one clip at a time
                suspects = unsent[:]
                for future, path in in_flight.items():
                    if future.done() and not future.cancelled() and future.exception() is None:
                        emit(future.result())
                    else:
                        suspects.append(path)
                in_flight.clear()
                unsent.clear()
                pool.close(cancel=True)
                log.warning("a worker process died; rescoring the %d clip(s) it may have been working on one at "
                            "a time", len(suspects))
                _isolate(sorted(suspects), emit, spec)
                pool = _Pool(workers, spec)
    except BaseException:
        pool.terminate()
        raise
    pool.close()


def _isolate(suspects: Sequence[str], emit: Emit, spec: EngineSpec) -> None:
    """Each clip alone in a one-worker pool: one that kills its worker again is recorded as ``WorkerDied``."""
    pool = None
    try:
        for path in suspects:
            pool = pool or _Pool(1, spec)
            future = pool.submit(path)
            workers = pool.processes()
            try:
                emit(_result(future))
            except BrokenProcessPool:
                pool.close(cancel=True)
                pool = None
                emit(_death_record(path, spec, [w.exitcode for w in workers]))
    except BaseException:
        if pool is not None:
            pool.terminate()
        raise
    if pool is not None:
        pool.close()


def _death_record(path: str, spec: EngineSpec, exit_codes: Sequence[int | None]) -> dict[str, Any]:
    """Why the lone worker scoring ``path`` died: its watchdog (the clip ran past ``clip_timeout``) or a crash."""
    if spec.clip_timeout and _TIMEOUT_EXIT in exit_codes:
        return error_record(path, CLIP_TIMEOUT, f"scoring took longer than clip_timeout={spec.clip_timeout:g} s "
                            "(a stalled decoder or a very long clip), so its worker was stopped; a longer "
                            "clip_timeout and retry_errors=True (--clip-timeout, --retry-errors) try it again",
                            float(spec.clip_timeout))
    return error_record(path, WORKER_DIED, "the worker process died while scoring this clip alone (a crash in a "
                        "native library, or killed for memory); retry_errors=True (--retry-errors) tries it again")


def _run_dask(todo: Sequence[str], emit: Emit, workers: int, scheduler: str | None, spec: EngineSpec) -> None:
    distributed = require("distributed", "dask", "runner='dask'")
    cluster = None
    if scheduler is None:
        cluster = distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                           dashboard_address=None, silence_logs=logging.ERROR)
        scheduler = cluster.scheduler_address
    try:
        client = distributed.Client(scheduler)
    except OSError as exc:  # an unreachable or wrong address: one line, not the connection stack
        if cluster is not None:
            cluster.close()
        raise EdgeSyncError(f"cannot reach the Dask scheduler at {scheduler}: {exc}; start one (dask scheduler) "
                            "or leave --scheduler out for a local cluster") from None
    try:
        slots = sum(client.nthreads().values()) if cluster is None else workers
        limit = IN_FLIGHT_PER_WORKER * max(1, slots)
        queue = iter(todo)
        paths: dict[str, str] = {}
        completed = distributed.as_completed()

        def submit_next() -> None:
            path = next(queue, None)
            if path is not None:
                future = client.submit(_dask_task, path, spec, pure=False, retries=0)
                paths[future.key] = path
                completed.add(future)

        for _ in range(limit):
            submit_next()
        for future in completed:
            path = paths.pop(future.key)
            try:
                record = future.result()
            except _WorkerInitError as exc:
                raise EdgeSyncError(f"a Dask worker could not load the model: {exc}") from None
            except distributed.KilledWorker as exc:  # the clip killed its worker on every allowed try
                record = error_record(path, WORKER_DIED, f"Dask workers died while scoring this clip ({exc}); "
                                      "retry_errors=True (--retry-errors) tries it again")
            future.release()
            emit(record)
            submit_next()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


# ---------------------------------------------------------------------------------------------- the job


def _portable_artifact(artifact: str | Path | None) -> str | None:
    """The spec's artifact: a bundled artifact's name stays a name (each worker loads it from its own install, as
    None loads the default), any other path becomes absolute (workers may run from another directory)."""
    from edge_sync._paths import bundled_artifact_named

    if artifact is None:
        return None
    return str(artifact) if bundled_artifact_named(artifact) else os.path.abspath(artifact)


def score_corpus(inputs: str | Path | Sequence[str | Path], output: str | Path, artifact: str | Path | None = None,
                 backend: str = "auto", workers: int = 1, runner: str = "pool", scheduler: str | None = None,
                 resume: bool = True, retry_errors: bool = False, parquet: str | Path | None = None,
                 threads_per_worker: int | None = 1, heads: str | Path | None = None,
                 clip_timeout: float | None = None, progress: bool = True, null_check: bool = True) -> CorpusSummary:
    """Score every video in ``inputs`` (files and/or folders, searched recursively) into ``output`` (JSON lines).

    ``runner='pool'``: ``workers`` local worker processes (``workers=0`` scores in this process: no start-up,
    no crash isolation). ``runner='dask'``: a LocalCluster of ``workers`` processes, or the Dask cluster at
    ``scheduler``. ``resume`` skips clips already in ``output`` (error lines too, unless ``retry_errors``);
    ``resume=False`` truncates it. ``parquet``: also write the results as Parquet at the end, from the journal
    (``edge-sync[parquet]``).
    ``threads_per_worker``: the model's and OpenCV's threads in each worker (None: the libraries' defaults).
    ``heads``: a use-case heads file for ``sync_probability`` (default: the heads fitted for the artifact's model).
    ``clip_timeout``: seconds a clip may take before its worker is stopped and the clip recorded as ``ClipTimeout``
    (local pool with workers >= 1; None: no limit).
    ``null_check``: measure each clip's evidence null (False: the evidence floor alone decides UNSURE; faster).
    See the module docstring for the line format and the crash semantics.
    """
    if runner not in RUNNERS:
        raise EdgeSyncError(f"unknown runner {runner!r}; choose one of {', '.join(RUNNERS)}")
    if workers < (1 if runner == "dask" else 0):
        raise EdgeSyncError(f"workers must be >= {1 if runner == 'dask' else 0} for runner={runner!r}, got {workers}")
    if scheduler is not None and runner != "dask":
        raise EdgeSyncError("a scheduler address needs runner='dask'")
    if clip_timeout is not None and (clip_timeout <= 0 or runner != "pool" or workers < 1):
        raise EdgeSyncError(f"clip_timeout must be > 0 seconds and needs runner='pool' with workers >= 1 (a worker "
                            f"process to stop), got clip_timeout={clip_timeout}, runner={runner!r}, workers={workers}")
    if parquet is not None:
        require("pyarrow", "parquet", "writing Parquet")  # fail before hours of scoring, not after
    if runner == "dask":
        require("distributed", "dask", "runner='dask'")
    spec = EngineSpec(artifact=_portable_artifact(artifact), backend=backend,
                      threads=threads_per_worker, heads=None if heads is None else os.path.abspath(heads),
                      clip_timeout=clip_timeout, null_check=null_check)
    start = time.perf_counter()
    clips = find_clips(inputs)
    counts = {"ok": 0, "error": 0}
    with Journal(output, resume=resume) as journal:
        journal.check_identity(_local_identity(spec))
        done = journal.done(retry_errors)
        todo = [p for p in clips if p not in done]
        skipped = len(clips) - len(todo)
        log.info("%d clip(s) found, %d already in %s, %d to score (%s, %d worker(s))", len(clips), skipped, output,
                 len(todo), runner, workers)
        if todo and runner == "pool" and workers > 0:
            # fail fast and clearly on a bad artifact or backend, before starting workers that would all fail
            _load(spec, low_memory=False)
        bar = _progress(len(todo), progress)

        def emit(record: dict[str, Any]) -> None:
            journal.append(record)
            counts[record["status"]] += 1
            bar.update(1)
            if record["status"] == "error":
                bar.set_postfix(failed=counts["error"], refresh=False)

        try:
            if not todo:
                pass
            elif runner == "dask":
                _run_dask(todo, emit, workers, scheduler, spec)
            elif workers == 0:
                _run_in_process(todo, emit, spec)
            else:
                _run_pool(todo, emit, workers, spec)
        finally:
            bar.close()
    if parquet is not None:
        write_parquet(output, parquet)
    seconds = time.perf_counter() - start
    processed = counts["ok"] + counts["error"]
    return CorpusSummary(total=len(clips), scored=counts["ok"], skipped=skipped, failed=counts["error"],
                         seconds=round(seconds, 3), clips_per_second=round(processed / seconds, 3) if seconds else 0.0,
                         output=str(output), parquet=None if parquet is None else str(parquet), runner=runner,
                         workers=workers)


def _progress(total: int, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="clip", desc="scoring", disable=not enabled or total == 0, dynamic_ncols=True)


def summarise(records: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Counts and mean scores of journal records, e.g. ``read_results(path).values()`` (what a CLI prints)."""
    records = list(records)
    ok = [r for r in records if r.get("status") == "ok"]
    mean = {k: round(sum(r[k] for r in ok) / len(ok), 4) if ok else None for k in ("lse_d", "lse_c")}
    return {"clips": len(records), "ok": len(ok), "errors": len(records) - len(ok), "mean_lse_d": mean["lse_d"],
            "mean_lse_c": mean["lse_c"]}
