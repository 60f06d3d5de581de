"""Corpus scoring: a bounded pool, resume after a crash, a worker that dies, Dask, Parquet; identical results."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime", reason="pip install 'edge-sync[onnxruntime]'")
pytest.importorskip("skimage", reason="the portrait ships in scikit-image: pip install 'edge-sync[dev]'")

from edge_sync.errors import EdgeSyncError, MissingExtraError  # noqa: E402
from edge_sync.usecases.corpus import (  # noqa: E402
    TIMING_FIELDS, Journal, find_clips, read_results, score_corpus, summarise, write_parquet)

GOOD = {"a/one.mp4": ("Good morning to you all", 0), "a/two.mov": ("The cat sat on the mat", 3),
        "b/deep/three.mp4": ("Seven wizards judge the boxing match", -2), "b/four.mkv": ("Please call me back soon", 5)}
BROKEN = ("a/truncated.mp4", "b/silent.mp4")


def _results(path: Path) -> dict[str, dict]:
    """Per-path results without the fields that vary run to run (the clip's own scoring time)."""
    return {p: {k: v for k, v in r.items() if k not in TIMING_FIELDS} for p, r in read_results(path).items()}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """4 real talking-photo clips (short phrases, 320x240) in nested folders, a truncated MP4, a silent video."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng); scripts/setup.sh installs it")
    from edge_sync.data.talking_photo import astronaut, make_talking_photo_clip, render_frames, write_video

    root = tmp_path_factory.mktemp("corpus")
    for i, (name, (text, offset)) in enumerate(GOOD.items()):
        make_talking_photo_clip(root / name, text, offset_frames=offset, size=(320, 240), seed=i)
    data = (root / "a/one.mp4").read_bytes()
    (root / BROKEN[0]).write_bytes(data[: len(data) // 3])  # the index (moov) is at the end: cut off
    write_video(root / BROKEN[1], render_frames(astronaut(), np.zeros(25), size=(320, 240)), None)
    (root / "a/notes.txt").write_text("not a video")
    (root / "b/._four.mkv").write_bytes(b"macOS resource fork")  # hidden: skipped
    return root


@pytest.fixture(scope="module")
def baseline(corpus, tmp_path_factory) -> Path:
    """Scored in this process (workers=0): the reference every runner must reproduce."""
    out = tmp_path_factory.mktemp("baseline") / "scores.jsonl"
    summary = score_corpus([corpus], out, workers=0, progress=False)
    assert (summary.total, summary.scored, summary.failed, summary.skipped) == (6, 4, 2, 0)
    return out


def test_finds_videos_recursively_sorted_and_deduplicated(corpus) -> None:
    clips = find_clips([corpus, corpus / "a/one.mp4", corpus / "a/notes.txt"])
    expected = sorted(str(corpus / n) for n in [*GOOD, *BROKEN])
    assert clips == sorted(expected + [str(corpus / "a/notes.txt")])  # a file named explicitly is taken
    assert find_clips(str(corpus)) == expected
    with pytest.raises(EdgeSyncError, match="does not exist"):
        find_clips([corpus / "missing"])


def test_journal_holds_one_line_per_clip_with_scores_or_errors(corpus, baseline) -> None:
    lines = baseline.read_text().splitlines()
    assert len(lines) == 6 and all(json.loads(line)["path"].startswith(str(corpus)) for line in lines)
    results = read_results(baseline)
    for name in GOOD:
        r = results[str(corpus / name)]
        assert r["status"] == "ok" and "error" not in r and 0.0 <= r["lse_d"] <= 2.0 and r["frames"] > 25
    for name in BROKEN:
        r = results[str(corpus / name)]
        assert r["status"] == "error" and r["error_type"] == "MediaError" and r["error"]
    assert "no audio" in results[str(corpus / "b/silent.mp4")]["error"]
    assert results[str(corpus / "a/one.mp4")]["model"].startswith("student.onnx-fp32@")
    assert summarise(results.values())["ok"] == 4


def test_one_and_two_worker_processes_give_identical_results(corpus, baseline, tmp_path) -> None:
    for workers in (1, 2):
        summary = score_corpus([corpus], tmp_path / f"w{workers}.jsonl", workers=workers, progress=False)
        assert (summary.scored, summary.failed, summary.skipped) == (4, 2, 0)
        assert summary.clips_per_second > 0
        assert _results(tmp_path / f"w{workers}.jsonl") == _results(baseline)


def test_a_bundled_artifact_by_name_scores_in_worker_processes(corpus, tmp_path, monkeypatch) -> None:
    """`score DIR --artifact student-int8`: the name reaches the workers as a name (made absolute it would point at
    ./student-int8 and fail), and each loads the bundled INT8 artifact of its own install."""
    monkeypatch.chdir(tmp_path)
    summary = score_corpus([corpus], tmp_path / "int8.jsonl", artifact="student-int8", workers=1, progress=False)
    assert (summary.scored, summary.failed) == (4, 2)
    results = read_results(tmp_path / "int8.jsonl")
    assert results[str(corpus / "a/one.mp4")]["model"].startswith("student.onnx-int8@")


def test_resume_after_a_crash_scores_only_what_is_missing(corpus, baseline, tmp_path) -> None:
    out = tmp_path / "scores.jsonl"
    lines = baseline.read_bytes().splitlines(keepends=True)
    out.write_bytes(b"".join(lines[:3]) + lines[3][:25])  # killed while writing the 4th line
    summary = score_corpus([corpus], out, workers=0, progress=False)
    assert summary.skipped == 3 and summary.scored + summary.failed == 3
    assert _results(out) == _results(baseline)
    text = out.read_text()
    assert text.endswith("\n") and len(text.splitlines()) == 6  # the torn line is gone, nothing twice

    again = score_corpus([corpus], out, workers=0, progress=False)  # complete: nothing to do, errors are final
    assert (again.skipped, again.scored, again.failed) == (6, 0, 0)
    retry = score_corpus([corpus], out, workers=0, retry_errors=True, progress=False)
    assert (retry.skipped, retry.scored, retry.failed) == (4, 0, 2)
    assert len(out.read_text().splitlines()) == 8 and _results(out) == _results(baseline)
    fresh = score_corpus([corpus], out, workers=0, resume=False, progress=False)
    assert (fresh.skipped, fresh.scored, fresh.failed) == (0, 4, 2) and len(out.read_text().splitlines()) == 6


def test_heads_file_override(corpus, baseline, tmp_path) -> None:
    from edge_sync.runtimes.api import load
    from edge_sync.usecases.heads import heads_for

    fitted = heads_for(load().manifest)
    if fitted is None:
        pytest.skip("no use-case heads are fitted for the bundled model")
    clip = str(corpus / "a/one.mp4")
    summary = score_corpus([clip], tmp_path / "h.jsonl", workers=0, heads=fitted.path, progress=False)
    assert "1 scored" in summary.describe()
    assert _results(tmp_path / "h.jsonl")[clip] == _results(baseline)[clip]  # the same heads as found by default
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(EdgeSyncError, match="not a use-case heads file"):  # fatal: not one error line per clip
        score_corpus([clip], tmp_path / "bad.jsonl", workers=0, heads=tmp_path / "bad.json", progress=False)


def test_resume_refuses_to_mix_models(corpus, baseline, tmp_path) -> None:
    out = tmp_path / "scores.jsonl"
    out.write_text(baseline.read_text().replace("student.onnx-fp32@", "student.onnx-int8@"))  # another artifact's
    with pytest.raises(EdgeSyncError, match="student.onnx-int8@.*resume=False"):
        score_corpus([corpus], out, workers=0, progress=False)


def _spawned_children(parent: int | None = None) -> list[int]:
    """Pool workers (spawn-started processes) of ``parent`` (default: this process), from /proc."""
    parent = os.getpid() if parent is None else parent
    pids = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == parent and b"spawn_main" in cmdline:
            pids.append(int(entry))
    return pids


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the worker processes in /proc")
def test_a_worker_killed_mid_job_loses_nothing(corpus, baseline, tmp_path, caplog) -> None:
    out = tmp_path / "scores.jsonl"
    killed: list[int] = []

    def kill_a_worker_after_the_first_line() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not killed:
            children = _spawned_children()
            if children and out.exists() and out.stat().st_size > 0:
                os.kill(children[0], signal.SIGKILL)  # as the OOM killer would
                killed.append(children[0])
            time.sleep(0.01)

    killer = threading.Thread(target=kill_a_worker_after_the_first_line, daemon=True)
    killer.start()
    with caplog.at_level("WARNING", logger="edge_sync.usecases.corpus"):
        summary = score_corpus([corpus], out, workers=2, progress=False)
    killer.join()
    assert killed and "a worker process died" in caplog.text
    assert (summary.scored, summary.failed) == (4, 2)
    assert _results(out) == _results(baseline) and len(out.read_text().splitlines()) == 6


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the worker processes in /proc")
def test_ctrl_c_stops_the_workers_at_once_and_resume_finishes(corpus, baseline, tmp_path) -> None:
    out = tmp_path / "scores.jsonl"
    code = ("import sys\nfrom edge_sync.usecases.corpus import score_corpus\ntry:\n"
            f"    score_corpus([{str(corpus)!r}], {str(out)!r}, workers=2, progress=False)\n"
            "except KeyboardInterrupt:\n    sys.exit(130)\n")
    job = subprocess.Popen([sys.executable, "-c", code],
                           preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # as in a terminal
    deadline = time.monotonic() + 60
    while not (out.exists() and out.stat().st_size > 0) and time.monotonic() < deadline and job.poll() is None:
        time.sleep(0.01)
    workers = _spawned_children(job.pid)
    job.send_signal(signal.SIGINT)
    assert job.wait(timeout=30) == 130
    assert len(workers) == 2 and not [w for w in workers if _alive(w)]  # none left running
    summary = score_corpus([corpus], out, workers=0, progress=False)
    assert summary.skipped >= 1 and _results(out) == _results(baseline)


def test_dask_local_cluster_gives_identical_results(corpus, baseline, tmp_path) -> None:
    distributed = pytest.importorskip("distributed", reason="pip install 'edge-sync[dask]'")
    summary = score_corpus([corpus], tmp_path / "dask.jsonl", runner="dask", workers=2, progress=False)
    assert (summary.runner, summary.scored, summary.failed) == ("dask", 4, 2)
    assert _results(tmp_path / "dask.jsonl") == _results(baseline)

    # an existing cluster, reached by its scheduler address; resume works there too
    out = tmp_path / "existing.jsonl"
    out.write_bytes(b"".join(baseline.read_bytes().splitlines(keepends=True)[:4]))
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as c:
        summary = score_corpus([corpus], out, runner="dask", scheduler=c.scheduler_address, progress=False)
    assert summary.skipped == 4 and summary.scored + summary.failed == 2
    assert _results(out) == _results(baseline)


def test_parquet_round_trip(corpus, baseline, tmp_path) -> None:
    pq = pytest.importorskip("pyarrow.parquet", reason="pip install 'edge-sync[parquet]'")
    out = tmp_path / "scores.jsonl"
    shutil.copy(baseline, out)
    summary = score_corpus([corpus], out, workers=0, parquet=tmp_path / "scores.parquet", progress=False)
    assert summary.skipped == 6 and summary.parquet == str(tmp_path / "scores.parquet")
    table = pq.read_table(tmp_path / "scores.parquet")
    assert str(table.schema.field("lse_d").type) == "double" and str(table.schema.field("in_sync").type) == "bool"
    rows = table.to_pylist()
    results = read_results(out)
    assert [r["path"] for r in rows] == sorted(results)
    for row in rows:
        assert {k: v for k, v in row.items() if v is not None} == \
            {k: v for k, v in results[row["path"]].items() if v is not None}
    # only errors: the columns keep their types
    write_parquet(_only_errors(out, tmp_path / "errors.jsonl"), tmp_path / "errors.parquet")
    assert str(pq.read_table(tmp_path / "errors.parquet").schema.field("lse_d").type) == "double"


def _only_errors(src: Path, dst: Path) -> Path:
    dst.write_text("".join(line + "\n" for line in src.read_text().splitlines() if '"error"' in line))
    return dst


def test_clear_errors(corpus, tmp_path, monkeypatch) -> None:
    with pytest.raises(EdgeSyncError, match="unknown runner"):
        score_corpus([corpus], tmp_path / "o.jsonl", runner="spark", progress=False)
    with pytest.raises(EdgeSyncError, match="needs runner='dask'"):
        score_corpus([corpus], tmp_path / "o.jsonl", scheduler="tcp://127.0.0.1:8786", progress=False)
    with pytest.raises(EdgeSyncError, match="workers must be"):
        score_corpus([corpus], tmp_path / "o.jsonl", workers=-1, progress=False)
    with pytest.raises(EdgeSyncError, match="artifact"):  # before any worker starts
        score_corpus([corpus], tmp_path / "o.jsonl", artifact=tmp_path / "nowhere", workers=2, progress=False)
    with Journal(tmp_path / "locked.jsonl"):
        with pytest.raises(EdgeSyncError, match="another scoring job"):
            score_corpus([corpus], tmp_path / "locked.jsonl", workers=0, progress=False)
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if the extra were not installed
    with pytest.raises(MissingExtraError, match=r"edge-sync\[dask\]"):
        score_corpus([corpus], tmp_path / "o.jsonl", runner="dask", progress=False)
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(MissingExtraError, match=r"edge-sync\[parquet\]"):
        score_corpus([corpus], tmp_path / "o.jsonl", parquet=tmp_path / "o.parquet", progress=False)


def test_a_clip_that_runs_past_clip_timeout_is_stopped_and_recorded(corpus, baseline, tmp_path) -> None:
    """A 2-hour faceless clip of tiny frames (a stand-in for a stalled decoder; made in ~4 s, 3.7 MB; 13 s to
    search on a quiet 2-core machine with PyAV 18.1 and OpenCV 4.14, where a 40-minute one at 160x120 took 8 s,
    under the old 10 s limit) takes far longer than the limit: its worker is stopped, the clip rescored alone and
    recorded as ClipTimeout, and every other clip is scored as usual."""
    folder = tmp_path / "clips"
    folder.mkdir()
    shutil.copy(corpus / "a/one.mp4", folder / "one.mp4")
    shutil.copy(corpus / BROKEN[1], folder / "silent.mp4")
    subprocess.run(["ffmpeg", "-y", "-v", "error", "-f", "lavfi", "-i", "color=c=gray:s=64x48:r=25:d=7200",
                    "-f", "lavfi", "-i", "sine=f=300:d=7200:sample_rate=8000", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac",
                    "-shortest", str(folder / "long.mp4")], check=True)
    out = tmp_path / "scores.jsonl"
    summary = score_corpus([folder], out, workers=1, clip_timeout=4, progress=False)
    results = read_results(out)
    long = results[str(folder / "long.mp4")]
    assert long["status"] == "error" and long["error_type"] == "ClipTimeout", long
    assert "clip_timeout=4" in long["error"]
    assert results[str(folder / "one.mp4")]["lse_d"] == read_results(baseline)[str(corpus / "a/one.mp4")]["lse_d"]
    assert results[str(folder / "silent.mp4")]["error_type"] == read_results(baseline)[str(corpus / BROKEN[1])][
        "error_type"]
    assert (summary.scored, summary.failed) == (1, 2)
    with pytest.raises(EdgeSyncError, match="clip_timeout"):
        score_corpus([folder], tmp_path / "o.jsonl", workers=0, clip_timeout=5, progress=False)
    with pytest.raises(EdgeSyncError, match="clip_timeout"):
        score_corpus([folder], tmp_path / "o.jsonl", workers=1, clip_timeout=0, progress=False)
