"""examples/embed/service.py for real: started in a subprocess on a free local port with one artifact, scoring
talking-face clips of different planted offsets sent concurrently (raw upload, multipart form, JSON path) and
giving the same answers as one at a time; bad requests get a 4xx and a message and the service stays up;
SIGTERM stops it with exit status 0."""
from __future__ import annotations

import json
import re
import selectors
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

pytest.importorskip("onnxruntime", reason="pip install 'edge-sync[onnxruntime]'")

ROOT = Path(__file__).resolve().parents[2]
SERVICE = ROOT / "examples" / "embed" / "service.py"
ARTIFACT = ROOT / "edge_sync" / "weights" / "student.onnx-fp32"  # made by edge-sync export --target onnx
OFFSETS = (-6, 0, 5)
TIMING = ("seconds", "queue_seconds")
SENTENCES = ("Please check that the sound and the lips agree.", "Seven wizards quietly judge the boxing match.",
             "The quick brown fox jumps over the lazy dog.")


@dataclass
class Service:
    url: str
    proc: subprocess.Popen
    folder: Path


def request(url: str, data: bytes | None = None, headers: dict[str, str] | None = None,
            method: str | None = None) -> tuple[int, dict[str, Any]]:
    """(status, JSON body) for any status: the service answers errors in JSON too."""
    req = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        with err:
            return err.code, json.loads(err.read())


def multipart(field: str, filename: str, data: bytes) -> tuple[bytes, str]:
    boundary = "edge-sync-test-boundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\n"
            f"Content-Type: video/mp4\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def without_timing(result: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in result.items() if k not in TIMING + ("path",)}
    out["tracks"] = [{k: v for k, v in t.items() if k not in TIMING} for t in result["tracks"]]
    return out


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """The clips, in the folder the service may read by path."""
    from edge_sync.data.talking_photo import make_talking_photo_clip

    root = tmp_path_factory.mktemp("clips")
    for offset, text in zip(OFFSETS, SENTENCES):
        make_talking_photo_clip(root / f"talk_{offset:+d}.mp4", text, offset_frames=offset, seed=offset + 20)
    return root


