"""Media decode on real files made by the ffmpeg CLI: rates, shapes, resampling, a/v alignment, bad input.

Every fixture is a short real encode (h264/aac mp4, Matroska with Opus/Vorbis, AVI with MJPEG/PCM, WebM,
MOV) so container quirks (edit lists, AAC priming, Opus pre-skip, millisecond timestamps, start offsets)
are exercised for real. The a/v alignment tests are the ones that matter most: a white flash and a
1 kHz beep are put at the same instant, and the decoded flash frame and beep sample must agree.
"""
from __future__ import annotations

import shutil
import subprocess
from fractions import Fraction
from pathlib import Path
from typing import Callable

import av
import cv2
import numpy as np
import pytest

from edge_sync.errors import MediaError
from edge_sync.features.media import Media, MediaInfo, iter_frames, load_media, probe, read_audio
from edge_sync.spec import AUDIO_RATE, SAMPLES_PER_FRAME, VIDEO_FPS

FFMPEG = shutil.which("ffmpeg")
pytestmark = pytest.mark.skipif(FFMPEG is None, reason="the ffmpeg CLI makes the test clips: apt-get install ffmpeg")

SIZE = "160x120"
EVENT_S = 1.2  # flash and beep time in the alignment clips
EVENT_FRAME = round(EVENT_S * VIDEO_FPS)


def ffmpeg(*args: str) -> None:
    """Run the ffmpeg CLI; the last argument is the output file."""
    # -threads 1 keeps encodes byte-identical between runs, so the corruption fixtures are deterministic
    *inputs, output = args
    subprocess.run([FFMPEG, "-y", "-v", "error", "-nostdin", *inputs, "-threads", "1", output],
                   check=True, capture_output=True)


@pytest.fixture(scope="session")
def make(tmp_path_factory) -> Callable[..., Path]:
    """make(name, builder) builds a clip once per session and caches its path."""
    root = tmp_path_factory.mktemp("media")
    cache: dict[str, Path] = {}

    def _make(name: str, build: Callable[[Path], None]) -> Path:
        if name not in cache:
            path = root / name
            build(path)
            cache[name] = path
        return cache[name]

    return _make


def _fft_peak_hz(x: np.ndarray, rate: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.fft.rfftfreq(x.size, 1.0 / rate)[np.argmax(spec)])


def _onset(audio: np.ndarray) -> int:
    """First sample of the beep: where the envelope first reaches 30% of its peak."""
    env = np.abs(audio)
    return int(np.argmax(env >= 0.3 * env.max()))


def _flash(frames: np.ndarray | list[np.ndarray]) -> int:
    return int(np.argmax([f.mean() for f in frames]))


# --- containers, codecs and rates --------------------------------------------------------------------
# name: (extension, video rate, video codec args, audio rate, channels, audio codec args, expected demuxer)
CONTAINERS = {
    "mp4-h264-aac-30fps-44k-stereo": ("mp4", "30", ["-c:v", "libx264", "-pix_fmt", "yuv420p"], 44100, 2,
                                      ["-c:a", "aac"], "mp4"),
    "mkv-h264-opus-24fps-48k-stereo": ("mkv", "24", ["-c:v", "libx264", "-pix_fmt", "yuv420p"], 48000, 2,
                                       ["-c:a", "libopus"], "matroska"),
    "mkv-mpeg4-vorbis-50fps-22k-mono": ("mkv", "50", ["-c:v", "mpeg4", "-q:v", "5"], 22050, 1,
                                        ["-c:a", "libvorbis"], "matroska"),
    "avi-mjpeg-pcm-29.97fps-8k-mono": ("avi", "30000/1001", ["-c:v", "mjpeg", "-q:v", "5"], 8000, 1,
                                       ["-c:a", "pcm_s16le"], "avi"),
    "webm-vp9-opus-30fps-48k-stereo": ("webm", "30", ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8",
                                                      "-b:v", "200k"], 48000, 2, ["-c:a", "libopus"], "webm"),
    "mov-h264-pcm-60fps-48k-stereo": ("mov", "60", ["-c:v", "libx264", "-pix_fmt", "yuv420p"], 48000, 2,
                                      ["-c:a", "pcm_s16le"], "mov"),
}
DURATION = 2.0


@pytest.fixture(scope="session", params=list(CONTAINERS))
def clip(request, make) -> tuple[Path, tuple]:
    """A 2 s testsrc2 clip with a 1 kHz sine (amplitude 1/8) in each container/codec/rate combination."""
    ext, fps, vargs, rate, ch, aargs, _ = spec = CONTAINERS[request.param]

    def build(path: Path) -> None:
        ffmpeg("-f", "lavfi", "-i", f"testsrc2=size={SIZE}:rate={fps}:duration={DURATION}",
               "-f", "lavfi", "-i", f"sine=frequency=1000:sample_rate={rate}:duration={DURATION}",
               # pan copies the sine into both channels at full level (-ac 2 would upmix at -3 dB)
               *vargs, *aargs, "-af", "pan=stereo|c0=c0|c1=c0" if ch == 2 else "anull", "-ar", str(rate), str(path))

    return make(f"{request.param}.{ext}", build), spec


