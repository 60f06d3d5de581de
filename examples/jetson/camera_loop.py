#!/usr/bin/env python3
"""Live lip sync from a USB camera and a microphone: OpenCV capture + arecord, no DeepStream or GStreamer.

    python3 camera_loop.py ARTIFACT                          # /dev/video0 + the default ALSA microphone
    python3 camera_loop.py ARTIFACT --camera 1 --mic plughw:2,0 --max-seconds 30
    python3 camera_loop.py ARTIFACT --video talk.mp4         # a file stands in for camera and microphone

Each camera frame goes through edge-sync's face tracker (mouth crops) into the SDK's ``LiveSyncer``, which
follows one face, lets frames wait for their microphone samples and feeds ``engine.stream()``; it returns
per-frame results as soon as the frames after them have arrived (hop + receptive field: ~2.9 s for the bundled
student). The loop prints the offset over the
last 2 s every --every frames, and the whole run's offset at the end. With --video, the frames come through
the same cv2.VideoCapture and the file's soundtrack stands in for the microphone, so the result equals
``engine.sync_file`` on that file (up to the colour conversion: VideoCapture's swscale and the SDK's OpenCV I420
conversion differ by a few pixel levels).

Live caveat: camera and microphone start and buffer independently, so a live offset includes the capture
chain's own delay; measure it once on a source known to be in sync and subtract it.
Exit status: 0 ok, 1 failed, 2 bad arguments, 3 TensorRT not importable.
"""
from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from jetson_common import EXIT_FAILED, fail, open_engine

PROG = "camera_loop.py"
FPS, RATE = 25, 16_000  # the model contract's video and audio rates (edge_sync.spec)
SPF = RATE // FPS  # 640 samples per video frame
TAIL = 240  # samples after a frame that its last MFCC window reads
MAX_MIC_LAG = 200  # frames the camera may run ahead of the microphone before the loop stops with an error
MIN_FRAMES = 5  # shortest face segment worth a result (as Engine.sync_file)
RECENT = 50  # frames behind the "last 2 s" offset


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=PROG, description="Live audio/video offset from a camera and a microphone.")
    p.add_argument("artifact", type=Path, help="artifact folder (a tensorrt one holding model.plan)")
    p.add_argument("--backend", default="tensorrt", choices=("tensorrt", "onnxruntime", "auto"),
                   help="default: %(default)s; onnxruntime runs the artifact's model.onnx on the CPU")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--camera", default="0", help="V4L2 camera index or /dev/videoN, or a network camera URL "
                                                   "(default: %(default)s)")
    src.add_argument("--video", type=Path, help="a video file standing in for the camera; its soundtrack stands in "
                                                "for the microphone")
    p.add_argument("--mic", default="default", help="ALSA capture device for arecord -D (list: arecord -l)")
    p.add_argument("--mic-command", help="any command writing 16 kHz mono s16le to stdout (replaces arecord)")
    p.add_argument("--hop", type=int, default=25, help="frames per model call (default: %(default)s)")
    p.add_argument("--every", type=int, default=25, help="print a status line every N frames (0: never)")
    p.add_argument("--max-seconds", type=float, default=0.0, help="stop after this much video (0: until the end "
                                                                  "of the file, or Ctrl-C)")
    p.add_argument("--json", action="store_true", help="final result as one JSON object on stdout (status lines "
                                                       "go to stderr)")
    args = p.parse_args(argv)
    if args.hop < 1 or args.every < 0 or args.max_seconds < 0:
        p.error(f"need --hop >= 1, --every >= 0, --max-seconds >= 0; got {args.hop}, {args.every}, "
                f"{args.max_seconds}")
    if args.video is not None and not args.video.is_file():
        p.error(f"--video {args.video}: no such file")
    return args


# --- sources ---------------------------------------------------------------------------------------------
def open_capture(args: argparse.Namespace) -> Any:
    import cv2

    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)  # a missing camera is reported below, once
    if args.video is not None:
        cap = cv2.VideoCapture(str(args.video))
    else:
        if args.camera.isdigit() or args.camera.startswith("/dev/"):  # a V4L2 (USB) camera
            cap = cv2.VideoCapture(int(args.camera) if args.camera.isdigit() else args.camera, cv2.CAP_V4L2)
            cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*"MJPG"))  # USB cameras reach 25+ fps in MJPG
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, 640)
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, 480)
            cap.set(cv2.CAP_PROP_FPS, FPS)
        else:  # a network camera's URL (rtsp://, http://), read by OpenCV's FFmpeg
            cap = cv2.VideoCapture(args.camera)
    if not cap.isOpened():
        what = args.video if args.video is not None else f"camera {args.camera}"
        fail(PROG, f"OpenCV cannot open {what}" + ("" if args.video else "; list cameras with v4l2-ctl "
                                                   "--list-devices (CSI cameras need GStreamer: use a USB one)"))
    return cap


