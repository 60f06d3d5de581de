#!/usr/bin/env python3
"""Lip-sync offset, live, on a Raspberry Pi (64-bit Raspberry Pi OS): a video file, or a camera + microphone.

Needs only the runtime install (``pip install 'edge-sync[onnxruntime]'`` or ``'edge-sync[litert]'``), never
PyTorch, and an INT8 artifact made on a PC with ``edge-sync export``. Prints one line per second of video with the
offset of that second and the clip offset so far, then the clip's offset and the time each stage took.

Why a loop of its own instead of ``engine.sync_file``: a camera never ends, so frames and samples must flow
through the public pieces as they arrive: ``FaceTracker`` -> mouth crops -> ``LiveSyncer`` (one face followed,
frames wait for their sound) -> ``engine.stream()``. A video file goes through exactly that loop, frame by frame,
so what is checked on a file is what runs live; its clip offset equals ``engine.sync_file`` on the same file
(same segments, same pre-emphasis, same tail).
"""
from __future__ import annotations

import argparse
import json
import queue
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_sync import EdgeSyncError, load
from edge_sync.features.clip import CROP_FOR_PREPROCESSING
from edge_sync.features.faces import FaceTracker
from edge_sync.runtimes.live import LiveFrame, LiveSyncer
from edge_sync.spec import AUDIO_RATE, FRAME_MS, SAMPLES_PER_FRAME, VIDEO_FPS, legacy_av_offset, offset_values

SWITCH_AFTER = VIDEO_FPS  # frames the followed face may be gone before another face is followed


@dataclass
class Second:
    """One printed line: the frames of one second of video that had the followed face."""

    second: int
    frames: int
    offset_frames: int
    probability: float  # mean probability of that offset over the second's frames
    clip_offset_frames: int  # argmax of the segment's frame-averaged distribution so far

    def line(self) -> str:
        part = "" if self.frames == VIDEO_FPS else f"  ({self.frames} frame{'s' * (self.frames > 1)} with the face)"
        return (f"[{self.second:5d} s] offset {self.offset_frames:+3d} frames ({self.offset_frames * FRAME_MS:+5d} ms)"
                f"  p={self.probability:.2f}  clip so far {self.clip_offset_frames:+d}{part}")


@dataclass
class Timing:
    """Wall time per stage, so a device's bottleneck is visible (decode, face tracking, model windows)."""

    decode_s: float = 0.0
    tracking_s: float = 0.0
    window_ms: list[float] = field(default_factory=list)  # stream pushes that ran a model window (MFCC + model)
    total_s: float = 0.0

    def summary(self, frames: int, window_frames: int) -> str:
        w = np.asarray(self.window_ms) if self.window_ms else np.zeros(1)
        rt = frames / VIDEO_FPS / self.total_s if self.total_s else 0.0
        return (f"timing:      {frames} frames ({frames / VIDEO_FPS:.1f} s of video) in {self.total_s:.2f} s = "
                f"{rt:.2f}x real time; decode {1e3 * self.decode_s / max(frames, 1):.1f} ms/frame, face tracking "
                f"{1e3 * self.tracking_s / max(frames, 1):.1f} ms/frame; {len(self.window_ms)} model windows of up to "
                f"{window_frames} frames: median {np.median(w):.1f} ms, p90 {np.percentile(w, 90):.1f} ms")


