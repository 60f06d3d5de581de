"""Decode any audio/video file into the tensor contract's rates: 25 fps RGB frames and 16 kHz mono audio.

Sync models measure offsets of 40 ms, so this module's real job is keeping audio and video on one
clock. Everything here is driven by decoded timestamps, never by frame counts or container rates:

* video is resampled to a constant ``fps`` by picking, for output frame ``i``, the source frame whose
  presentation time is nearest to ``t0 + i / fps`` (``t0`` = first decoded video frame), which handles
  24 / 29.97 / 50 / 60 fps and variable-frame-rate phone recordings alike;
* audio sample 0 is put at ``t0`` too (zero-padded or trimmed), so stream start offsets, edit lists and
  encoder priming (AAC, Opus pre-skip) do not turn into a fake lip-sync offset; timestamp gaps inside
  the audio stream are filled with silence for the same reason.

Timestamps come from the file, so filling gaps by them could cost any amount of memory or time: a 10-hour
jump in the audio of a 250 KB file once became 2.4 GB of silence, one in the video 900,000 repeated frames.
:class:`DecodeLimits` bounds duration, gaps, frame and sample counts and frame size, checked before
anything is allocated for them, so nothing here allocates in proportion to a timestamp.

Only numpy and PyAV (FFmpeg) are used, so device apps can decode without torch, scipy or OpenCV.
Every failure a user can hit with a bad file is a :class:`~edge_sync.errors.MediaError` with a
one-line message that says what to do; raw PyAV exceptions never escape.
"""
from __future__ import annotations

import heapq
import logging
import math
import os
import re
from collections import deque
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable

import av
import cv2
import numpy as np

from edge_sync.errors import MediaError
from edge_sync.spec import AUDIO_RATE, SAMPLES_PER_FRAME, VIDEO_FPS

__all__ = ["DecodeLimits", "MediaInfo", "Media", "probe", "iter_frames", "read_audio", "load_media"]

log = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]

# Audio timestamp jumps larger than this (half a video frame) are treated as gaps and filled with
# silence; smaller ones are container rounding (Matroska stores milliseconds) and are ignored.
_AUDIO_GAP_TOLERANCE_S = 0.5 / VIDEO_FPS
# A stream whose data ends this much before its header says it should is reported as truncated.
_TRUNCATION_FRACTION = 0.9
_TRUNCATION_SLACK_S = 0.5

_REENCODE_HINT = "re-encode it, e.g. ffmpeg -i IN -c:v libx264 -c:a aac OUT.mp4"


@dataclass(frozen=True)
class MediaInfo:
    """What a file holds, read from its headers (plus one decoded frame for the display orientation).

    ``video_fps`` is the source's average rate, not the rate frames are returned at; ``width`` and
    ``height`` are in display orientation (after any rotation stored in the file), like the frames.
    ``duration_s`` is 0.0 when the container does not say.
    """

    path: str
    container: str
    duration_s: float
    has_video: bool
    has_audio: bool
    video_fps: float | None
    width: int | None
    height: int | None
    audio_rate: int | None
    audio_channels: int | None


@dataclass
class Media:
    """A decoded clip in contract form: frames and audio cover exactly the same time span."""

    frames: np.ndarray  # [T, H, W, 3] uint8 RGB at ``fps``
    audio: np.ndarray  # [T * SAMPLES_PER_FRAME] float32 mono in [-1, 1] at ``sample_rate``
    fps: int
    sample_rate: int
    info: MediaInfo

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])


# --- limits ------------------------------------------------------------------------------------------
_LIMIT_HOURS = 3


