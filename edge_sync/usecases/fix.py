"""Fix a clip's lip sync: measure the audio delay, then re-mux with the sound moved back onto the picture.

``fix_file(IN, OUT)`` measures the clip's offset with the runtime (``Engine.sync_file``: the main face track's
clip-level offset k, sound late by ``40 k`` ms) unless a delay is forced, and writes ``OUT`` with:

* **the video untouched**: every video packet is stream-copied -- same bytes, same timestamps, same order -- so
  the picture is bit-exact and nothing is re-encoded. (Matroska only: it cannot store negative timestamps, so when
  the audio's pre-roll packet lands before 0 its muxer adds one constant to every stream, exactly as
  ``ffmpeg -c copy`` does; the video's timing relative to itself and to the sound stays exact.)
* **the audio moved by -delay**: sound late by ``d`` ms -> the audio moves ``d`` ms earlier; early -> later.

How the audio moves (``audio="auto"`` picks ``copy`` wherever that is exact, else ``reencode``):

* ``copy``: audio packets are stream-copied with their timestamps moved to the sample clock (1/rate) and shifted
  by ``round(delay * rate)`` samples. The shift need not be a whole number of packets (an AAC packet is 1024
  samples = 64 ms at 16 kHz, a video frame 40 ms; at 16 kHz only shifts of 8k frames are whole packets), because
  both containers can place a packet anywhere: MP4/MOV start the track mid-packet with an edit list (the mechanism
  players already use to skip AAC encoder priming) and start it late with an empty edit (written in a movie
  timescale set to the audio rate, since FFmpeg's default 1 ms timescale would round the shift); Matroska just
  stores the later or earlier timestamps (its clock is 1 ms, so there the shift is exact to 1 ms). Packets moved
  wholly before the clip's start are dropped except the last, kept as decoder pre-roll (AAC frames overlap: a
  decoder started cold on the first needed packet garbles its first 64 ms; the edit list skips the pre-roll).
  Packets pushed past the clip's end are dropped, so the output is at most one audio packet longer than the input.
  No generation loss. Measured here (PyAV's FFmpeg 8.1 and the system's ffprobe 5.1 agree): decoded output equals
  the input's samples at exactly the shifted position for AAC (16/44.1/48 kHz, mono and stereo), MP3, Opus, FLAC
  and PCM in MP4/MOV, within 1 ms for every codec in Matroska.
* ``reencode``: only the audio is decoded, put on the timeline ``round(delay * rate)`` samples earlier or later,
  trimmed where it would fall before the clip's start or after its end, padded with silence at the front where it
  now starts later, and encoded as AAC at the source's rate and channel layout. Exact to the sample in any
  container, at the cost of one lossy AAC generation. ``auto`` uses it only where copying cannot be exact or
  cannot be written: a mid-packet start of Vorbis in MP4/MOV (its decoded output straddles packets, measured up to
  8 ms off), or a codec the container refuses (FLAC or Opus in MOV, Vorbis in MOV).

Output containers: ``.mp4``/``.m4v``/``.mov`` (ISO-BMFF) and ``.mkv`` (Matroska, takes any codec); anything else
is refused up front (AVI, MPEG-TS, FLV cannot start a stream mid-packet exactly). Only the video stream and
the audio stream that were measured (the first video, the audio a player picks) are written; other streams (subtitles, extra audio tracks,
data) are left out, with a warning, and named in ``FixResult.dropped_streams``.

A clip that measures in sync (offset 0, no forced delay) still gets an output: a stream copy with no shift (packet
for packet the input's streams; ``FixResult.changed`` is False). A pipeline that runs ``fix`` on every file can
then always read ``OUT``, and the copy costs only I/O. The output is written to a temp file beside it and renamed,
so a crash never leaves a half file; an existing ``OUT`` is replaced, the input never (``output`` naming the input
is refused).

A measurement the model cannot stand behind is not applied: with no speech, or with a confidence under the evidence
floor fitted beside the model's use-case heads (:mod:`edge_sync.usecases.quality`), ``fix`` refuses and writes
nothing; ``delay_ms`` still moves the sound.

numpy + PyAV only (the measurement runs on the numpy runtime): no torch here.
"""
from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import av
import numpy as np

from edge_sync._atomic import atomic_path
from edge_sync._json import JsonResult
from edge_sync.errors import EdgeSyncError, MediaError
from edge_sync.features.media import _audio_stream, _check_path, _no_stream, _opened, _short, _video_stream