def test_probe_reports_source_streams(clip):
    path, (ext, fps, _, rate, ch, _, demuxer) = clip
    info = probe(path)
    assert isinstance(info, MediaInfo)
    assert info.path == str(path) and demuxer in info.container
    assert info.has_video and info.has_audio
    assert info.video_fps == pytest.approx(float(Fraction(fps)), rel=1e-3)
    assert (info.width, info.height) == (160, 120)
    assert info.audio_rate == rate and info.audio_channels == ch
    assert info.duration_s == pytest.approx(DURATION, abs=0.1)


def test_frames_resampled_to_25fps(clip):
    path, _ = clip
    frames = list(iter_frames(path))
    assert abs(len(frames) - DURATION * VIDEO_FPS) <= 1
    assert all(f.shape == (120, 160, 3) and f.dtype == np.uint8 for f in frames)
    # testsrc2 moves every frame: repeated or blank output would show up here
    assert np.mean([np.abs(a.astype(int) - b).mean() > 0.5 for a, b in zip(frames, frames[1:])]) > 0.9
    assert frames[0].mean() > 20


def test_audio_resampled_to_16k_mono(clip):
    path, (_, _, _, rate, _, _, _) = clip
    audio = read_audio(path)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(audio.size - DURATION * AUDIO_RATE) <= SAMPLES_PER_FRAME
    assert np.abs(audio).max() <= 1.0
    body = audio[1600:-1600]
    assert _fft_peak_hz(body, AUDIO_RATE) == pytest.approx(1000, abs=5)
    rms = float(np.sqrt(np.mean(body ** 2)))
    assert rms == pytest.approx(0.125 / np.sqrt(2), rel=0.15)  # level kept by the resampler and downmix


def test_load_media_matches_contract(clip):
    path, _ = clip
    media = load_media(path)
    assert isinstance(media, Media)
    t = media.frames.shape[0]
    assert abs(t - DURATION * VIDEO_FPS) <= 1
    assert media.frames.shape == (t, 120, 160, 3) and media.frames.dtype == np.uint8
    assert media.audio.shape == (t * SAMPLES_PER_FRAME,) and media.audio.dtype == np.float32
    assert (media.fps, media.sample_rate) == (VIDEO_FPS, AUDIO_RATE)
    assert media.info == probe(path)
    np.testing.assert_array_equal(media.frames[3], list(iter_frames(path))[3])


# --- frame-rate conversion picks the nearest source frame by time --------------------------------------
def _index_clip(make, fps: str) -> Path:
    """1 s where source frame N has luma 20 + 3 N, so each output frame says which source frame it is."""
    def build(path: Path) -> None:
        ffmpeg("-f", "lavfi", "-i", f"color=c=black:size=64x48:rate={fps}:duration=1,"
               "geq=lum='20+3*N':cb=128:cr=128", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", "10",
               str(path))
    return make(f"index-{fps.replace('/', '_')}.mp4", build)


def _source_index(frame: np.ndarray, base: float, step: float, rgb_domain: bool = False) -> int:
    value = float(frame.mean())
    if not rgb_domain:  # decoded limited-range luma Y shows up as RGB (Y - 16) * 255 / 219
        value = value * 219 / 255 + 16
    return round((value - base) / step)


@pytest.mark.parametrize("fps", ["24", "30000/1001", "30", "50", "60"])
def test_constant_rate_sources_map_to_nearest_frame(make, fps):
    src_fps = float(Fraction(fps))
    n_src = int(np.ceil(src_fps))
    frames = list(iter_frames(_index_clip(make, fps)))
    assert len(frames) == VIDEO_FPS  # 1 s of any rate is 25 frames
    got = [_source_index(f, 20, 3) for f in frames]
    want = [min(round(i * src_fps / VIDEO_FPS), n_src - 1) for i in range(len(frames))]
    assert got == want