@pytest.fixture(scope="module")
def service(folder) -> Iterator[Service]:
    proc = subprocess.Popen([sys.executable, str(SERVICE), "--artifact", str(ARTIFACT), "--port", "0",
                             "--workers", "2", "--allow-dir", str(folder), "--max-upload-mb", "5"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with selectors.DefaultSelector() as sel:  # wait for the "listening on" line, at most a minute
        sel.register(proc.stdout, selectors.EVENT_READ)
        ready = sel.select(timeout=60)
    line = proc.stdout.readline() if ready else ""
    match = re.match(r"listening on (http://127\.0\.0\.1:\d+) \(student\.onnx-fp32 on onnxruntime, 2 workers\)", line)
    if match is None:
        proc.kill()
        pytest.fail(f"the service did not start: {line!r} {proc.stderr.read()[-2000:]}")
    yield Service(match.group(1), proc, folder)
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_health_names_the_loaded_artifact(service):
    status, body = request(service.url + "/health")
    assert status == 200 and body["status"] == "ok"
    assert (body["name"], body["target"], body["precision"], body["backend"]) == ("student", "onnx", "fp32",
                                                                                  "onnxruntime")
    assert body["workers"] == 2 and body["busy"] == 0


def test_concurrent_requests_equal_sequential_ones_and_find_the_planted_offsets(service):
    clips = {k: service.folder / f"talk_{k:+d}.mp4" for k in OFFSETS}
    sequential = {}
    for k, path in clips.items():
        status, body = request(service.url + "/sync?frames=1", path.read_bytes(),
                               {"Content-Type": "video/mp4", "X-Filename": path.name})
        assert status == 200, body
        assert body["path"] == path.name and abs(body["offset_frames"] - k) <= 1, body
        assert len(body["frames"]) == body["num_frames"] > 50
        sequential[k] = without_timing(body)

    def upload(k: int) -> dict[str, Any]:
        return request(service.url + "/sync?frames=1", clips[k].read_bytes(), {"Content-Type": "video/mp4"})[1]

    def by_path(k: int) -> dict[str, Any]:
        return request(service.url + "/sync?frames=1", json.dumps({"path": clips[k].name}).encode(),
                       {"Content-Type": "application/json"})[1]

    def form(k: int) -> dict[str, Any]:
        body, ctype = multipart("file", clips[k].name, clips[k].read_bytes())
        return request(service.url + "/sync?frames=1", body, {"Content-Type": ctype})[1]

    jobs = [(k, send) for send in (upload, by_path) for k in OFFSETS] + [(OFFSETS[0], form)]
    with ThreadPoolExecutor(len(jobs)) as pool:
        answers = list(pool.map(lambda job: (job[0], job[1](job[0])), jobs))
    for k, body in answers:
        assert "error" not in body, body
        assert without_timing(body) == sequential[k]
    status, health = request(service.url + "/health")
    assert health["served"] == len(OFFSETS) + len(jobs) and health["failed"] == 0
    assert health["peak_busy"] == 2 and health["busy"] == 0  # requests overlapped, never more than --workers


@pytest.fixture(scope="module")
def bad_clips(folder, tmp_path_factory) -> dict[str, Path]:
    """Clips that decode but cannot be scored: no face, no soundtrack (outside the allowed folder)."""
    from edge_sync.data.talking_photo import write_video

    root = tmp_path_factory.mktemp("bad")
    t = np.arange(48_000) / 16_000
    wall = np.full((75, 180, 320, 3), 128, np.uint8)
    return {"faceless": write_video(root / "wall.mp4", wall, (0.2 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)),
            "silent": write_video(root / "silent.mp4", wall, None), "outside": root / "wall.mp4"}


def test_bad_requests_get_a_4xx_with_a_message_and_the_service_stays_up(service, bad_clips):
    url, js = service.url, {"Content-Type": "application/json"}
    form_without_file = (b"--b\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\n1\r\n--b--\r\n",
                         {"Content-Type": "multipart/form-data; boundary=b"})
    cases = [
        (request(url + "/sync", b"not a video at all", {"X-Filename": "junk.mp4"}), 422,
         "cannot open junk.mp4 as audio/video"),
        (request(url + "/sync", bad_clips["faceless"].read_bytes()), 422, "no face track of 5+ consecutive frames"),
        (request(url + "/sync", bad_clips["silent"].read_bytes()), 422, "has no audio stream"),
        (request(url + "/sync", b"", {"Content-Type": "video/mp4"}), 400, "the body is empty"),
        (request(url + "/sync", b"x" * 100, {"Content-Length": str(6 << 20)}), 413, "more than this service takes"),
        (request(url + "/sync", b"{\"path\": ", js), 400, "not valid JSON"),
        (request(url + "/sync", b"{\"file\": \"talk_+5.mp4\"}", js), 400, 'send JSON {"path"'),
        (request(url + "/sync", json.dumps({"path": "missing.mp4"}).encode(), js), 404, "no such file: missing.mp4"),
        (request(url + "/sync", json.dumps({"path": str(bad_clips["outside"])}).encode(), js), 403,
         "outside the folder this service may read"),
        (request(url + "/sync", json.dumps({"path": "../" * 8 + "etc/passwd"}).encode(), js), 403, "outside"),
        (request(url + "/sync", *form_without_file), 400, "the form has no file field"),
        (request(url + "/sync"), 405, "POST the clip to /sync"),
        (request(url + "/sync", method="DELETE"), 405, "no route DELETE"),
        (request(url + "/nowhere"), 404, "no route GET /nowhere"),
    ]
    for (status, body), want, message in cases:
        assert status == want and message in body["error"] and body["status"] == want, (status, body, message)
        assert "/tmp/edge-sync-" not in body["error"]  # uploads are named as the client named them
    status, health = request(url + "/health")
    assert status == 200 and health["failed"] == len(cases) and health["busy"] == 0
    assert service.proc.poll() is None


def test_sigterm_stops_it_cleanly(service):
    service.proc.send_signal(signal.SIGTERM)
    out, err = service.proc.communicate(timeout=30)
    assert service.proc.returncode == 0, err[-2000:]
    assert re.search(r"stopped: \d+ served, \d+ failed", out), out
    assert "Traceback" not in err