if TYPE_CHECKING:
    from edge_sync.runtimes.api import Engine, FileSync

__all__ = ["FixResult", "fix_file", "OUTPUT_FORMATS", "AUDIO_MODES"]

log = logging.getLogger(__name__)

# output suffix -> FFmpeg muxer; these can start a stream at any timestamp (see the module docstring)
OUTPUT_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}
AUDIO_MODES = ("auto", "copy", "reencode")
REENCODE_CODEC = "aac"
_DEFAULT_AUDIO_BITRATE = 128_000
# audio timestamp jumps larger than this are gaps (filled with silence when re-encoding), as in features.media
_GAP_TOLERANCE_S = 0.02
# codecs whose packets map 1:1 onto sample ranges, so an ISO-BMFF edit list starts them mid-packet to the sample
# (measured: AAC, MP3, Opus, FLAC, PCM at 16/44.1/48 kHz); Vorbis does not (its output straddles packets)
_ISO_EXACT_CODECS = frozenset({"aac", "mp3", "mp3float", "opus", "libopus", "flac"})
# stream tags that describe the source file's layout rather than the stream; the muxer writes its own
_STALE_TAGS = ("duration", "number_of_frames", "number_of_bytes", "_statistics", "bps", "encoder")


@dataclass
class FixResult(JsonResult):
    """What ``fix_file`` measured and wrote.

    ``audio_delay_ms`` is the delay that was corrected (the sound was late by this much; negative: early), measured
    or forced; the audio was moved by ``shift_ms`` (= -audio_delay_ms, to the sample, or to the container's clock
    when copying into Matroska: 1 ms).
    """

    input: str
    output: str
    audio_delay_ms: float
    measured: bool  # False: the delay was forced (delay_ms), nothing was measured
    offset_frames: int | None  # the measured offset (k > 0: sound late by 40 k ms); None when forced
    confidence: float | None  # the measurement's confidence (syncnet_python's), None when forced
    shift_samples: int  # applied to the audio at its sample rate: negative = moved earlier
    shift_ms: float  # shift_samples in ms (Matroska stores timestamps to 1 ms)
    audio: str  # "copy" (packets stream-copied, timestamps shifted) or "reencode" (audio only, AAC)
    container: str  # the output's FFmpeg muxer
    video_packets: int  # copied byte for byte
    audio_packets: int  # written (copied, or encoded when re-encoding)
    audio_packets_dropped: int  # copy: packets moved wholly before the start (less the pre-roll) or past the end
    sample_rate: int
    changed: bool  # False: no shift was applied (in sync; with audio='copy' the output is a plain stream copy)
    dropped_streams: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["audio_delay_ms"] = round(self.audio_delay_ms, 3)
        d["shift_ms"] = round(self.shift_ms, 3)
        d["confidence"] = None if self.confidence is None else round(self.confidence, 4)
        d["seconds"] = round(self.seconds, 3)
        return d