class LiveSync:
    """Frames and samples in (in any chunks, the microphone ahead or behind), per-second offsets out; follows one
    face through the SDK's LiveSyncer, which keeps memory bounded for a stream of any length."""

    def __init__(self, engine: Any, detect_every: int = 5, hop_frames: int = VIDEO_FPS) -> None:
        self.engine, self.hop = engine, hop_frames
        self.crop = CROP_FOR_PREPROCESSING[engine.contract.video.name]
        self.tracker = FaceTracker(detect_every=detect_every, crops=(self.crop,))  # YuNet, the default
        self.syncer = LiveSyncer(engine, crop=self.crop, hop_frames=hop_frames, switch_after=SWITCH_AFTER)
        self.offsets = offset_values(engine.contract.max_offset)
        self.timing = Timing()
        self._second: tuple[int, np.ndarray, int] | None = None  # second, prob sum, frames
        self._segment: tuple[int, np.ndarray] | None = None  # start frame, prob sum of the segment so far

    # --- input -------------------------------------------------------------------------------------
    def add_audio(self, samples: np.ndarray) -> list[Second]:
        return self._timed(self.syncer.push_audio, np.asarray(samples, np.float32).reshape(-1))

    def add_frame(self, rgb: np.ndarray) -> list[Second]:
        t = time.perf_counter()
        results = self.tracker.push(rgb)
        self.timing.tracking_s += time.perf_counter() - t
        return self._timed(self.syncer.push_faces, results)

    def finish(self) -> list[Second]:
        """End of input: the tracker's last frames, then the open segment (its tail audio padded if missing)."""
        t = time.perf_counter()
        results = self.tracker.finish()
        self.timing.tracking_s += time.perf_counter() - t
        out = self._timed(self.syncer.push_faces, results)
        return out + self._timed(self.syncer.finish) + self._end_second()

    def result(self) -> tuple[int, int, Any]:
        """(track_id, start frame, SyncResult) of the longest segment: the clip-level answer, as FileSync.main."""
        if not self.syncer.segments:
            raise EdgeSyncError(f"no face track of 5+ consecutive frames was found in {self.tracker.num_frames} "
                                "frames; check that a frontal, upright, well-lit face is visible")
        main = self.syncer.result()
        return main.track_id, main.start, main.result

    # --- per-second lines --------------------------------------------------------------------------
    def _timed(self, call: Callable[..., list[LiveFrame]], *args: Any) -> list[Second]:
        """Run a LiveSyncer call; one that emitted frames ran a model window (MFCC + model): time it."""
        t = time.perf_counter()
        frames = call(*args)
        if frames:
            self.timing.window_ms.append(1e3 * (time.perf_counter() - t))
        return self._collect(frames)

    def _collect(self, frames: list[LiveFrame]) -> list[Second]:
        out: list[Second] = []
        for f in frames:
            sec = f.frame // VIDEO_FPS
            if self._second is not None and self._second[0] != sec:
                out += self._end_second()
            if self._second is None:
                self._second = (sec, np.zeros_like(f.probs, np.float64), 0)
            s, acc, n = self._second
            self._second = (s, acc + f.probs, n + 1)
            if self._segment is None or self._segment[0] != f.segment_start:
                self._segment = (f.segment_start, np.zeros_like(f.probs, np.float64))
            self._segment[1][:] += f.probs  # the clip offset so far: this segment's frames
        return out

    def _end_second(self) -> list[Second]:
        if self._second is None:
            return []
        s, acc, n = self._second
        self._second = None
        clip = int(self.offsets[self._segment[1].argmax()]) if self._segment is not None else 0
        return [Second(s, n, int(self.offsets[acc.argmax()]), float(acc.max() / n), clip)]


# --- sources -----------------------------------------------------------------------------------------
def run_file(live: LiveSync, path: str, show: Callable[[Second], None]) -> int:
    """A video file as if it were a camera + microphone: frame by frame, with that frame's 640 samples."""
    from edge_sync.features.media import iter_frames, probe, read_audio

    info = probe(path)
    if not (info.has_video and info.has_audio):
        raise EdgeSyncError(f"{path} needs both a video and an audio stream (has video: {info.has_video}, "
                            f"audio: {info.has_audio})")
    t = time.perf_counter()
    audio = read_audio(path)  # 16 kHz mono, aligned to the first video frame
    frames = iter_frames(path)
    live.timing.decode_s += time.perf_counter() - t
    n = 0
    while True:
        t = time.perf_counter()
        rgb = next(frames, None)
        live.timing.decode_s += time.perf_counter() - t
        if rgb is None:
            break
        lines = live.add_audio(audio[n * SAMPLES_PER_FRAME:(n + 1) * SAMPLES_PER_FRAME]) + live.add_frame(rgb)
        n += 1
        for s in lines:
            show(s)
    for s in live.add_audio(audio[n * SAMPLES_PER_FRAME:]) + live.finish():
        show(s)
    return n