def test_variable_frame_rate_maps_by_timestamp(make):
    rng = np.random.default_rng(1)
    times_ms = np.concatenate([[0], np.cumsum(rng.choice([15, 25, 40, 55, 70], size=39))])

    def build(path: Path) -> None:  # PyAV writes exact per-frame timestamps (1 ms clock), lossless FFV1
        with av.open(str(path), "w") as out:
            stream = out.add_stream("ffv1", rate=25)
            stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
            stream.codec_context.time_base = stream.time_base = Fraction(1, 1000)
            for k, t in enumerate(times_ms):
                frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 20 + 4 * k, np.uint8), format="rgb24")
                frame.pts, frame.time_base = int(t), Fraction(1, 1000)
                for packet in stream.encode(frame):
                    out.mux(packet)
            for packet in stream.encode():
                out.mux(packet)

    frames = list(iter_frames(make("vfr.mkv", build)))
    end_s = (times_ms[-1] + 70) / 1000  # last frame lasts as long as the interval before it, at most 70 ms
    assert abs(len(frames) - end_s * VIDEO_FPS) <= 2
    got = np.array([_source_index(f, 20, 4, rgb_domain=True) for f in frames])
    targets = np.arange(len(frames)) / VIDEO_FPS
    dist = np.abs(times_ms[None, :] / 1000 - targets[:, None])
    nearest = dist.argmin(axis=1)
    # where two source frames are equally near (within a ms of rounding) either is right
    ok = (got == nearest) | (np.abs(dist[np.arange(len(got)), np.clip(got, 0, len(times_ms) - 1)]
                                    - dist.min(axis=1)) < 1.5e-3)
    assert ok.all(), list(zip(got, nearest))


def test_iter_frames_streams_lazily_and_other_rates(clip):
    path, _ = clip
    it = iter_frames(path, fps=10)
    first = next(it)
    assert first.shape == (120, 160, 3)
    it.close()  # closing early releases the file; no error
    assert abs(len(list(iter_frames(path, fps=10))) - DURATION * 10) <= 1


def test_rotated_phone_video_is_returned_upright(make):
    def build(path: Path) -> None:
        src = path.with_name("upright.mp4")
        ffmpeg("-f", "lavfi", "-i", "color=c=black:size=160x120:rate=25:duration=0.4,"
               "drawbox=x=0:y=0:w=20:h=20:color=red:t=fill", "-c:v", "libx264", "-pix_fmt", "yuv420p", str(src))
        ffmpeg("-i", str(src), "-c", "copy", "-metadata:s:v", "rotate=90", str(path))

    path = make("rotated.mp4", build)
    info = probe(path)
    assert (info.width, info.height) == (120, 160)
    frame = next(iter_frames(path))
    assert frame.shape == (160, 120, 3)
    red = np.argwhere((frame[..., 0] > 150) & (frame[..., 1] < 100))
    # 90 degrees counter-clockwise for display: the top-left marker ends up bottom-left
    assert red[:, 0].mean() > 130 and red[:, 1].mean() < 30


@pytest.mark.parametrize("stored,sar,shown", [("320x120", "1/2", (160, 120)), ("80x120", "2/1", (80, 60)),
                                              ("160x120", "16/1", (160, 120))])
def test_anamorphic_video_is_returned_with_square_pixels(make, stored, sar, shown):
    """Pixels stored twice as wide (or tall) as they display come back at their display shape, like a player shows
    them, and never larger than stored (a tall pixel shrinks the width, a wide one the height): a face squeezed to
    half its width would neither detect nor read like one. A ratio past 1/4..4 is a broken header: ignored."""
    def build(path: Path) -> None:
        ffmpeg("-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25:duration=0.4", "-vf",
               f"scale={stored.replace('x', ':')},setsar={sar}", "-c:v", "libx264", "-pix_fmt", "yuv420p", str(path))

    square = make("square.mp4", lambda path: ffmpeg("-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25:duration=0.4",
                                                     "-c:v", "libx264", "-pix_fmt", "yuv420p", str(path)))
    path = make(f"anamorphic-{stored}-{sar.replace('/', '_')}.mp4", build)
    assert (probe(path).width, probe(path).height) == shown
    frame = next(iter_frames(path))
    assert frame.shape == (shown[1], shown[0], 3)
    if sar != "16/1":  # the same picture as the square-pixel encode, up to the resamplings
        reference = cv2.resize(next(iter_frames(square)), shown, interpolation=cv2.INTER_AREA)
        assert np.abs(frame.astype(int) - reference).mean() < 12


# --- audio resampling and downmix ---------------------------------------------------------------------
@pytest.mark.parametrize("rate,layout", [(8000, "mono"), (22050, "mono"), (44100, "stereo"), (48000, "stereo")])
def test_wav_rates_resample_to_16k(make, rate, layout):
    def build(path: Path) -> None:
        ffmpeg("-f", "lavfi", "-i", f"sine=frequency=1000:sample_rate={rate}:duration=1.5",
               "-ac", "1" if layout == "mono" else "2", "-c:a", "pcm_s16le", str(path))

    path = make(f"sine-{rate}-{layout}.wav", build)
    assert probe(path).audio_rate == rate and not probe(path).has_video
    audio = read_audio(path)
    assert abs(audio.size - 1.5 * AUDIO_RATE) <= 2
    assert _fft_peak_hz(audio, AUDIO_RATE) == pytest.approx(1000, abs=2)
    audio8k = read_audio(path, sample_rate=8000)
    assert abs(audio8k.size - 1.5 * 8000) <= 2
    assert _fft_peak_hz(audio8k, 8000) == pytest.approx(1000, abs=2)