def frames_at_25fps(cap: Any, live: bool) -> Iterator[np.ndarray]:
    """RGB frames at the contract's 25 fps: each frame fills the 40 ms ticks it is nearest to, so a 30 fps
    camera drops every sixth frame and a 15 fps one repeats frames (timestamps: wall clock live, else the
    file's frame rate)."""
    import cv2

    fps_in = cap.get(cv2.CAP_PROP_FPS) if not live else 0.0
    fps_in = fps_in if fps_in and fps_in > 0 else FPS
    t0: float | None = None
    index = tick = 0
    while True:
        ok, bgr = cap.read()
        if not ok:
            return
        now = time.monotonic()
        t0 = now if t0 is None else t0
        ts = now - t0 if live else index / fps_in
        index += 1
        rgb = None
        while tick / FPS <= ts + 0.5 / FPS:
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB) if rgb is None else rgb
            tick += 1
            yield rgb


class FileMic:
    """The --video file's soundtrack (aligned to its first frame), handed out in order as a microphone would."""

    def __init__(self, path: Path) -> None:
        from edge_sync.features.media import read_audio

        self.samples, self.pos = read_audio(path), 0

    def read(self, upto: int) -> np.ndarray:
        chunk = self.samples[self.pos:max(self.pos, upto)]
        self.pos += len(chunk)
        return chunk

    def start(self) -> None:
        pass

    def close(self) -> None:
        pass


