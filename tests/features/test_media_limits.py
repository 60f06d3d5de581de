"""Decode limits (issue #17 item 1): timestamps that jump hours must not turn into hours of silence or frames.

The gap files are the issue's own recipes, made by the ffmpeg CLI from a small clip: an audio track whose
timestamps jump 10 h (and 1000 h) after 80,000 samples, and a video track whose timestamps jump 10 h after
frame 125. Before the limits the first cost 2.4 GB (1000 h: a MemoryError) and the second ran for minutes
making ~900,000 repeated frames. Memory and time are measured in a child process, so a regression fails
here instead of exhausting the test machine.
"""
from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge_sync.errors import MediaError
from edge_sync.features.media import DecodeLimits, iter_frames, load_media, probe, read_audio
from edge_sync.spec import AUDIO_RATE, SAMPLES_PER_FRAME, VIDEO_FPS
from tests.features.test_media import FFMPEG, SIZE, ffmpeg

pytestmark = pytest.mark.skipif(FFMPEG is None, reason="the ffmpeg CLI makes the test clips: apt-get install ffmpeg")

CLIP_S = 6  # long enough for the video gap after frame 125 (5 s)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    """A 6 s testsrc2 + 48 kHz sine clip, and gap copies made with the issue's recipes."""
    d = tmp_path_factory.mktemp("limits")
    clip = d / "clip.mp4"
    ffmpeg("-f", "lavfi", "-i", f"testsrc2=size={SIZE}:rate=25:duration={CLIP_S}", "-f", "lavfi", "-i",
           f"sine=frequency=440:sample_rate=48000:duration={CLIP_S}", "-c:v", "libx264", "-pix_fmt", "yuv420p",
           "-c:a", "aac", str(clip))
    out = {"clip": clip}
    for name, jump_s in (("gap", 36000), ("gap1000h", 3_600_000), ("gap20s", 20), ("gap2s", 2)):
        out[name] = d / f"{name}.mkv"
        ffmpeg("-i", str(clip), "-c:v", "copy", "-af", f"asetpts='if(gte(N,80000),PTS+{jump_s}/TB,PTS)'",
               "-c:a", "aac", str(out[name]))
    for name, jump_s in (("vgap", 36000), ("vgap2s", 2)):
        out[name] = d / f"{name}.mkv"
        ffmpeg("-i", str(clip), "-vf", f"setpts='if(gte(N,125),PTS+{jump_s}/TB,PTS)'", "-c:v", "libx264",
               "-pix_fmt", "yuv420p", "-c:a", "copy", str(out[name]))
    return out


def _one_line(err: pytest.ExceptionInfo, *words: str) -> str:
    msg = str(err.value)
    assert "\n" not in msg and len(msg) < 500, msg
    for w in words:
        assert w in msg, msg
    return msg


# --- the files: one line, no allocation ---------------------------------------------------------
@pytest.mark.parametrize("name,jump", [("gap", "36000.00 s"), ("gap1000h", "3600000.00 s")])
@pytest.mark.parametrize("reader", [read_audio, load_media])
def test_audio_gap_past_the_limit_is_one_line(clips, name, jump, reader):
    with pytest.raises(MediaError) as err:
        reader(clips[name])
    msg = _one_line(err, "audio timestamps jump", jump, "at t=1.7", "max_gap_s=10", "EDGE_SYNC_MAX_GAP_S=",
                    "DecodeLimits(max_gap_s=")
    # the advice covers the other limits a gap that long passes too, so following it once is enough
    assert "EDGE_SYNC_MAX_DURATION_S=" in msg and "EDGE_SYNC_MAX_SAMPLES=" in msg


@pytest.mark.parametrize("reader", [lambda p: list(iter_frames(p)), load_media])
def test_video_gap_past_the_limit_is_one_line(clips, reader):
    with pytest.raises(MediaError) as err:
        reader(clips["vgap"])
    _one_line(err, "video timestamps jump 36000.0", "at t=4.9", "max_gap_s=10", "EDGE_SYNC_MAX_GAP_S=",
              "EDGE_SYNC_MAX_FRAMES=")