def fix_file(path: str | os.PathLike[str], output: str | os.PathLike[str], engine: Engine | None = None,
             delay_ms: float | None = None, *, sync: FileSync | None = None, audio: str = "auto") -> FixResult:
    """Write ``output``: ``path`` re-muxed with its audio delay corrected (video stream-copied, not re-encoded).

    The delay is, in order: ``delay_ms`` when given (sound late by that many ms; negative: early; nothing is
    measured), else ``sync`` (an analysis of ``path`` already made with ``engine.sync_file``, so one analysis
    serves every use case), else a fresh ``engine.sync_file(path)`` (``engine`` defaults to ``edge_sync.load()``,
    the bundled student). ``audio`` is ``"auto"``, ``"copy"`` or ``"reencode"`` (see the module docstring).

    Raises :class:`~edge_sync.errors.MediaError` (missing, unreadable, no audio or no video stream, output folder
    missing, output naming the input, an output container that cannot be stream-copied into) and
    :class:`~edge_sync.errors.NoFaceError` (nothing to measure on) and :class:`~edge_sync.errors.EdgeSyncError` (no
    speech in the soundtrack: nothing to measure either), each with a one-line message.
    """
    start = time.perf_counter()
    src = _check_path(path)
    dst, fmt = _check_output(src, output)
    if audio not in AUDIO_MODES:
        raise ValueError(f"audio must be one of {', '.join(AUDIO_MODES)}, got {audio!r}")
    if delay_ms is not None and (isinstance(delay_ms, bool) or not math.isfinite(float(delay_ms))):
        raise ValueError(f"delay_ms must be a finite number of milliseconds, got {delay_ms!r}")
    _check_streams(src)

    offset = confidence = None
    if delay_ms is None:
        if sync is not None and Path(sync.path).exists() and not os.path.samefile(sync.path, src):
            raise ValueError(f"sync is the analysis of {sync.path}, not of {src}; pass the analysis of this file")
        if sync is None:
            if engine is None:
                from edge_sync.runtimes.api import load

                engine = load()
            sync = engine.sync_file(src)
        result = sync.main.result
        if result.no_speech:  # the reading is a guess: moving the sound by it would break an intact clip
            raise EdgeSyncError(f"{src}: no speech in the soundtrack, so there is no offset to measure and correct; "
                                "pass delay_ms (--delay-ms) to move the sound anyway")
        delay, offset, confidence = float(result.audio_delay_ms), int(result.offset_frames), float(result.confidence)
        reason = sync.unsure_reason
        if reason is not None:  # the reading is noise: moving by it could break an intact clip
            raise EdgeSyncError(f"{src}: too little sync evidence to correct ({reason}; the measured {offset:+d} "
                                "frames is unsure); pass delay_ms (--delay-ms) to move the sound anyway")
        limit = getattr(getattr(engine, "contract", None), "max_offset", None)
        if limit is not None and abs(offset) >= limit:
            log.warning("%s: the measured offset %+d is at the model's limit (+-%d frames); the real delay may be "
                        "larger, check the output", src, offset, limit)
        log.info("%s: measured offset %+d frames (sound %s by %.0f ms), confidence %.3f", src, offset,
                 "late" if delay >= 0 else "early", abs(delay), confidence)
    else:
        delay = float(delay_ms)

    with atomic_path(dst) as tmp:
        stats = _remux(src, tmp, fmt, -delay / 1000.0, audio)
    res = FixResult(input=str(src), output=str(dst), audio_delay_ms=delay, measured=delay_ms is None,
                    offset_frames=offset, confidence=confidence, container=fmt,
                    seconds=time.perf_counter() - start, **stats)
    if not res.changed:
        log.info("%s: in sync (no delay to correct); %s is a plain stream copy", src, dst)
    return res


# --- checks -------------------------------------------------------------------------------------------------
def _check_output(src: Path, output: str | os.PathLike[str]) -> tuple[Path, str]:
    if not isinstance(output, (str, os.PathLike)):
        raise TypeError(f"output must be a str or pathlib.Path, got {type(output).__name__}")
    dst = Path(output)
    if dst.is_dir():
        raise MediaError(f"output {dst} is a directory; name the output file, e.g. {dst / 'fixed.mp4'}")
    fmt = OUTPUT_FORMATS.get(dst.suffix.lower())
    if fmt is None:
        raise MediaError(f"cannot write the fixed clip as {dst.name!r}: stream copy with a shifted sound is exact only "
                         "in MP4/MOV or Matroska; name the output .mp4 (or .mov/.m4v) or .mkv")
    parent = dst.parent if str(dst.parent) else Path(".")
    if not parent.is_dir():
        raise MediaError(f"output folder {parent} does not exist; create it first (mkdir -p {parent})")
    if dst.exists() and os.path.samefile(src, dst) or dst.resolve() == src.resolve():
        raise MediaError(f"output {dst} is the input file; write the fixed clip to another file "
                         "(the input is never overwritten)")
    return dst, fmt


def _check_streams(src: Path) -> None:
    """No video or no audio: say so before minutes of analysis."""
    with _opened(src) as container:
        if _video_stream(container) is None:
            raise _no_stream(src, "video")
        if _audio_stream(container) is None:
            raise _no_stream(src, "audio")


# --- the re-mux ---------------------------------------------------------------------------------------------
def _seconds(ts: int | None, time_base: Any) -> float | None:
    return None if ts is None or time_base is None else float(ts * time_base)


def _stream_span(stream: Any) -> tuple[float | None, float | None]:
    """(start, end) of a stream from its header, seconds; None where the header does not say."""
    start = _seconds(stream.start_time, stream.time_base)
    dur = _seconds(stream.duration, stream.time_base) if stream.duration and stream.duration > 0 else None
    return start, (None if dur is None else (start or 0.0) + dur)