def test_stereo_downmix_keeps_both_channels(make):
    def build(path: Path) -> None:
        ffmpeg("-f", "lavfi", "-i", "aevalsrc='0.5*sin(2*PI*440*t)|0.5*sin(2*PI*1000*t)':s=44100:d=1",
               "-c:a", "pcm_s16le", str(path))

    audio = read_audio(make("left440-right1000.wav", build))
    spec = np.abs(np.fft.rfft(audio * np.hanning(audio.size)))
    freqs = np.fft.rfftfreq(audio.size, 1 / AUDIO_RATE)
    left, right = spec[np.argmin(np.abs(freqs - 440))], spec[np.argmin(np.abs(freqs - 1000))]
    assert left == pytest.approx(right, rel=0.1) and left > 0.9 * spec.max()
    assert np.abs(audio).max() == pytest.approx(0.5, abs=0.03)  # mean of channels, each at 0.25 peak


def test_dual_mono_loud_stereo_does_not_clip(make):
    def build(path: Path) -> None:
        ffmpeg("-f", "lavfi", "-i", "aevalsrc='0.9*sin(2*PI*300*t)|0.9*sin(2*PI*300*t)':s=48000:d=1",
               "-c:a", "pcm_s16le", str(path))

    audio = read_audio(make("dual-mono.wav", build))
    assert np.abs(audio).max() == pytest.approx(0.9, abs=0.02)  # a -3 dB-per-channel sum would clip at 1.0


def test_surround_downmix_ignores_lfe(make):
    def build(path: Path) -> None:
        ffmpeg("-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=48000:duration=1",
               "-af", "pan=5.1|FL=c0|FR=c0|FC=c0|LFE=4*c0|BL=c0|BR=c0", "-c:a", "pcm_s16le", str(path))

    path = make("surround.wav", build)
    assert probe(path).audio_channels == 6
    audio = read_audio(path)
    assert np.abs(audio[800:-800]).max() == pytest.approx(0.125, rel=0.05)


def test_audio_timestamp_gap_is_filled_with_silence(make):
    """A beep at 2.0 s after packets for 1.0-1.5 s were dropped (timestamps keep the hole)."""
    def build(path: Path) -> None:
        ffmpeg("-f", "lavfi", "-i", "aevalsrc='if(between(t,2.0,2.1),0.8*sin(2*PI*1000*t),0)':s=16000:d=3",
               "-af", "aselect='not(between(t,1.0,1.5))'", "-c:a", "pcm_s16le", str(path))

    audio = read_audio(make("gap.mkv", build))
    assert abs(audio.size - 3 * AUDIO_RATE) <= SAMPLES_PER_FRAME
    assert abs(_onset(audio) - 2.0 * AUDIO_RATE) <= SAMPLES_PER_FRAME


# --- a/v alignment ------------------------------------------------------------------------------------
# name: (extension, video rate, video codec args, audio rate, audio codec args)
SYNC_CLIPS = {
    "mp4-h264-aac": ("mp4", "30", ["-c:v", "libx264", "-pix_fmt", "yuv420p"], 44100, ["-c:a", "aac"]),
    "mkv-h264-vorbis": ("mkv", "25", ["-c:v", "libx264", "-pix_fmt", "yuv420p"], 48000, ["-c:a", "libvorbis"]),
    "avi-mjpeg-pcm": ("avi", "30000/1001", ["-c:v", "mjpeg", "-q:v", "5"], 44100, ["-c:a", "pcm_s16le"]),
    "webm-vp8-opus": ("webm", "30", ["-c:v", "libvpx", "-deadline", "realtime", "-b:v", "200k"], 48000,
                      ["-c:a", "libopus"]),
    "mov-h264-aac-50fps": ("mov", "50", ["-c:v", "libx264", "-pix_fmt", "yuv420p"], 22050, ["-c:a", "aac"]),
}


def _sync_clip(make, name: str, audio_filter: str | None = None, suffix: str = "") -> Path:
    """3 s: black video with one white frame at 1.2 s, stereo audio with a 100 ms 1 kHz beep at 1.2 s."""
    ext, fps, vargs, rate, aargs = SYNC_CLIPS[name]
    half = f"0.4/({fps})"

    def build(path: Path) -> None:
        video = (f"color=c=black:size={SIZE}:rate={fps}:duration=3,drawbox=x=0:y=0:w=iw:h=ih:color=white:t=fill:"
                 f"enable='between(t,{EVENT_S}-{half},{EVENT_S}+{half})'")
        audio = f"aevalsrc='if(between(t,{EVENT_S},{EVENT_S + 0.1}),0.8*sin(2*PI*1000*t),0)':s={rate}:d=3"
        extra = ["-af", audio_filter] if audio_filter else []
        ffmpeg("-f", "lavfi", "-i", video, "-f", "lavfi", "-i", audio, *vargs, *aargs, *extra, "-ac", "2",
               str(path))

    return make(f"sync-{name}{suffix}.{ext}", build)