@dataclass(frozen=True)
class DecodeLimits:
    """What decoding one file may cost; past a limit decoding stops with a one-line MediaError naming it.

    Each is checked before the memory or time it bounds is spent, because a few bytes of timestamps can ask
    for hours of silence or repeated frames. Defaults fit any real talking-head recording:

    * ``max_duration_s`` (3 h): how far either stream may run past its start, by timestamps;
    * ``max_gap_s`` (10 s): the longest timestamp jump filled (audio with silence, video by repeating the
      last frame), the audio's late start after the first video frame, and the last frame's duration;
    * ``max_frames`` (270,000 = 3 h at 25 fps): output frames at the requested fps;
    * ``max_pixels`` (7680 x 4320, an 8K frame): pixels per decoded frame, read from the header first;
    * ``max_samples`` (172.8 M = 3 h at 16 kHz, 691 MB as float32): output audio samples at the requested rate.

    Pass ``limits=DecodeLimits(...)`` to the readers; where no argument reaches them (the CLI,
    ``Engine.sync_file``) the defaults come from ``EDGE_SYNC_MAX_GAP_S`` and the like (see :meth:`from_env`).
    Headers' declared durations are not checked: gap files declare their gap, so the decoded timestamps decide.
    """

    max_duration_s: float = _LIMIT_HOURS * 3600.0
    max_gap_s: float = 10.0
    max_frames: int = _LIMIT_HOURS * 3600 * VIDEO_FPS
    max_pixels: int = 7680 * 4320
    max_samples: int = _LIMIT_HOURS * 3600 * AUDIO_RATE

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
                raise ValueError(f"DecodeLimits.{f.name} must be a finite positive number, got {value!r}")

    @staticmethod
    def env_name(name: str) -> str:
        """The environment variable that sets limit ``name``: max_gap_s -> EDGE_SYNC_MAX_GAP_S."""
        return f"EDGE_SYNC_{name.upper()}"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> DecodeLimits:
        """The defaults, with each limit whose ``EDGE_SYNC_<NAME>`` variable is set taken from it."""
        env = os.environ if environ is None else environ
        given: dict[str, float | int] = {}
        for f in fields(cls):
            raw = env.get(cls.env_name(f.name), "").strip()
            if not raw:
                continue
            try:
                value = float(raw)
            except ValueError:
                raise ValueError(f"{cls.env_name(f.name)}={raw!r} is not a number; set a positive number such as "
                                 f"{f.default:g} (the default) or unset it") from None
            given[f.name] = round(value) if isinstance(f.default, int) and math.isfinite(value) else value
        return cls(**given)


def _limits(limits: DecodeLimits | None) -> DecodeLimits:
    if limits is None:
        return DecodeLimits.from_env()
    if not isinstance(limits, DecodeLimits):
        raise TypeError(f"limits must be a DecodeLimits or None, got {type(limits).__name__}")
    return limits


def _headroom(x: float) -> int:
    """``x`` plus 10%, rounded up to two significant digits: a limit to suggest that the rest of the file fits too."""
    x = max(x * 1.1, 1.0)
    step = 10 ** max(math.floor(math.log10(x)) - 1, 0)
    return math.ceil(x / step) * step


def _declared_seconds(container: Any, stream: Any) -> float:
    """How long the file says ``stream`` (else the container) runs, 0.0 where it does not say. Why: a limit is
    found passed part-way through the file; the value to suggest must fit the rest of it too."""
    if stream is not None and stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    return float(container.duration) / 1e6 if container.duration else 0.0


def _past_limit(p: Path, what: str, limits: DecodeLimits, **needed: float) -> MediaError:
    """One line: what the file asks for, the limit it passes (the first of ``needed``) and how to raise it.

    ``needed`` also names what the other limits would have to be once the first is raised (a 10 h gap also
    needs 10 h of duration), so that following the advice once is enough.
    """
    name = next(iter(needed))
    over = {k: _headroom(v) for k, v in needed.items() if k == name or v > getattr(limits, k)}
    env = " ".join(f"{DecodeLimits.env_name(k)}={v}" for k, v in over.items())
    args = ", ".join(f"{k}={v}" for k, v in over.items())
    return MediaError(f"{p}: {what}, past the limit {name}={getattr(limits, name):g}; if the file is right, raise "
                      f"{'it' if len(over) == 1 else 'them'} with {env} or DecodeLimits({args})")


def _check_pixels(p: Path, width: int | None, height: int | None, limits: DecodeLimits) -> None:
    """Before a frame is converted to RGB (3 bytes a pixel), or decoded at all where the header tells its size."""
    if width and height and width * height > limits.max_pixels:
        raise _past_limit(p, f"its video frames are {width}x{height} ({width * height} pixels)", limits,
                          max_pixels=width * height)


# --- finding videos ----------------------------------------------------------------------------
# every container FFmpeg reads that people keep talking-head video in (folders of clips, corpora)
VIDEO_EXTENSIONS: tuple[str, ...] = (".mp4", ".m4v", ".mkv", ".avi", ".mov", ".webm", ".mpg", ".mpeg", ".flv",
                                     ".wmv", ".ts", ".3gp")


def find_videos(root: Path, extensions: tuple[str, ...] = VIDEO_EXTENSIONS, exclude: Path | None = None) -> list[Path]:
    """Video files anywhere under ``root``, sorted so the dataset is the same on every machine.

    Hidden files and folders (``.git``, ``.cache``...) and anything under ``exclude`` (the cache) are ignored.
    """
    exts = {e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions}
    exclude = exclude.resolve() if exclude is not None else None
    out = []
    for p in root.rglob("*"):
        rel = p.relative_to(root)
        if any(part.startswith(".") for part in rel.parts) or p.suffix.lower() not in exts or not p.is_file():
            continue
        if exclude is not None and exclude in p.resolve().parents:
            continue
        out.append(p)
    return sorted(out, key=lambda p: p.relative_to(root).as_posix())