def _copy_tags(src: dict[str, str], dst: Any) -> None:
    for k, v in src.items():
        if not any(k.lower().startswith(s) for s in _STALE_TAGS):
            dst.metadata[k] = v


class _HeaderRefused(Exception):
    """The muxer refused the copied audio stream when writing the header (e.g. FLAC or Opus in MOV)."""


def _remux(src: Path, tmp: str, fmt: str, shift_s: float, mode: str) -> dict[str, Any]:
    try:
        try:
            return _remux_once(src, tmp, fmt, shift_s, mode)
        except _HeaderRefused as err:  # only raised for audio="auto": the audio alone is re-encoded instead
            log.info("%s: %s; re-encoding the audio only (AAC)", src, err)
            return _remux_once(src, tmp, fmt, shift_s, "reencode")
    except av.FFmpegError as err:
        raise MediaError(f"re-muxing {src} into {fmt} failed ({_ffmpeg_reason(err)}); name the output .mkv, or "
                         "re-encode the input first: ffmpeg -i IN -c:v libx264 -c:a aac OUT.mp4") from err


def _ffmpeg_reason(err: BaseException) -> str:
    """FFmpeg's reason without the temp file's name (which means nothing to the user)."""
    return getattr(err, "strerror", None) or _short(err)


def _copy_is_exact(fmt: str, codec: str, shift_samples: int) -> bool:
    """Whether stream-copying this audio with this shift lands on the sample (see the module docstring)."""
    return fmt == "matroska" or shift_samples >= 0 or codec in _ISO_EXACT_CODECS or codec.startswith("pcm_")


def _remux_once(src: Path, tmp: str, fmt: str, shift_s: float, mode: str) -> dict[str, Any]:
    with _opened(src) as inp:
        v, a = _video_stream(inp), _audio_stream(inp)
        assert v is not None and a is not None  # checked by _check_streams
        rate = int(a.codec_context.sample_rate)
        if rate <= 0:
            raise MediaError(f"{src}: its audio stream does not declare a sample rate; re-encode it, e.g. "
                             "ffmpeg -i IN -c:v copy -c:a aac OUT.mp4")
        shift_samples = round(shift_s * rate)
        v_start, v_end = _stream_span(v)
        a_start, a_end = _stream_span(a)
        starts = [s for s in (v_start, a_start) if s is not None]
        origin = min(starts) if starts else 0.0  # nothing is moved before the input's own start
        ends = [e for e in (v_end, a_end) if e is not None]
        if not ends and inp.duration:
            ends = [float(inp.duration / av.time_base) + (float(inp.start_time / av.time_base)
                                                          if inp.start_time else 0.0)]
        end = max(ends) if ends else None  # ... nor past its end
        dropped = [f"#{s.index} {s.type}" for s in inp.streams if s is not v and s is not a]
        if dropped:
            log.warning("%s: only the video and audio streams that were measured are written; leaving out %s",
                        src, ", ".join(dropped))
        acodec = a.codec_context.name
        requested = mode
        if mode != "reencode" and not _copy_is_exact(fmt, acodec, shift_samples):
            if mode == "auto":
                log.info("%s: %s audio cannot start mid-packet exactly in %s; re-encoding the audio only (AAC)",
                         src, acodec, fmt)
                mode = "reencode"
            else:
                log.warning("%s: %s audio starts mid-packet in %s, which decoders may place up to one packet off; "
                            "name the output .mkv or use audio='reencode' for an exact shift", src, acodec, fmt)

        # ISO-BMFF edit lists count in the movie timescale (FFmpeg's default: 1 ms); the audio's own rate makes
        # a later audio start (an empty edit) exact to the sample
        options = {"movie_timescale": str(rate)} if fmt in ("mp4", "mov") else {}
        with av.open(tmp, "w", format=fmt, options=options) as out:
            out.metadata.update({k: val for k, val in inp.metadata.items()
                                 if not k.lower().startswith(("duration", "encoder"))})
            try:
                vo = out.add_stream_from_template(v, opaque=True)
            except ValueError as err:
                raise MediaError(f"the {v.codec_context.name} video of {src} cannot be stream-copied into {fmt} "
                                 f"({err}); name the output .mkv, which takes any codec") from err
            _copy_tags(v.metadata, vo)
            mover: _AudioCopy | _AudioReencode
            if mode != "reencode":
                try:
                    ao = out.add_stream_from_template(a, opaque=True)
                except ValueError as err:
                    if mode == "copy":
                        raise MediaError(f"the {acodec} audio of {src} cannot be stream-copied into {fmt} ({err}); "
                                         "name the output .mkv, or let the audio be re-encoded (audio='auto' or "
                                         "'reencode')") from err
                    log.info("%s: %s audio cannot go into %s as it is; re-encoding the audio only (AAC)", src,
                             acodec, fmt)
                    mode = "reencode"
                else:
                    mode = "copy"
            if mode == "reencode":
                ao = out.add_stream(REENCODE_CODEC, rate=rate, layout=a.codec_context.layout.name)
                ao.bit_rate = int(a.codec_context.bit_rate or a.bit_rate or 0) or _DEFAULT_AUDIO_BITRATE
                mover = _AudioReencode(out, ao, rate, shift_samples, origin, end)
            else:
                mover = _AudioCopy(out, ao, rate, shift_samples, origin, end)
            _copy_tags(a.metadata, ao)
            try:
                out.start_encoding()  # the header: where a muxer refuses a codec it listed as supported
            except av.FFmpegError as err:
                what = f"{v.codec_context.name} video + {acodec if mode == 'copy' else REENCODE_CODEC} audio"
                if requested == "auto" and mode == "copy":
                    raise _HeaderRefused(f"{fmt} refused {what} ({_ffmpeg_reason(err)})") from err
                raise MediaError(f"{fmt} cannot hold {what} of {src} ({_ffmpeg_reason(err)}); name the output "
                                 ".mkv, which takes any codec") from err

            video_packets = 0
            for packet in inp.demux(v, a):
                if packet.dts is None and packet.pts is None:
                    continue  # the demuxer's end-of-stream flush packets
                if packet.stream is v:
                    if fmt == "matroska" and packet.pts is not None and packet.pts * packet.time_base < -1e-3:
                        raise MediaError(  # the muxer would move every stream later to make it non-negative
                            f"{src} starts its video {float(-packet.pts * packet.time_base):.2f} s into the coded "
                            "stream (an edit list), which Matroska cannot keep; name the output .mp4 or .mov")
                    if packet.pts is None:
                        raise MediaError(
                            f"{src} has video packets without timestamps (a raw stream, or AVI), which cannot be "
                            "stream-copied with a shifted sound; remux it first: ffmpeg -fflags +genpts -i IN "
                            "-c copy OUT.mkv")
                    packet.stream = vo
                    out.mux(packet)
                    video_packets += 1
                else:
                    mover.push(packet)
            mover.finish()
        if mover.kept == 0:
            raise MediaError(f"{src}: a shift of {shift_s * 1000:+.0f} ms leaves no audio inside the clip; "
                             "check the delay")
    return {"shift_samples": shift_samples, "shift_ms": mover.shift_ms, "audio": mode, "video_packets": video_packets,
            "audio_packets": mover.kept, "audio_packets_dropped": mover.dropped, "sample_rate": rate,
            "changed": mover.shift_ms != 0.0, "dropped_streams": dropped}