def _measured_offset_frames(path: Path) -> tuple[int, float]:
    """(flash frame index, beep onset in frames) from load_media; offset > 0 means the sound is late."""
    media = load_media(path)
    return _flash(media.frames), _onset(media.audio) / SAMPLES_PER_FRAME


@pytest.mark.parametrize("name", list(SYNC_CLIPS))
def test_flash_and_beep_stay_aligned(make, name):
    path = _sync_clip(make, name)
    flash, beep = _measured_offset_frames(path)
    assert flash == EVENT_FRAME
    assert abs(beep - flash) <= 1.0, f"flash at frame {flash} but beep at frame {beep:.2f}"
    # the separate entry points agree with load_media
    assert _flash(list(iter_frames(path))) == flash
    assert abs(_onset(read_audio(path)) / SAMPLES_PER_FRAME - beep) < 0.05


def test_audio_start_offset_mp4_itsoffset_is_measured(make):
    """Audio track shifted 200 ms by timestamps only (mp4 edit list, AAC priming packet kept)."""
    src = _sync_clip(make, "mp4-h264-aac")

    def build(path: Path) -> None:
        ffmpeg("-i", str(src), "-itsoffset", "0.2", "-i", str(src), "-map", "0:v", "-map", "1:a", "-c", "copy",
               str(path))

    path = make("sync-mp4-audio-itsoffset.mp4", build)
    flash, beep = _measured_offset_frames(path)
    assert flash == EVENT_FRAME
    assert abs((beep - flash) - 5) <= 1, f"expected 5 frames of audio delay, measured {beep - flash:.2f}"
    media = load_media(path)
    assert not media.audio[: int(0.15 * AUDIO_RATE)].any()  # the late start is padded with exact zeros
    # without alignment, sample 0 is the first audio sample, so the beep comes earlier
    assert _onset(read_audio(path, align_to_video=False)) < _onset(read_audio(path)) - 3 * SAMPLES_PER_FRAME


def test_audio_start_offset_mkv_itsoffset_is_measured(make):
    src = _sync_clip(make, "mkv-h264-vorbis")

    def build(path: Path) -> None:
        ffmpeg("-i", str(src), "-itsoffset", "0.2", "-i", str(src), "-map", "0:v", "-map", "1:a", "-c", "copy",
               str(path))

    flash, beep = _measured_offset_frames(make("sync-mkv-audio-itsoffset.mkv", build))
    assert abs((beep - flash) - 5) <= 1, f"expected 5 frames of audio delay, measured {beep - flash:.2f}"


@pytest.mark.parametrize("name", ["mkv-h264-vorbis", "avi-mjpeg-pcm"])
def test_audio_delayed_in_content_is_measured(make, name):
    """adelay moves the sound itself 200 ms later: 5 frames at 25 fps."""
    flash, beep = _measured_offset_frames(_sync_clip(make, name, "adelay=200:all=1", suffix="-adelay"))
    assert abs((beep - flash) - 5) <= 1, f"expected 5 frames of audio delay, measured {beep - flash:.2f}"


def test_video_starting_late_trims_audio(make):
    """Video track shifted 200 ms later by timestamps: audio before the first frame is trimmed, sound leads."""
    src = _sync_clip(make, "mp4-h264-aac")

    def build(path: Path) -> None:
        ffmpeg("-itsoffset", "0.2", "-i", str(src), "-i", str(src), "-map", "0:v", "-map", "1:a", "-c", "copy",
               str(path))

    flash, beep = _measured_offset_frames(make("sync-mp4-video-itsoffset.mp4", build))
    assert abs((beep - flash) + 5) <= 1, f"expected sound 5 frames early, measured {beep - flash:.2f}"


def test_max_frames_truncates_both_streams(make):
    path = _sync_clip(make, "mp4-h264-aac")
    full, part = load_media(path), load_media(path, max_frames=40)
    assert part.frames.shape[0] == 40 and part.audio.size == 40 * SAMPLES_PER_FRAME
    np.testing.assert_array_equal(part.frames, full.frames[:40])
    np.testing.assert_allclose(part.audio, full.audio[: part.audio.size], atol=1e-6)


# --- errors a user can act on --------------------------------------------------------------------------
def _assert_one_line(err: pytest.ExceptionInfo, *words: str) -> None:
    msg = str(err.value)
    assert "\n" not in msg and len(msg) < 400
    for w in words:
        assert w in msg.lower(), msg