def run_camera(live: LiveSync, camera: str, mic: str | None, seconds: float,
               show: Callable[[Second], None]) -> int:
    """Camera (OpenCV: a USB webcam via V4L2, index or /dev/videoN) + microphone (sounddevice) until Ctrl-C.

    The camera's own rate is resampled to 25 fps by the wall clock, and microphone samples captured before the
    first camera frame are dropped, so both start together. A camera or microphone's own capture latency is not
    known here and shows up as a constant offset: measure it once on a clip known to be in sync.
    """
    import cv2

    try:
        import sounddevice as sd
    except (ImportError, OSError) as exc:  # OSError: the PortAudio library itself is missing
        raise EdgeSyncError(f"live mode needs a microphone library ({exc}): pip install sounddevice and "
                            "sudo apt install libportaudio2") from exc
    cap = cv2.VideoCapture(int(camera) if camera.isdigit() else camera)
    if not cap.isOpened():
        raise EdgeSyncError(f"cannot open camera {camera!r}; list cameras with: v4l2-ctl --list-devices")
    cap.set(cv2.CAP_PROP_FRAME_WIDTH, 640)  # the face detector works at 320 px anyway: spare the Pi the pixels
    cap.set(cv2.CAP_PROP_FRAME_HEIGHT, 480)
    chunks: queue.Queue[np.ndarray] = queue.Queue()
    mic_start: list[float] = []

    def on_audio(data: np.ndarray, _frames: int, _time: Any, status: Any) -> None:
        if not mic_start:
            mic_start.append(time.monotonic() - len(data) / AUDIO_RATE)
        chunks.put(data[:, 0].copy())

    try:
        mic_stream = sd.InputStream(samplerate=AUDIO_RATE, channels=1, dtype="float32",
                                    device=int(mic) if mic and mic.isdigit() else mic,
                                    blocksize=SAMPLES_PER_FRAME, callback=on_audio)
    except Exception as exc:  # sounddevice raises PortAudioError / ValueError for a missing or busy device
        raise EdgeSyncError(f"cannot open microphone {mic!r}: {exc}; list devices with: "
                            "python -m sounddevice") from exc

    def drain(skip: int) -> tuple[list[Second], int]:
        """Hand the queued microphone chunks to ``live``, dropping the first ``skip`` samples."""
        lines: list[Second] = []
        while not chunks.empty():
            data = chunks.get()
            drop = min(skip, len(data))
            skip -= drop
            lines += live.add_audio(data[drop:])
        return lines, skip

    n, t0, skip = 0, None, 0
    try:
        with mic_stream:
            while t0 is None or time.monotonic() - t0 < seconds:
                ok, bgr = cap.read()
                if not ok:
                    raise EdgeSyncError(f"camera {camera!r} stopped delivering frames")
                now = time.monotonic()
                if t0 is None:
                    while not mic_start and time.monotonic() - now < 2:
                        time.sleep(0.005)
                    if not mic_start:
                        raise EdgeSyncError(f"microphone {mic!r} delivers no samples")
                    t0, skip = now, int(round((now - mic_start[0]) * AUDIO_RATE))
                lines, skip = drain(skip)
                rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                while n * FRAME_MS / 1000 <= now - t0:  # repeat or skip frames to hold 25 fps
                    lines += live.add_frame(rgb)
                    n += 1
                for s in lines:
                    show(s)
    except KeyboardInterrupt:
        pass
    finally:
        cap.release()
    for s in drain(skip)[0] + live.finish():
        show(s)
    return n