class _AudioCopy:
    """Stream-copy audio packets with shifted timestamps; drop what leaves the clip (one pre-roll stays)."""

    def __init__(self, out: Any, stream: Any, rate: int, shift_samples: int, origin: float,
                 end: float | None) -> None:
        self.out, self.stream, self.shift, self.origin, self.end = out, stream, shift_samples, origin, end
        self.time_base = Fraction(1, rate)
        self.preroll: Any = None  # the latest packet wholly before the origin
        self.kept = self.dropped = 0
        self.shift_ms = shift_samples / rate * 1000.0

    def push(self, packet: Any) -> None:
        # timestamps move to the sample clock first (exact from 1/rate or Matroska's 1 ms), then by whole samples
        tb, src_tb = self.time_base, packet.time_base
        for attr in ("pts", "dts", "duration"):
            ts = getattr(packet, attr)
            if ts is not None:
                setattr(packet, attr, round(ts * src_tb / tb) + (self.shift if attr != "duration" else 0))
        packet.time_base = tb
        t = float((packet.pts if packet.pts is not None else packet.dts) * tb)
        if self.end is not None and t >= self.end - 1e-9:
            self.dropped += 1  # moved past the clip's end
            return
        if packet.duration and t + float(packet.duration * tb) <= self.origin + 1e-9:
            if self.preroll is not None:
                self.dropped += 1
            self.preroll = packet  # wholly before the start: only the last such packet is kept, as pre-roll
            return
        if self.preroll is not None:
            self._mux(self.preroll)
            self.preroll = None
        self._mux(packet)

    def _mux(self, packet: Any) -> None:
        packet.stream = self.stream
        self.out.mux(packet)
        self.kept += 1

    def finish(self) -> None:
        if self.preroll is not None:  # every packet fell before the start
            self.dropped += 1