# The decoders in a fresh process, so its peak memory is theirs alone; a timeout stands for the old hang.
_MEASURE = """
import resource, sys, tracemalloc
from edge_sync.errors import MediaError
from edge_sync.features.media import iter_frames, read_audio
tracemalloc.start()
try:
    if sys.argv[1] == "audio":
        read_audio(sys.argv[2])
    else:
        for _ in iter_frames(sys.argv[2]):
            pass
    outcome = "ok"
except MediaError as exc:
    outcome = "MediaError: " + str(exc)
peak = tracemalloc.get_traced_memory()[1]
try:  # this process's own peak: ru_maxrss would also count the parent's pages at fork (pytest can hold > 1 GB)
    with open("/proc/self/status") as status:
        rss = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) * 1024
except OSError:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(peak, rss, outcome)
"""


@pytest.mark.parametrize("kind,name", [("audio", "gap"), ("audio", "gap1000h"), ("video", "vgap")])
def test_gap_files_cost_no_memory_or_time(clips, kind, name):
    try:
        out = subprocess.run([sys.executable, "-c", _MEASURE, kind, str(clips[name])], capture_output=True,
                             text=True, timeout=60, check=True)
    except subprocess.TimeoutExpired:
        pytest.fail(f"decoding {name} still runs after 60 s: its gap is being filled")
    traced, rss, outcome = out.stdout.strip().split(" ", 2)
    assert int(traced) < 32 * 2**20, f"{int(traced) / 2**20:.0f} MB allocated for {name}"
    assert int(rss) < 600 * 2**20, f"peak RSS {int(rss) / 2**20:.0f} MB for {name}"
    assert outcome.startswith("MediaError:") and "max_gap_s" in outcome, outcome