# --- output ------------------------------------------------------------------------------------------
def plot(seconds: list[Second], clip_offset: int, path: str) -> None:
    """Per-second offsets and their probability over time (matplotlib only when --plot is asked for)."""
    try:
        import matplotlib
    except ImportError as exc:
        raise EdgeSyncError("--plot needs matplotlib: pip install matplotlib (or sudo apt install "
                            "python3-matplotlib)") from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.5))
    dots = ax.scatter([s.second + 0.5 for s in seconds], [s.offset_frames for s in seconds],
                      c=[s.probability for s in seconds], cmap="viridis", vmin=0, vmax=1, label="offset of each second")
    ax.axhline(clip_offset, color="k", ls="--", lw=1, label=f"clip offset {clip_offset:+d}")
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("offset (frames, +: sound late)")
    fig.colorbar(dots, ax=ax, label="probability")
    ax.legend(loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("artifact", help="artifact directory from `edge-sync export` (e.g. student.onnx-int8)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--video", help="a video file with sound (stands in for camera + microphone)")
    src.add_argument("--camera", help="camera index or device (0, /dev/video0): live mode with the microphone")
    p.add_argument("--mic", default=None, help="microphone device name or index (default: the system default)")
    p.add_argument("--seconds", type=float, default=float("inf"), help="stop live mode after this long")
    p.add_argument("--backend", default="auto", help="auto, onnxruntime or litert")
    p.add_argument("--threads", type=int, default=None, help="model threads (default: the backend's choice)")
    p.add_argument("--detect-every", type=int, default=5,
                   help="frames between full face detections (the costliest stage on a Pi; raise it to save CPU)")
    p.add_argument("--json", dest="json_path", help="write the clip result, per-second lines and timings here")
    p.add_argument("--plot", help="write a PNG of the per-second offsets (needs matplotlib)")
    p.add_argument("--quiet", action="store_true", help="no per-second lines, only the summary")
    args = p.parse_args(argv)
    try:
        start = time.perf_counter()
        engine = load(args.artifact, backend=args.backend, threads=args.threads)
        load_s = time.perf_counter() - start
        live = LiveSync(engine, detect_every=args.detect_every)
        seconds: list[Second] = []

        def show(s: Second) -> None:
            seconds.append(s)
            if not args.quiet:
                print(s.line(), flush=True)

        start = time.perf_counter()
        if args.video:
            if not Path(args.video).is_file():
                raise EdgeSyncError(f"{args.video}: no such file")
            frames = run_file(live, args.video, show)
        else:
            frames = run_camera(live, args.camera, args.mic, args.seconds, show)
        live.timing.total_s = time.perf_counter() - start
        track, first, res = live.result()
        window = max(engine.buckets) if engine.buckets else live.hop + 2 * engine.context_frames
        print(f"clip offset: {res.offset_frames:+d} frames ({res.audio_delay_ms:+.0f} ms, sound late if +; "
              f"syncnet_python AV offset {legacy_av_offset(res.offset_frames):+d}), confidence {res.confidence:.3f}, "
              f"{res.frames} frames of face track {track} from frame {first}")
        segment = live.syncer.result()  # its evidence null, read off the artifact's embeddings (sync's rule)
        if segment.unsure_reason:
            print(f"UNSURE:      {segment.unsure_reason}: the offset may be noise")
        print(f"artifact:    {Path(args.artifact).name} on {engine.backend}, loaded in {load_s:.2f} s")
        print(live.timing.summary(frames, window))
        if args.json_path:
            Path(args.json_path).write_text(json.dumps({
                "artifact": str(args.artifact), "backend": engine.backend, "source": args.video or args.camera,
                "frames": frames, "offset_frames": res.offset_frames, "audio_delay_ms": res.audio_delay_ms,
                "av_offset": res.av_offset, "confidence": round(res.confidence, 4),
                "low_evidence": segment.unsure_reason is not None, "unsure_reason": segment.unsure_reason,
                "evidence_ratio": None if segment.evidence_ratio is None else round(segment.evidence_ratio, 4),
                "track_id": track,
                "start_frame": first, "track_frames": res.frames, "seconds": [asdict(s) for s in seconds],
                "timing": {"load_s": round(load_s, 3), "total_s": round(live.timing.total_s, 3),
                           "decode_s": round(live.timing.decode_s, 3), "tracking_s": round(live.timing.tracking_s, 3),
                           "window_frames": window, "window_ms": [round(w, 2) for w in live.timing.window_ms]},
            }, indent=1))
        if args.plot:
            plot(seconds, res.offset_frames, args.plot)
    except (EdgeSyncError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