class _AudioReencode:
    """Decode, shift by an exact sample count, trim/pad to the clip, encode (AAC) in whole encoder frames."""

    def __init__(self, out: Any, stream: Any, rate: int, shift_samples: int, origin: float,
                 end: float | None) -> None:
        self.out, self.stream, self.rate, self.shift = out, stream, rate, shift_samples
        self.cursor = round(origin * rate)  # next output sample (input clock, in samples)
        self.stop = None if end is None else round(end * rate)
        self.expected: int | None = None  # where the next decoded sample sits (input clock, unshifted)
        self.resampler: Any = None
        self.buffer: list[np.ndarray] = []
        self.buffered = 0
        self.next_pts = self.cursor
        self.kept = self.dropped = 0
        self.shift_ms = shift_samples / rate * 1000.0
        self.time_base = Fraction(1, rate)  # the encoder's clock (the muxer may store another, e.g. 1 ms)

    def push(self, packet: Any) -> None:
        for frame in packet.decode():
            self._place(frame)

    def _place(self, frame: Any) -> None:
        if frame.samples == 0:
            return
        t = round(frame.time * self.rate) if frame.time is not None else None
        if self.expected is None:
            self.expected = t if t is not None else self.cursor - self.shift
        elif t is not None and t - self.expected > _GAP_TOLERANCE_S * self.rate:
            self._add(np.zeros((self.stream.layout.nb_channels, t - self.expected), np.float32), self.expected)
            self.expected = t  # a hole in the source's timestamps stays silent
        if self.resampler is None:
            self.resampler = av.AudioResampler(format="fltp", layout=self.stream.layout, rate=self.rate)
        for out in self.resampler.resample(frame):
            x = out.to_ndarray().reshape(self.stream.layout.nb_channels, -1)
            self._add(x.astype(np.float32, copy=False), self.expected)
            self.expected += x.shape[1]

    def _add(self, x: np.ndarray, at: int) -> None:
        """Put samples that sat at input sample ``at`` onto the output timeline at ``at + shift``."""
        lo = at + self.shift
        if lo + x.shape[1] <= self.cursor:
            return  # wholly before the clip's start (or already written): trimmed
        if lo < self.cursor:
            x, lo = x[:, self.cursor - lo:], self.cursor
        if lo > self.cursor:  # starts later than the clip: silence first
            self._emit(np.zeros((x.shape[0], lo - self.cursor), np.float32))
        self._emit(x)

    def _emit(self, x: np.ndarray) -> None:
        if self.stop is not None:  # nothing past the clip's end
            x = x[:, :max(0, self.stop - self.cursor)]
        if x.shape[1] == 0:
            return
        self.buffer.append(x)
        self.buffered += x.shape[1]
        self.cursor += x.shape[1]
        self._encode(final=False)

    def _encode(self, final: bool) -> None:
        size = self.stream.codec_context.frame_size or 1024
        if self.buffered < size and not (final and self.buffered):
            return
        data = np.concatenate(self.buffer, axis=1) if len(self.buffer) > 1 else self.buffer[0]
        n = data.shape[1] if final else data.shape[1] // size * size
        for lo in range(0, n, size):
            block = np.ascontiguousarray(data[:, lo:min(lo + size, n)])
            frame = av.AudioFrame.from_ndarray(block, format="fltp", layout=self.stream.layout.name)
            frame.sample_rate = self.rate
            frame.pts = self.next_pts
            frame.time_base = self.time_base
            self.next_pts += block.shape[1]
            self._mux(self.stream.encode(frame))
        rest = data[:, n:]
        self.buffer = [rest] if rest.shape[1] else []
        self.buffered = rest.shape[1]

    def _mux(self, packets: list[Any]) -> None:
        for p in packets:
            self.out.mux(p)
            self.kept += 1

    def finish(self) -> None:
        if self.resampler is not None:
            for out in self.resampler.resample(None):
                x = out.to_ndarray().reshape(self.stream.layout.nb_channels, -1)
                self._add(x.astype(np.float32, copy=False), self.expected)
                self.expected += x.shape[1]
        self._encode(final=True)
        self._mux(self.stream.encode(None))