def _video_only(make) -> Path:
    return make("video-only.mp4", lambda p: ffmpeg("-f", "lavfi", "-i", f"testsrc2=size={SIZE}:rate=25:duration=1",
                                                    "-c:v", "libx264", "-pix_fmt", "yuv420p", str(p)))


def _audio_only(make) -> Path:
    return make("audio-only.m4a", lambda p: ffmpeg("-f", "lavfi", "-i", "sine=frequency=500:duration=1",
                                                    "-c:a", "aac", str(p)))


ALL_READERS = {
    "probe": probe,
    "iter_frames": lambda p: list(iter_frames(p)),
    "read_audio": read_audio,
    "load_media": load_media,
}


@pytest.mark.parametrize("reader", list(ALL_READERS))
@pytest.mark.parametrize("as_path", [True, False])
def test_missing_file(tmp_path, reader, as_path):
    missing = tmp_path / "nope.mp4"
    with pytest.raises(MediaError) as err:
        ALL_READERS[reader](missing if as_path else str(missing))
    _assert_one_line(err, "not found", "nope.mp4")


@pytest.mark.parametrize("reader", list(ALL_READERS))
def test_directory(tmp_path, reader):
    with pytest.raises(MediaError) as err:
        ALL_READERS[reader](tmp_path)
    _assert_one_line(err, "directory")


@pytest.mark.parametrize("reader", list(ALL_READERS))
def test_empty_file(tmp_path, reader):
    path = tmp_path / "empty.mp4"
    path.touch()
    with pytest.raises(MediaError) as err:
        ALL_READERS[reader](path)
    _assert_one_line(err, "empty", "0 bytes")


@pytest.mark.parametrize("content", [b"just some notes, not a video\n" * 50, bytes(range(256)) * 40])
@pytest.mark.parametrize("reader", list(ALL_READERS))
def test_not_a_media_file(tmp_path, reader, content):
    path = tmp_path / "notes.mp4"
    path.write_bytes(content)
    with pytest.raises(MediaError) as err:
        ALL_READERS[reader](path)
    _assert_one_line(err, "not a supported media file")


def test_iter_frames_checks_eagerly(tmp_path):
    """Bad paths fail when iter_frames is called, not at the first next()."""
    with pytest.raises(MediaError):
        iter_frames(tmp_path / "missing.mp4")


def _busy_clip(make, kind: str) -> Path:
    """3 s of moving testsrc2 + sine (~100 kB, mostly media data): 'mp4' keeps ffmpeg's default of the moov
    index at the end, 'faststart' moves it to the front, 'mkv' is Matroska."""
    ext = "mkv" if kind == "mkv" else "mp4"
    flags = ["-movflags", "+faststart"] if kind == "faststart" else []

    def build(path: Path) -> None:
        ffmpeg("-f", "lavfi", "-i", f"testsrc2=size={SIZE}:rate=25:duration=3", "-f", "lavfi", "-i",
               "sine=frequency=1000:sample_rate=44100:duration=3", "-c:v", "libx264", "-pix_fmt", "yuv420p",
               "-c:a", "aac", *flags, str(path))

    return make(f"busy-{kind}.{ext}", build)


@pytest.mark.parametrize("reader", list(ALL_READERS))
def test_mp4_cut_in_half_without_index(make, tmp_path, reader):
    data = _busy_clip(make, "mp4").read_bytes()
    assert data.rfind(b"moov") > len(data) // 2  # the index is in the half that gets cut off
    path = tmp_path / "half.mp4"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(MediaError) as err:
        ALL_READERS[reader](path)
    _assert_one_line(err, "truncated", "moov")


@pytest.mark.parametrize("kind", ["faststart", "mkv"])
@pytest.mark.parametrize("reader", ["iter_frames", "read_audio", "load_media"])
def test_cut_in_half_with_index_intact(make, tmp_path, reader, kind):
    """The header survives but the data stops halfway: a MediaError, not 1.5 s of silent 'success'."""
    src = _busy_clip(make, kind)
    data = src.read_bytes()
    path = tmp_path / f"half{src.suffix}"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(MediaError) as err:
        ALL_READERS[reader](path)
    _assert_one_line(err, "truncated")


@pytest.mark.parametrize("kind", ["mp4", "faststart"])
@pytest.mark.parametrize("reader", ["iter_frames", "read_audio", "load_media"])
def test_garbage_in_the_middle(make, tmp_path, reader, kind):
    data = bytearray(_busy_clip(make, kind).read_bytes())
    start = int(len(data) * 0.4)
    data[start:start + 4000] = np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes()
    path = tmp_path / "garbage.mp4"
    path.write_bytes(bytes(data))
    probe(path)  # headers are intact: the damage only shows when decoding
    with pytest.raises(MediaError) as err:
        ALL_READERS[reader](path)
    _assert_one_line(err, "corrupt")