# --- opening and errors -----------------------------------------------------------------------------
def _check_path(path: PathLike) -> Path:
    """Fail early with a specific message for the mistakes FFmpeg would report cryptically."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or pathlib.Path, got {type(path).__name__}")
    p = Path(path)
    if not p.exists():
        raise MediaError(f"media file not found: {p}; check the path")
    if p.is_dir():
        raise MediaError(f"{p} is a directory, not a media file; pass one of the video or audio files inside it")
    if p.stat().st_size == 0:
        raise MediaError(f"{p} is empty (0 bytes); the export or download did not finish, make the file again")
    return p


def _looks_like_mp4(p: Path) -> bool:
    """ISO-BMFF files start with a box whose type is 'ftyp' (or a free/wide/mdat box before it)."""
    try:
        with open(p, "rb") as f:
            head = f.read(12)
    except OSError:
        return False
    return len(head) >= 8 and head[4:8] in (b"ftyp", b"mdat", b"wide", b"free", b"moov")


def _open(p: Path) -> Any:
    """av.open with every FFmpeg failure turned into an actionable MediaError."""
    try:
        return av.open(str(p), mode="r")
    except av.error.PermissionError as err:
        raise MediaError(f"cannot read {p}: permission denied; check the file's permissions") from err
    except av.FFmpegError as err:
        if _looks_like_mp4(p):
            raise MediaError(
                f"{p} looks like an MP4/MOV but cannot be opened ({_short(err)}): its index (moov atom) is "
                "missing or damaged, so the file is truncated or was never finalised; re-download or re-record it"
            ) from err
        raise MediaError(
            f"cannot open {p} as audio/video ({_short(err)}): it is not a supported media file, or it is "
            f"corrupt or truncated; {_REENCODE_HINT}") from err


@contextmanager
def _opened(p: Path) -> Iterator[Any]:
    container = _open(p)
    try:
        yield container
    finally:
        container.close()


def _short(err: BaseException) -> str:
    """FFmpeg errors as one short line, without the errno prefix PyAV adds."""
    msg = re.sub(r"^\[Errno -?\d+\]\s*", "", str(err)).strip()
    return msg.splitlines()[0] if msg else type(err).__name__


@contextmanager
def _decode_guard(p: Path, kind: str, where: Callable[[], float | None]) -> Iterator[None]:
    """Decode/demux errors in the middle of a file become MediaError naming the time they hit."""
    try:
        yield
    except av.FFmpegError as err:
        t = where()
        at = f" near t={t:.2f} s" if t is not None else ""
        raise MediaError(
            f"{p} is corrupt or truncated: decoding its {kind} failed{at} ({_short(err)}); "
            f"re-download the file or {_REENCODE_HINT}") from err


def _video_stream(container: Any) -> Any | None:
    """The first real video stream; cover art (attached pictures in mp3/m4a) is not video."""
    for s in container.streams.video:
        if not (int(s.disposition) & int(av.stream.Disposition.attached_pic)):
            return s
    return None


def _audio_stream(container: Any) -> Any | None:
    """The audio stream a player plays: FFmpeg's pick (the default one where a file marks it, e.g. a dubbed film's
    main track after a silent or commentary one), else the first."""
    if not container.streams.audio:
        return None
    best = container.streams.best("audio")
    return best if best is not None else container.streams.audio[0]


def _no_stream(p: Path, kind: str) -> MediaError:
    if kind == "audio":
        return MediaError(
            f"{p} has no audio stream, and sync needs the sound track; use a recording with audio or mux it in: "
            "ffmpeg -i VIDEO -i AUDIO -map 0:v -map 1:a -c:v copy -c:a aac OUT.mp4")
    return MediaError(
        f"{p} has no video stream, and sync needs the picture; pass the video file, not an audio-only file")


def _declared_end(stream: Any) -> float | None:
    """When the header says the stream ends (seconds), or None if it does not say."""
    start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
    if stream.duration is not None and stream.duration > 0:
        return start + float(stream.duration * stream.time_base)
    tag = stream.metadata.get("DURATION") or stream.metadata.get("duration")  # Matroska per-track tag
    if tag:
        m = re.fullmatch(r"(\d+):(\d+):(\d+(?:\.\d+)?)", tag.strip())
        if m:
            return start + int(m[1]) * 3600 + int(m[2]) * 60 + float(m[3])
    return None


def _check_not_truncated(p: Path, kind: str, stream: Any, data_end: float) -> None:
    """A file cut short still demuxes; compare where its data ends with what its header promised."""
    declared = _declared_end(stream)
    if declared is not None and data_end < declared * _TRUNCATION_FRACTION - _TRUNCATION_SLACK_S:
        raise MediaError(
            f"{p} is truncated: its header declares {declared:.2f} s of {kind} but the data ends at "
            f"{data_end:.2f} s; re-download or re-export the file")


# FFmpeg's codes for the frames OpenCV's I420 conversion reads the same way swscale does: BT.601 matrix (or none
# stated, which swscale also reads as BT.601) in limited (or unstated) range
_BT601_SPACES = {2, 5, 6}  # unspecified, BT470BG, SMPTE170M
_LIMITED_RANGES = {0, 1}  # unspecified, MPEG


def _fast_rgb(frame: Any, staging: list[np.ndarray] | None = None) -> np.ndarray | None:
    """The common case, 4:2:0 BT.601 limited range, through OpenCV: ~6x faster than swscale's rgb24 (5.6 vs
    0.9 ms for 640x360 here) and within a few levels of it (chroma upsampling and rounding differ); None where
    OpenCV would read the colours differently (full range, BT.709, other layouts), so swscale does those.

    The planes are packed into OpenCV's I420 layout with one copy each, into ``staging[0]`` when it is given and
    of the right size (a decoder reuses it frame after frame); PyAV's ``to_ndarray`` copied each plane twice into a
    fresh array, and under the runtime's low-memory mode every fresh array this size is fresh pages."""
    if (frame.format.name != "yuv420p" or frame.width % 2 or frame.height % 2
            or getattr(frame, "color_range", 0) not in _LIMITED_RANGES
            or getattr(frame, "colorspace", 2) not in _BT601_SPACES):
        return None
    w, h = frame.width, frame.height
    planes = frame.planes
    if any(p.line_size < p.width for p in planes):  # a bottom-up (negative stride) layout: let PyAV unpack it
        return cv2.cvtColor(frame.to_ndarray(), cv2.COLOR_YUV2RGB_I420)
    i420 = staging[0] if staging and staging[0].shape == (h * 3 // 2, w) else np.empty((h * 3 // 2, w), np.uint8)
    if staging is not None:
        staging[:] = [i420]
    flat = i420.reshape(-1)
    start = 0
    for p in planes[:3]:
        rows = np.frombuffer(p, np.uint8, p.line_size * p.height).reshape(p.height, p.line_size)
        flat[start:start + p.width * p.height].reshape(p.height, p.width)[...] = rows[:, :p.width]
        start += p.width * p.height
    return cv2.cvtColor(i420, cv2.COLOR_YUV2RGB_I420)


MAX_ASPECT_CORRECTION = 4.0  # a sample aspect ratio beyond 1/4..4 is taken for a broken header and ignored


def _display_size(width: int, height: int, sar: Any) -> tuple[int, int]:
    """A stored frame's size with square pixels, never larger than stored (a tall pixel shrinks the width, a wide
    one the height, so a header cannot make a frame bigger than the pixel limit checked). Why: anamorphic video
    (DV, broadcast, some phones) stores pixels that are not square, and a face squeezed to half its width neither
    detects nor reads like one."""
    ratio = float(sar) if sar else 1.0
    if ratio == 1.0 or not 1 / MAX_ASPECT_CORRECTION <= ratio <= MAX_ASPECT_CORRECTION:
        return width, height
    return (max(1, round(width * ratio)), height) if ratio < 1 else (width, max(1, round(height / ratio)))


def _rgb(frame: Any, staging: list[np.ndarray] | None = None, sar: Any = None) -> np.ndarray:
    """Decoded frame -> RGB uint8 [H, W, 3] in display shape and orientation: square pixels (``sar``, the stream's
    sample aspect ratio, :func:`_display_size`) and upright (phones store portrait as rotated); ``staging`` is a
    scratch buffer :func:`_fast_rgb` may keep between frames."""
    arr = _fast_rgb(frame, staging)
    if arr is None:
        arr = frame.to_ndarray(format="rgb24")
    width, height = _display_size(arr.shape[1], arr.shape[0], sar)
    if (width, height) != (arr.shape[1], arr.shape[0]):
        arr = cv2.resize(arr, (width, height), interpolation=cv2.INTER_AREA)
    rotation = getattr(frame, "rotation", 0) or 0
    if rotation:
        k = round(rotation / 90.0)
        if abs(rotation - 90.0 * k) > 1.0:
            log.warning("ignoring non-right-angle display rotation of %.1f degrees", rotation)
        elif k % 4:
            arr = np.ascontiguousarray(np.rot90(arr, k % 4))  # FFmpeg's angle is counter-clockwise
    return arr


# --- probe -------------------------------------------------------------------------------------------
def probe(path: PathLike, limits: DecodeLimits | None = None) -> MediaInfo:
    """Read what a file holds without decoding it all, so callers can refuse bad input up front.

    Frames larger than ``limits.max_pixels`` are refused from the header, before the one frame is decoded.
    """
    limits = _limits(limits)
    p = _check_path(path)
    with _opened(p) as container:
        v, a = _video_stream(container), _audio_stream(container)
        if v is None and a is None:
            raise MediaError(f"{p} has neither audio nor video streams; pass a video file with sound")
        duration = float(container.duration / av.time_base) if container.duration else 0.0
        if not duration:
            ends = [e for e in (_declared_end(s) for s in (v, a) if s is not None) if e is not None]
            duration = max(ends, default=0.0)
        fps = width = height = None
        if v is not None:
            rate = v.average_rate or v.guessed_rate
            fps = float(rate) if rate else None
            width, height = v.codec_context.width or None, v.codec_context.height or None
            _check_pixels(p, width, height, limits)
            first = _first_video_frame(p, container, v)
            if first is not None:
                _check_pixels(p, first.width, first.height, limits)
                height, width = _rgb(first, sar=v.sample_aspect_ratio).shape[:2]
        rate_hz = channels = None
        if a is not None:
            rate_hz = int(a.codec_context.sample_rate) or None
            channels = int(a.codec_context.layout.nb_channels) or None
        info = MediaInfo(path=str(p), container=container.format.name, duration_s=duration,
                         has_video=v is not None, has_audio=a is not None, video_fps=fps, width=width,
                         height=height, audio_rate=rate_hz, audio_channels=channels)
    log.debug("probed %s", info)
    return info


def _first_video_frame(p: Path, container: Any, stream: Any) -> Any | None:
    with _decode_guard(p, "video", lambda: 0.0):
        for frame in container.decode(stream):
            return frame
    return None


# --- video -------------------------------------------------------------------------------------------
class _VideoState:
    """Facts the frame generator learns while streaming, read back by load_media."""

    t0: float | None = None


def iter_frames(path: PathLike, fps: int = VIDEO_FPS, limits: DecodeLimits | None = None,
                threads: int | None = None) -> Iterator[np.ndarray]:
    """Stream RGB uint8 [H, W, 3] frames resampled to a constant ``fps`` by timestamp.

    Output frame ``i`` is the source frame nearest in time to ``t0 + i / fps`` (``t0`` = first video
    frame), so the output clock matches the audio clock whatever the source rate or its jitter. Frames
    are decoded lazily; only the current and previous source frames are held. The path and the presence
    of a video stream are checked now; decode errors surface as MediaError while iterating. Timestamp gaps
    up to ``limits.max_gap_s`` repeat the frame before them; a longer gap, or a clip past the other
    :class:`DecodeLimits`, is a MediaError before any frame for it is made. ``threads`` caps the decoder's threads
    (None: FFmpeg's choice, one more than the cores); a caller that already keeps the cores busy in other
    threads, as ``Engine.sync_file`` does, saves their memory (~1 MB each for 640x360) with ``threads=1``.
    """
    return _iter_frames(path, fps, None, _VideoState(), _limits(limits), threads)


def _iter_frames(path: PathLike, fps: int, max_frames: int | None, state: _VideoState,
                 limits: DecodeLimits, threads: int | None = None) -> Iterator[np.ndarray]:
    if not isinstance(fps, (int, np.integer)) or isinstance(fps, bool) or fps <= 0:
        raise ValueError(f"fps must be a positive integer, got {fps!r}")
    p = _check_path(path)
    container = _open(p)
    stream = _video_stream(container)
    if stream is None:
        container.close()
        raise _no_stream(p, "video")
    try:
        _check_pixels(p, stream.codec_context.width, stream.codec_context.height, limits)
    except MediaError:
        container.close()
        raise
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
            container.close()
            raise ValueError(f"threads must be a positive integer or None, got {threads!r}")
        stream.codec_context.thread_count = int(threads)
    return _resample_video(p, container, stream, int(fps), max_frames, state, limits)


REORDER_WINDOW = 4  # frames held to put a B-frame stream's timestamps back in order (a reorder depth up to 3)


def _presentation_order(frames: Iterator[Any], window: int) -> Iterator[tuple[Any, float | None]]:
    """(frame, time) with each frame's time the smallest of those pending in a ``window``-frame buffer.

    Why: a decoder hands its pictures out in presentation order, but some containers label them with decode-order
    times (AVI has no presentation times: H.264 with B-frames reads 1, 2, 4, 3, 5, ...). Sorting the labels inside
    the reorder depth gives each picture its own time back, where dropping the "backwards" ones lost frames and
    jittered the mouth. Times already in order pass through unchanged; a frame without a time flushes the buffer.
    """
    pending: deque[Any] = deque()
    times: list[float] = []
    for frame in frames:
        if frame.time is None:
            while pending:
                yield pending.popleft(), heapq.heappop(times)
            yield frame, None
            continue
        pending.append(frame)
        heapq.heappush(times, float(frame.time))
        if len(pending) >= window:
            yield pending.popleft(), heapq.heappop(times)
    while pending:
        yield pending.popleft(), heapq.heappop(times)


def _resample_video(p: Path, container: Any, stream: Any, fps: int, max_frames: int | None,
                    state: _VideoState, limits: DecodeLimits) -> Iterator[np.ndarray]:
    stream.thread_type = "AUTO"
    rate = stream.average_rate or stream.guessed_rate
    nominal_dt = 1.0 / float(rate) if rate else 1.0 / fps
    prev: Any = None
    prev_t = 0.0
    prev_arr: np.ndarray | None = None
    prev_given = False  # prev_arr already handed out: repeats get a copy so callers may edit in place
    prev_dur: float | None = None
    staging: list[np.ndarray] = []  # _rgb's scratch buffer, reused for every frame
    i = 0  # next output frame index
    dropped = 0
    declared = _declared_seconds(container, stream)  # what a suggested limit must fit
    sar = stream.sample_aspect_ratio  # non-square pixels are resized to square ones
    if sar and not 1 / MAX_ASPECT_CORRECTION <= float(sar) <= MAX_ASPECT_CORRECTION:
        log.warning("%s: ignoring a sample aspect ratio of %s (a broken header?): frames are used as stored", p, sar)
        sar = None

    def emit() -> np.ndarray:
        nonlocal prev_arr, prev_given
        if i >= limits.max_frames:
            raise _past_limit(p, f"its video makes more than {i} frames at {fps} fps "
                              f"(t={(state.t0 or 0.0) + i / fps:.2f} s)",
                              limits, max_frames=max(i + 1, declared * fps))
        if prev_arr is None:  # convert lazily: a 60 fps source only pays for the frames it keeps
            prev_arr = _rgb(prev, staging, sar)
        if prev_given:
            return prev_arr.copy()
        prev_given = True
        return prev_arr

    try:
        with _decode_guard(p, "video", lambda: prev_t if prev is not None else None):
            window = REORDER_WINDOW if stream.codec_context.has_b_frames else 1
            for frame, time in _presentation_order(container.decode(stream), window):
                _check_pixels(p, frame.width, frame.height, limits)
                t = time if time is not None else (prev_t + nominal_dt if prev is not None else 0.0)
                if prev is not None and t <= prev_t + 1e-9:
                    dropped += 1  # duplicate or out-of-order timestamp: keep the first frame shown at t
                    continue
                if prev is not None and t - prev_t > limits.max_gap_s:  # the gap would be filled by repeats
                    raise _past_limit(p, f"its video timestamps jump {t - prev_t:.2f} s at t={prev_t:.2f} s", limits,
                                      max_gap_s=t - prev_t, max_duration_s=t - (state.t0 or 0.0),
                                      max_frames=(t - (state.t0 or 0.0)) * fps)
                if state.t0 is None:
                    state.t0 = t
                elif t - state.t0 > limits.max_duration_s:
                    raise _past_limit(p, f"its video runs to t={t:.2f} s, {t - state.t0:.0f} s after its first frame",
                                      limits, max_duration_s=max(t - state.t0, declared),
                                      max_frames=max(t - state.t0, declared) * fps)
                if prev is not None:
                    # emit the previous frame for every target closer to it than to this one (ties -> earlier)
                    while max_frames is None or i < max_frames:
                        target = state.t0 + i / fps
                        if target - prev_t > t - target:
                            break
                        yield emit()
                        i += 1
                    if max_frames is not None and i >= max_frames:
                        return
                prev, prev_t, prev_arr, prev_given = frame, t, None, False
                prev_dur = (float(frame.duration * frame.time_base)
                            if frame.duration and frame.time_base is not None else None)
            if prev is None:
                raise MediaError(f"{p}: its video stream decoded to no frames, so the file is corrupt or truncated; "
                                 f"{_REENCODE_HINT}")
            last_dur = prev_dur if prev_dur and prev_dur > 0 else nominal_dt
            end_t0 = prev_t - (state.t0 or 0.0)  # where the last frame starts after the first
            if last_dur > limits.max_gap_s:
                raise _past_limit(p, f"its last video frame (t={prev_t:.2f} s) lasts {last_dur:.2f} s", limits,
                                  max_gap_s=last_dur, max_duration_s=end_t0 + last_dur,
                                  max_frames=(end_t0 + last_dur) * fps)
            end = prev_t + last_dur
            assert state.t0 is not None
            total = max(round((end - state.t0) * fps), 1 if i == 0 else 0)
            if max_frames is not None:
                total = min(total, max_frames)
            while i < total:
                yield emit()
                i += 1
        if dropped:
            log.warning("%s: skipped %d video frames with duplicate or backwards timestamps", p, dropped)
        if max_frames is None:
            _check_not_truncated(p, "video", stream, end)
    finally:
        container.close()


# --- audio -------------------------------------------------------------------------------------------
def read_audio(path: PathLike, sample_rate: int = AUDIO_RATE, align_to_video: bool = True,
               limits: DecodeLimits | None = None) -> np.ndarray:
    """Decode the audio stream a player plays (the default track where a file marks one) to float32 mono in
    [-1, 1] at ``sample_rate``.

    Any source rate is converted by FFmpeg's resampler (``av.AudioResampler``); channels are then
    downmixed to mono as the mean of the full-range channels (LFE dropped), which never clips. With
    ``align_to_video`` and a video stream present, sample 0 is the first video frame's time: audio that
    starts later is zero-padded at the front, audio that starts earlier is trimmed, so frame ``i`` of
    :func:`iter_frames` goes with samples ``[i * sample_rate / fps, (i + 1) * sample_rate / fps)``.
    Otherwise sample 0 is the first decoded audio sample. Silence fills timestamp gaps and a late start up
    to ``limits.max_gap_s``; longer ones, or audio past the other :class:`DecodeLimits`, are a MediaError.
    """
    if not isinstance(sample_rate, (int, np.integer)) or isinstance(sample_rate, bool) or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive integer, got {sample_rate!r}")
    limits = _limits(limits)
    p = _check_path(path)
    anchor: float | None = None
    with _opened(p) as container:  # open errors and a missing audio stream are reported before decoding
        if _audio_stream(container) is None:
            raise _no_stream(p, "audio")
        video = _video_stream(container) if align_to_video else None
        if video is not None:
            try:
                first = _first_video_frame(p, container, video)
            except MediaError as err:  # a broken picture should not stop reading good sound
                log.warning("%s: audio is not aligned to video because its first frame is unreadable: %s", p, err)
                first = None
            if first is not None:
                anchor = float(first.time) if first.time is not None else 0.0
    return _read_audio(p, int(sample_rate), anchor, None, limits)


def _downmix_weights(layout: Any) -> np.ndarray:
    """Mono = mean of the full-range channels (LFE left out).

    FFmpeg's own mono downmix sums stereo at -3 dB per channel, which lifts a dual-mono recording by 3 dB
    and clips it at full scale; a plain mean leaves identical channels unchanged and can never clip.
    """
    names = [c.name for c in layout.channels]
    keep = np.array([n != "LFE" and not n.startswith("LFE") for n in names] or [True], dtype=bool)
    if not keep.any():
        keep[:] = True
    return (keep / keep.sum()).astype(np.float32)


def _read_audio(p: Path, sample_rate: int, anchor: float | None, num_samples: int | None,
                limits: DecodeLimits) -> np.ndarray:
    """Decode, resample and place audio on the video clock; stop once ``num_samples`` are covered."""
    with _opened(p) as container:
        stream = _audio_stream(container)
        if stream is None:
            raise _no_stream(p, "audio")
        # single-threaded: FFmpeg's frame-threaded FLAC decoder loses an MP4 edit list's trim (0.19 s dropped,
        # the rest 12 ms late), and audio decoding costs little next to video
        stream.thread_type = "SLICE"
        chunks: list[np.ndarray] = []
        n_out = 0  # samples in chunks
        lead = 0  # samples to drop (negative) or pad (positive) at the front, fixed by the first frame
        resampler: Any = None
        setup: tuple[Any, ...] | None = None
        expected = start = 0.0  # where the next frame should start if the stream has no gap; where it started
        declared = _declared_seconds(container, stream)  # what a suggested limit must fit
        started = False
        gaps = 0
        # AVI has no audio timestamps of its own: the demuxer counts chunks, and VBR audio (AAC) skips numbers
        # where nothing is missing (FFmpeg's CLI plays it sample after sample), so its "gaps" are not filled
        timed_gaps = container.format.name != "avi"

        weights = np.ones(1, np.float32)

        def check_samples(more: int) -> None:
            """Before ``more`` samples are kept: the front padding counts, the front trim is kept until the end."""
            if n_out + max(lead, 0) + more > limits.max_samples:
                raise _past_limit(p, f"its audio makes more than {limits.max_samples} samples at {sample_rate} Hz "
                                  f"(t={expected:.2f} s)", limits,
                                  max_samples=max(n_out + max(lead, 0) + more, declared * sample_rate))

        def check_duration(end: float) -> None:
            if end - start > limits.max_duration_s:
                raise _past_limit(p, f"its audio runs to t={end:.2f} s, {end - start:.0f} s after it starts", limits,
                                  max_duration_s=max(end - start, declared),
                                  max_samples=max(end - start, declared) * sample_rate)

        def drain(frames: list[Any]) -> None:
            nonlocal n_out
            for out in frames:
                check_samples(out.samples)
                x = weights @ out.to_ndarray().reshape(weights.size, -1)  # planar: [channels, samples]
                chunks.append(x.astype(np.float32, copy=False))
                n_out += x.size

        with _decode_guard(p, "audio", lambda: expected if started else None):
            for frame in container.decode(stream):
                if frame.samples == 0:
                    continue
                t = float(frame.time) if frame.time is not None else None
                if not started:
                    started = True
                    expected = start = t if t is not None else (anchor or 0.0)
                    if anchor is not None:
                        if expected - anchor > limits.max_gap_s:  # the late start would be padded with silence
                            raise _past_limit(p, f"its audio starts at t={expected:.2f} s, {expected - anchor:.2f} s "
                                              "after its first video frame", limits, max_gap_s=expected - anchor,
                                              max_samples=(expected - anchor) * sample_rate)
                        lead = round((expected - anchor) * sample_rate)
                        log.debug("%s: audio starts %.4f s after the first video frame", p, expected - anchor)
                elif timed_gaps and t is not None and t - expected > _AUDIO_GAP_TOLERANCE_S:
                    # a hole in the timestamps: silence keeps everything after it on the right clock
                    if t - expected > limits.max_gap_s:
                        raise _past_limit(p, f"its audio timestamps jump {t - expected:.2f} s at t={expected:.2f} s",
                                          limits, max_gap_s=t - expected, max_duration_s=t - start,
                                          max_samples=n_out + max(lead, 0) + (t - expected) * sample_rate)
                    check_duration(t)
                    if resampler is not None:
                        drain(resampler.resample(None))
                        resampler = None
                    gap = round((t - expected) * sample_rate)
                    check_samples(gap)
                    chunks.append(np.zeros(gap, np.float32))
                    n_out += gap
                    expected = t
                    gaps += 1
                key = (frame.format.name, frame.layout.name, frame.sample_rate)
                if resampler is None or key != setup:
                    if resampler is not None:  # rate/layout changed mid-stream: finish the old one
                        drain(resampler.resample(None))
                    resampler = av.AudioResampler(format="fltp", layout=frame.layout, rate=sample_rate)
                    weights = _downmix_weights(frame.layout)
                    setup = key
                drain(resampler.resample(frame))
                expected += frame.samples / frame.sample_rate
                check_duration(expected)
                if num_samples is not None and n_out + lead >= num_samples + sample_rate // 10:
                    break  # enough (with margin for the resampler's delay)
            if resampler is not None:
                drain(resampler.resample(None))
        if not started or n_out == 0:
            raise MediaError(f"{p}: its audio stream decoded to no samples, so the file is corrupt or truncated; "
                             f"{_REENCODE_HINT}")
        if gaps:
            log.warning("%s: filled %d gap(s) in the audio timestamps with silence", p, gaps)
        if num_samples is None:
            _check_not_truncated(p, "audio", stream, expected)

    audio = np.concatenate(chunks)
    if lead > 0:
        audio = np.concatenate([np.zeros(lead, np.float32), audio])
    elif lead < 0:
        audio = audio[-lead:]
    np.clip(audio, -1.0, 1.0, out=audio)
    return np.ascontiguousarray(audio, dtype=np.float32)


# --- both --------------------------------------------------------------------------------------------
def load_media(path: PathLike, max_frames: int | None = None, limits: DecodeLimits | None = None) -> Media:
    """Decode a clip into the contract: T frames at 25 fps and exactly T * 640 samples at 16 kHz.

    Audio is aligned to the first video frame (see :func:`read_audio`) and trimmed or zero-padded to the
    video's length, so ``audio[i * 640:(i + 1) * 640]`` is the sound of ``frames[i]``. ``max_frames`` cuts
    the clip short; ``limits`` (:class:`DecodeLimits`, default from the environment) refuse a file past them.
    """
    if max_frames is not None and (not isinstance(max_frames, (int, np.integer)) or max_frames <= 0):
        raise ValueError(f"max_frames must be a positive integer or None, got {max_frames!r}")
    limits = _limits(limits)
    info = probe(path, limits)
    p = Path(info.path)
    if not info.has_video:
        raise _no_stream(p, "video")
    if not info.has_audio:
        raise _no_stream(p, "audio")
    state = _VideoState()
    frames = list(_iter_frames(p, VIDEO_FPS, max_frames, state, limits))
    video = np.stack(frames)  # _resample_video guarantees at least one frame
    del frames
    need = video.shape[0] * SAMPLES_PER_FRAME
    audio = _read_audio(p, AUDIO_RATE, state.t0, need, limits)
    if audio.size < need:
        missing = need - audio.size
        if missing > SAMPLES_PER_FRAME * 2:
            log.warning("%s: audio ends %.2f s before the video; padded with silence", p, missing / AUDIO_RATE)
        audio = np.concatenate([audio, np.zeros(missing, np.float32)])
    media = Media(frames=video, audio=audio[:need].copy(), fps=VIDEO_FPS, sample_rate=AUDIO_RATE, info=info)
    log.debug("%s: loaded %d frames and %d samples", p, video.shape[0], need)
    return media