def test_cli_sync_prints_one_line_and_exits_1(clips):
    for name in ("gap", "vgap"):
        try:
            out = subprocess.run([sys.executable, "-m", "edge_sync.cli", "sync", str(clips[name])],
                                 capture_output=True, text=True, timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail(f"edge-sync sync {name} still runs after 60 s: its gap is being filled")
        assert out.returncode == 1, out.stderr
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("edge-sync: error: ") and "max_gap_s" in lines[0], out.stderr


# --- under the limits nothing changes --------------------------------------------------------------------
HUGE = DecodeLimits(max_duration_s=1e6, max_gap_s=1e6, max_frames=10**9, max_pixels=10**9, max_samples=10**12)


def test_a_normal_clip_decodes_as_without_limits(clips):
    media, free = load_media(clips["clip"]), load_media(clips["clip"], limits=HUGE)
    assert media.num_frames == CLIP_S * VIDEO_FPS and media.audio.size == media.num_frames * SAMPLES_PER_FRAME
    np.testing.assert_array_equal(media.frames, free.frames)
    np.testing.assert_array_equal(media.audio, free.audio)
    np.testing.assert_array_equal(read_audio(clips["clip"]), read_audio(clips["clip"], limits=HUGE))
    assert probe(clips["clip"]) == probe(clips["clip"], limits=HUGE)


def test_short_gaps_are_still_filled(clips):
    """2 s gaps stay under max_gap_s: silence in the audio, the frames on either side repeated in the video."""
    audio = read_audio(clips["gap2s"])
    gap_at = 80000 * AUDIO_RATE // 48000
    assert abs(audio.size - (CLIP_S + 2) * AUDIO_RATE) <= SAMPLES_PER_FRAME
    assert not audio[gap_at + 800:gap_at + 2 * AUDIO_RATE - 800].any()
    assert np.abs(audio[gap_at + 2 * AUDIO_RATE + 800:]).max() > 0.05
    frames = list(iter_frames(clips["vgap2s"]))
    assert len(frames) == (CLIP_S + 2) * VIDEO_FPS
    # nearest in time: the last frame before the gap fills its first half, the first one after it the second
    assert len({f.tobytes() for f in frames[124:126 + 2 * VIDEO_FPS]}) == 2


def test_the_advice_in_the_message_is_enough(clips):
    """A 20 s gap passes max_gap_s; the DecodeLimits the message suggests decode the file, gap filled."""
    with pytest.raises(MediaError) as err:
        read_audio(clips["gap20s"])
    args = re.search(r"DecodeLimits\(([^)]*)\)", _one_line(err, "max_gap_s=10"))[1]
    limits = DecodeLimits(**{k: float(v) for k, v in (kv.split("=") for kv in args.split(", "))})
    assert abs(read_audio(clips["gap20s"], limits=limits).size - (CLIP_S + 20) * AUDIO_RATE) <= SAMPLES_PER_FRAME


# --- every limit is checked and configurable ----------------------------------------------------------------
@pytest.mark.parametrize("limit,value,reader,words", [
    ("max_duration_s", 2.0, read_audio, ("audio runs to t=2.0",)),
    ("max_duration_s", 2.0, lambda p, limits: list(iter_frames(p, limits=limits)), ("video runs to t=2.0",)),
    ("max_frames", 40, lambda p, limits: list(iter_frames(p, limits=limits)), ("more than 40 frames at 25 fps",)),
    ("max_frames", 40, load_media, ("more than 40 frames",)),
    ("max_samples", 20000, read_audio, ("samples at 16000 Hz",)),
    ("max_pixels", 160 * 119, probe, ("160x120",)),
    ("max_pixels", 160 * 119, lambda p, limits: next(iter_frames(p, limits=limits)), ("160x120",)),
    ("max_gap_s", 1.0, read_audio, ("audio timestamps jump 2.0",)),
])
def test_each_limit_stops_decoding(clips, limit, value, reader, words):
    path = clips["gap2s"] if limit == "max_gap_s" else clips["clip"]
    with pytest.raises(MediaError) as err:
        reader(path, limits=DecodeLimits(**{limit: value}))
    message = _one_line(err, *words, f"past the limit {limit}={value:g}", DecodeLimits.env_name(limit))
    # the limits it suggests fit the whole file, though the limit was found passed part-way through it
    args = re.search(r"DecodeLimits\(([^)]*)\)", message)[1]
    reader(path, limits=DecodeLimits(**{k: float(v) for k, v in (kv.split("=") for kv in args.split(", "))}))


def test_limits_come_from_the_environment(clips, monkeypatch):
    monkeypatch.setenv("EDGE_SYNC_MAX_GAP_S", "1.5")
    monkeypatch.setenv("EDGE_SYNC_MAX_FRAMES", "1e6")
    assert DecodeLimits.from_env() == DecodeLimits(max_gap_s=1.5, max_frames=1_000_000)
    with pytest.raises(MediaError) as err:
        read_audio(clips["gap2s"])
    _one_line(err, "max_gap_s=1.5")
    read_audio(clips["gap2s"], limits=DecodeLimits())  # an explicit argument wins over the environment
    monkeypatch.setenv("EDGE_SYNC_MAX_GAP_S", "ten")
    with pytest.raises(ValueError, match="EDGE_SYNC_MAX_GAP_S='ten' is not a number"):
        read_audio(clips["clip"])


def test_limits_are_validated():
    with pytest.raises(ValueError, match="max_gap_s"):
        DecodeLimits(max_gap_s=0)
    with pytest.raises(ValueError, match="max_frames"):
        DecodeLimits(max_frames=float("inf"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        DecodeLimits().max_gap_s = 1.0  # type: ignore[misc]
    with pytest.raises(TypeError, match="DecodeLimits"):
        read_audio("x.mp4", limits={"max_gap_s": 1})  # type: ignore[arg-type]