@pytest.mark.parametrize("reader", ["read_audio", "load_media"])
def test_no_audio_stream(make, reader):
    path = _video_only(make)
    assert not probe(path).has_audio
    with pytest.raises(MediaError) as err:
        ALL_READERS[reader](path)
    _assert_one_line(err, "no audio stream")


@pytest.mark.parametrize("reader", ["iter_frames", "load_media"])
def test_no_video_stream(make, reader):
    path = _audio_only(make)
    info = probe(path)
    assert info.has_audio and not info.has_video and info.video_fps is None and info.width is None
    with pytest.raises(MediaError) as err:
        ALL_READERS[reader](path)
    _assert_one_line(err, "no video stream")


def test_audio_only_file_reads_without_alignment(make):
    audio = read_audio(_audio_only(make))  # align_to_video has nothing to align to: not an error
    assert abs(audio.size - AUDIO_RATE) <= 1024 * AUDIO_RATE // 44100 + 1
    assert _fft_peak_hz(audio, AUDIO_RATE) == pytest.approx(500, abs=2)


def test_media_error_is_a_value_error(tmp_path):
    with pytest.raises(ValueError):
        probe(tmp_path / "missing.wav")


def test_bad_arguments(make):
    path = _video_only(make)
    with pytest.raises(ValueError):
        iter_frames(path, fps=0)
    with pytest.raises(ValueError):
        load_media(path, max_frames=0)


