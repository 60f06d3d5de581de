"""`edge-sync score DIR -o out.jsonl` killed with SIGKILL (no handler runs, no pool shutdown) must not leave its pool
workers, nor multiprocessing's resource tracker, running: they go with their parent (issue #17, item 4)."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("onnxruntime", reason="pip install 'edge-sync[onnxruntime]'")
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the process tree from /proc")

CLIPS = ("a.mp4", "b.mp4")


def _children(parent: int) -> dict[int, bytes]:
    """pid -> command line of every live process whose parent is ``parent``."""
    found = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if int(stat[1]) == parent and stat[0] != "Z":
            found[int(entry)] = cmdline
    return found


def _open_files(pid: int) -> set[str]:
    names = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                names.add(os.path.basename(os.readlink(f"/proc/{pid}/fd/{fd}")))
            except OSError:
                pass
    except OSError:
        pass
    return names


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _alive(pid: int) -> bool:
    """Running (a zombie has finished: it only waits to be reaped by whoever adopted it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture(scope="module")
def slow_corpus(tmp_path_factory) -> Path:
    """Two 2-minute faceless clips: each keeps a worker busy for several seconds (decode + face search)."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed; scripts/setup.sh installs it")
    root = tmp_path_factory.mktemp("slow")
    subprocess.run(["ffmpeg", "-y", "-v", "error", "-f", "lavfi", "-i", "color=c=gray:s=160x120:r=25:d=120",
                    "-f", "lavfi", "-i", "sine=f=300:d=120", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac",
                    "-shortest", str(root / CLIPS[0])], check=True)
    shutil.copy(root / CLIPS[0], root / CLIPS[1])
    return root


@pytest.mark.parametrize("moment", ["starting", "scoring"])
def test_sigkill_of_the_job_takes_its_workers_and_resource_tracker_with_it(slow_corpus, tmp_path, moment) -> None:
    """Killed while its 2 workers are still starting (importing, before they could ask to die with it) or while
    both are scoring a clip: within 5 s no worker and no resource tracker of the job is left."""
    out = tmp_path / "scores.jsonl"
    cli = "import sys\nfrom edge_sync.cli import main\nsys.exit(main())"  # as the edge-sync console script
    job = subprocess.Popen([sys.executable, "-c", cli, "score", str(slow_corpus), "-o", str(out), "--workers", "2"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    tree: dict[int, bytes] = {}
    try:
        deadline = time.monotonic() + 120
        workers: list[int] = []
        while time.monotonic() < deadline and job.poll() is None:  # until both workers are scoring a clip
            workers = [p for p, cmd in _children(job.pid).items() if b"spawn_main" in cmd]
            if len(workers) == 2 and (moment == "starting" or all(_open_files(p) & set(CLIPS) for p in workers)):
                break
            time.sleep(0.02)
        else:
            pytest.fail(f"the job never had 2 workers {moment} (exit {job.poll()}): {job.stderr.read()[-2000:]!r}")
        tree = _children(job.pid)
        trackers = [p for p, cmd in tree.items() if b"resource_tracker" in cmd]
        assert trackers, f"no resource tracker among the job's children: {tree}"

        job.kill()
        job.wait(timeout=10)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(map(_alive, tree)):
            time.sleep(0.05)
        left = {p: tree[p].replace(b"\0", b" ").decode(errors="replace")[:120] for p in tree if _alive(p)}
        assert not left, f"still running {time.monotonic() - deadline + 5:.1f} s after the job was killed: {left}"
    finally:  # never leave them behind, even when the test fails
        if job.poll() is None:
            tree.update(_children(job.pid))
            job.kill()
            job.wait()
        for pid, cmdline in tree.items():
            if _alive(pid) and _cmdline(pid) == cmdline:
                os.kill(pid, signal.SIGKILL)