class PipeMic:
    """16 kHz mono int16 from a capture process, read by a thread so a slow model call never overruns the card."""

    def __init__(self, command: list[str]) -> None:
        self.command, self.chunks, self.lock = command, [], threading.Lock()
        try:
            self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        except FileNotFoundError:
            fail(PROG, f"{command[0]} not found: install alsa-utils (arecord) or pass --mic-command")
        self.reader = threading.Thread(target=self._pump, daemon=True)
        self.reader.start()

    def _pump(self) -> None:
        while chunk := self.proc.stdout.read(SPF * 2):
            with self.lock:
                self.chunks.append(np.frombuffer(chunk[:len(chunk) // 2 * 2], "<i2"))

    def start(self) -> None:
        """Forget what was recorded before the first camera frame, so sample 0 goes with frame 0."""
        with self.lock:
            self.chunks.clear()

    def read(self, upto: int) -> np.ndarray:
        with self.lock:
            chunks, self.chunks = self.chunks, []
        if not chunks and self.proc.poll() not in (None, 0):
            err = self.proc.stderr.read().decode(errors="replace").strip().splitlines()
            fail(PROG, f"microphone command {shlex.join(self.command)} exited {self.proc.returncode}: "
                       f"{err[-1] if err else 'no message'}")
        return np.concatenate(chunks).astype(np.float32) / 32768.0 if chunks else np.zeros(0, np.float32)

    def close(self) -> None:
        self.proc.terminate()


# --- sync ------------------------------------------------------------------------------------------------
def recent_offset(recent: deque, max_offset: int) -> tuple[int, float] | None:
    """Offset and its mean probability over the last RECENT emitted frames."""
    if not recent:
        return None
    from edge_sync.spec import offset_values

    mean = np.mean([f.probs for f in recent], axis=0)
    return int(offset_values(max_offset)[mean.argmax()]), float(mean.max())


def status(n: int, live: Any, recent: deque, started: float) -> str:
    latest = recent_offset(recent, live.engine.contract.max_offset)
    last = recent[-1].frame if recent else None
    speed = n / FPS / max(time.perf_counter() - started, 1e-9)
    behind = n - live.audio_end // SPF
    head = f"[{n / FPS:6.1f} s] frame {n:5d}" + (f" (sound {behind} frames behind)" if behind > 0 else "")
    if latest is None:
        return f"{head}: waiting for a face and the receptive field ({speed:.1f}x real time)"
    return (f"{head}: last 2 s offset {latest[0]:+d} frames ({latest[0] * 40:+d} ms), p={latest[1]:.2f}; results up "
            f"to frame {last} ({n - 1 - last} frames behind); {speed:.1f}x real time")


def run(engine: Any, frames: Iterator[np.ndarray], mic: Any, args: argparse.Namespace) -> tuple[int, Any, Any]:
    """Capture loop: frames -> face tracker -> LiveSyncer, the microphone's samples alongside."""
    from edge_sync.features.clip import CROP_FOR_PREPROCESSING
    from edge_sync.features.faces import FaceTracker
    from edge_sync.runtimes.live import LiveSyncer

    crop = CROP_FOR_PREPROCESSING[engine.contract.video.name]
    tracker = FaceTracker(detect_every=5, crops=(crop,))  # YuNet, the default detector
    live = LiveSyncer(engine, crop=crop, hop_frames=args.hop, switch_after=tracker.max_gap, min_frames=MIN_FRAMES,
                      max_audio_lag=MAX_MIC_LAG)
    recent: deque = deque(maxlen=RECENT)
    out = sys.stderr if args.json else sys.stdout
    limit = int(args.max_seconds * FPS) or None
    started, n = time.perf_counter(), 0
    try:
        for n, rgb in enumerate(frames, start=1):
            if n == 1:
                mic.start()
            recent.extend(live.push_audio(mic.read(n * SPF + TAIL)))
            recent.extend(live.push_faces(tracker.push(rgb)))
            if args.every and n % args.every == 0:
                print(status(n, live, recent, started), file=out, flush=True)
            if limit is not None and n >= limit:
                break
    except KeyboardInterrupt:
        print(f"stopped at frame {n}", file=out)
    live.push_faces(tracker.finish())
    live.finish()
    return n, live, tracker


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    engine = open_engine(PROG, args.artifact, args.backend)
    from edge_sync.errors import EdgeSyncError

    live = args.video is None
    try:  # the microphone first: what it records before the first frame is dropped (PipeMic.start)
        mic = FileMic(args.video) if not live else PipeMic(
            shlex.split(args.mic_command) if args.mic_command else
            ["arecord", "-q", "-D", args.mic, "-t", "raw", "-f", "S16_LE", "-r", str(RATE), "-c", "1"])
    except EdgeSyncError as exc:
        fail(PROG, str(exc))
    try:
        cap = open_capture(args)
    except SystemExit:
        mic.close()
        raise
    started = time.perf_counter()
    try:
        n, syncer, tracker = run(engine, frames_at_25fps(cap, live), mic, args)
    except EdgeSyncError as exc:  # MicrophoneLagError too: the camera ran far ahead of the sound
        fail(PROG, str(exc))
    finally:
        mic.close()
        cap.release()
    if not syncer.segments:
        fail(PROG, f"no face followed for {MIN_FRAMES}+ consecutive frames in {n} frames; check that a frontal, "
                   "upright, well-lit face is visible", EXIT_FAILED)
    main_segment = syncer.result()
    track_id, start, result = main_segment.track_id, main_segment.start, main_segment.result
    segments = len(syncer.segments)
    source = str(args.video) if args.video is not None else f"camera {args.camera} + mic {args.mic_command or args.mic}"
    seconds = round(time.perf_counter() - started, 3)  # the whole loop: capture, faces, MFCC, model
    reason = main_segment.unsure_reason  # its evidence null, read off the artifact's embeddings (sync's rule)
    if args.json:
        ratio = main_segment.evidence_ratio
        print(json.dumps({"source": source, **result.to_dict(per_frame=False), "seconds": seconds,
                          "low_evidence": reason is not None, "unsure_reason": reason,
                          "evidence_ratio": None if ratio is None else round(ratio, 4),
                          "track_id": track_id, "start_frame": start, "frames_read": n, "segments": segments,
                          "frames_without_face": len(tracker.frames_without_face())}))
    else:
        print(f"result: {source}: offset {result.offset_frames:+d} frames ({result.audio_delay_ms:+.0f} ms, sound "
              f"late if +; syncnet_python AV offset {result.av_offset:+d}), confidence {result.confidence:.3f}, "
              f"{result.frames} frames from frame {start} ({segments} segment(s), {n} frames read), "
              f"backend {engine.backend}, {seconds:.1f} s ({n / FPS / max(seconds, 1e-9):.1f}x real time)")
        if reason:
            print(f"UNSURE: {reason}: the offset may be noise")
    return 0


if __name__ == "__main__":
    sys.exit(main())