@pytest.mark.parametrize("codec", ["flac", "aac"])
def test_audio_trimmed_by_an_edit_list_stays_on_the_video_clock(make, tmp_path, codec):
    """MP4 audio that starts 0.3 s before the video gets an edit list; FFmpeg's threaded FLAC decoder dropped
    0.19 s of it and left a gap (found with `edge-sync fix` outputs). Clicks at 0.25 + 0.5 n s in the source
    must land at 0.5 n - 0.05 s of the video clock."""
    wav = tmp_path / "clicks.wav"
    rate = 48000
    x = np.zeros(rate * 3, np.int16)
    for t in np.arange(0.25, 3, 0.5):
        x[int(t * rate):int(t * rate) + 48] = 20000
    import wave

    with wave.open(str(wav), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(x.tobytes())
    clip = tmp_path / f"trimmed_{codec}.mp4"
    ffmpeg("-f", "lavfi", "-i", f"color=size={SIZE}:rate=25:duration=3", "-itsoffset", "-0.3", "-i", str(wav),
           "-c:v", "libx264", "-c:a", codec, "-strict", "-2", clip)
    audio = read_audio(clip)
    env = np.abs(audio)
    found = [i for i in range(1, env.size) if env[i] >= 0.3 * env.max() > env[i - 1]]
    clicks = [i for j, i in enumerate(found) if j == 0 or i - found[j - 1] > AUDIO_RATE // 10]
    expected = [round((t - 0.3) * AUDIO_RATE) for t in np.arange(0.75, 3, 0.5)]
    assert len(clicks) == len(expected), clicks
    tolerance = 16 if codec == "flac" else 48  # 1 ms; AAC's own priming and smearing move onsets a little more
    assert np.max(np.abs(np.array(clicks) - expected)) <= tolerance, (clicks, expected)


@pytest.mark.parametrize("color_range, fast", [(None, True), ("pc", False)])
def test_fast_colour_conversion_matches_swscale_and_steps_aside_for_full_range(tmp_path, color_range, fast):
    """4:2:0 limited-range frames go through OpenCV (6x faster), within a few levels of swscale's rgb24; a
    full-range stream, which OpenCV would read with the wrong levels, goes through swscale."""
    from edge_sync.features.media import _fast_rgb

    rng = np.random.default_rng(0)
    path = tmp_path / "c.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        if color_range:
            stream.codec_context.color_range = 2  # JPEG / full range
        for i in range(5):
            img = np.clip(rng.normal(128, 60, (120, 160, 3)) + np.linspace(0, 60, 160)[None, :, None], 0, 255)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img.astype(np.uint8), format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    with av.open(str(path)) as src:
        frame = next(src.decode(video=0))
        fast_rgb = _fast_rgb(frame)
        assert (fast_rgb is not None) == fast
        if fast:
            diff = np.abs(fast_rgb.astype(int) - frame.to_ndarray(format="rgb24").astype(int))
            assert diff.mean() < 2.0 and diff.max() <= 12
    frames = list(iter_frames(path))
    assert len(frames) == 5 and frames[0].shape == (120, 160, 3) and frames[0].dtype == np.uint8


@pytest.mark.parametrize("width, height", [(160, 120), (150, 106)])  # 150 px: planes padded past their width
def test_frames_packed_for_opencv_equal_pyavs_own_layout_and_reuse_one_buffer(tmp_path, width, height):
    """The I420 planes are packed (into one reused buffer) exactly as PyAV's to_ndarray lays them out, so the RGB
    is the same bytes; decoding with one thread gives the same frames."""
    import cv2

    from edge_sync.features.media import _fast_rgb

    rng = np.random.default_rng(1)
    path = tmp_path / "p.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for _ in range(4):
            img = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    staging: list[np.ndarray] = []
    with av.open(str(path)) as src:
        for i, frame in enumerate(src.decode(video=0)):
            got = _fast_rgb(frame, staging)
            np.testing.assert_array_equal(got, cv2.cvtColor(frame.to_ndarray(), cv2.COLOR_YUV2RGB_I420))
            if i == 0:
                buffer = staging[0]
            assert staging[0] is buffer  # one scratch buffer for the whole stream
    default, single = list(iter_frames(path)), list(iter_frames(path, threads=1))
    assert len(default) == len(single) == 4
    for a, b in zip(default, single):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="threads"):
        iter_frames(path, threads=0)


def test_avi_with_b_frames_keeps_every_frame_and_its_sound_on_time(make, caplog):
    """AVI stores no presentation times: H.264 with B-frames comes out labelled 1, 2, 4, 3, ... and VBR AAC's chunk
    count skips numbers. Each picture gets its own time back (none dropped) and the sound plays on unpadded, as in
    the same streams remuxed to Matroska."""
    def build(path: Path) -> None:  # x264's defaults: B-frames, decode order differs from presentation order
        ffmpeg("-f", "lavfi", "-i", f"testsrc2=size={SIZE}:rate=25:duration=6", "-f", "lavfi", "-i",
               # a tone on for half of every second: AAC's near-empty silent packets make AVI's count skip
               "aevalsrc=0.5*sin(440*2*PI*t)*gt(sin(2*PI*t)\\,0):s=16000:d=6", "-c:v", "libx264",
               "-pix_fmt", "yuv420p", "-c:a", "aac", str(path))

    mkv, avi = make("bframes.mkv", build), make("bframes.avi", build)  # the same encode (-threads 1), two boxes
    with av.open(str(avi)) as container:
        labels = [f.pts for f in container.decode(video=0)][:10]
    assert labels != sorted(labels)  # the quirk is there
    with caplog.at_level("WARNING"):
        frames_avi, frames_mkv = np.stack(list(iter_frames(avi))), np.stack(list(iter_frames(mkv)))
        sound_avi, sound_mkv = read_audio(avi), read_audio(mkv)
    assert frames_avi.shape == frames_mkv.shape and np.array_equal(frames_avi, frames_mkv)
    assert not [r for r in caplog.records if "skipped" in r.message or "filled" in r.message]
    onsets_avi, onsets_mkv = _tone_onsets(sound_avi), _tone_onsets(sound_mkv)
    lag = onsets_avi - onsets_mkv  # where each second's tone starts, in samples
    assert len(onsets_avi) == len(onsets_mkv) == 6 and lag.max() - lag.min() <= 2  # no silence slipped in
    assert abs(lag[0]) < SAMPLES_PER_FRAME  # AAC's priming, which AVI cannot mark, is under a frame


def _tone_onsets(sound: np.ndarray) -> np.ndarray:
    loud = np.abs(sound) > 0.1
    starts = np.flatnonzero(loud[1:] & ~loud[:-1]) + 1
    return np.array([t for i, t in enumerate(starts) if i == 0 or t - starts[i - 1] > AUDIO_RATE // 4])


def test_the_audio_a_player_picks_is_read(make):
    """A louder commentary track first and the default one after it (a dubbed film's layout): the default one is
    measured, though FFmpeg would otherwise prefer the first at the same rate and bitrate."""
    def build(path: Path) -> None:
        ffmpeg("-f", "lavfi", "-i", f"testsrc2=size={SIZE}:rate=25:duration=2", "-f", "lavfi", "-i",
               "sine=frequency=440:sample_rate=16000:duration=2", "-f", "lavfi", "-i",
               "sine=frequency=1000:sample_rate=16000:duration=2", "-map", "0:v", "-map", "1:a", "-map", "2:a",
               "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "64k", "-filter:a:0", "volume=4",
               "-disposition:a:0", "0", "-disposition:a:1", "default", "-t", "2", str(path))

    path = make("two-audio.mp4", build)
    with av.open(str(path)) as container:
        first, second = container.streams.audio
        assert not first.disposition & av.stream.Disposition.default and second.disposition & av.stream.Disposition.default
    sound = read_audio(path)
    assert abs(_fft_peak_hz(sound[4000:12000], AUDIO_RATE) - 1000) < 20  # the default track's tone, not 440 Hz
