"""`fix_file`: the measured audio delay is corrected by a re-mux (video packets untouched), and the fixed clip then
measures offset 0 on the same engine. Real clips: a photo speaking espeak-ng speech, H.264 + AAC, sound planted
k frames late."""
from __future__ import annotations

import hashlib
import subprocess
import sys
import wave
from pathlib import Path

import av
import numpy as np
import pytest

pytest.importorskip("onnxruntime", reason="pip install 'edge-sync[onnxruntime]'")
pytest.importorskip("skimage", reason="the portrait ships in scikit-image: pip install 'edge-sync[dev]'")

from edge_sync.data.talking_photo import make_talking_photo_clip, write_video  # noqa: E402
from edge_sync.errors import MediaError, NoFaceError  # noqa: E402
from edge_sync.features.media import read_audio  # noqa: E402
from edge_sync.runtimes.api import load  # noqa: E402
from edge_sync.usecases.fix import fix_file  # noqa: E402

TEXT = "The quick brown fox jumps over the lazy dog."  # 105 frames (4.2 s) with the clip's silences
PLANTED = (4, -3)  # sound 160 ms late (2.5 AAC packets at 16 kHz), sound 120 ms early


@pytest.fixture(scope="module")
def engine():
    return load()


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("talk")
    return {k: make_talking_photo_clip(root / f"talk{k:+d}.mp4", TEXT, offset_frames=k).path for k in PLANTED}


@pytest.fixture(scope="module")
def fixed(engine, clips, tmp_path_factory):
    root = tmp_path_factory.mktemp("fixed")
    return {k: fix_file(clips[k], root / f"fixed{k:+d}.mp4", engine=engine) for k in PLANTED}


def _packets(path, kind: str) -> list[tuple[bytes, int | None, int | None, float]]:
    """(bytes, pts, dts, pts in seconds) of every packet of the first stream of ``kind``."""
    with av.open(str(path)) as c:
        s = c.streams.video[0] if kind == "video" else c.streams.audio[0]
        return [(bytes(p), p.pts, p.dts, float(p.pts * p.time_base)) for p in c.demux(s) if p.size]


def _assert_shifted(src, out, shift: int) -> None:
    """The output's decoded sound is the input's, ``shift`` samples later (negative: earlier), sample for sample."""
    a, b = read_audio(src), read_audio(out)  # both on the first video frame's clock
    i = np.arange(len(a))
    keep = (i + shift >= 0) & (i + shift < len(b))
    assert keep.sum() > len(a) - abs(shift) - 2048
    np.testing.assert_array_equal(b[i[keep] + shift], a[i[keep]])


@pytest.mark.parametrize("planted", PLANTED)
def test_fixed_clip_measures_offset_zero(engine, fixed, planted):
    res = fixed[planted]
    assert res.measured and res.offset_frames == planted  # the unfixed clip measures what was planted
    assert res.audio_delay_ms == 40.0 * planted and res.shift_samples == -640 * planted
    assert res.shift_ms == -40.0 * planted and res.changed and res.audio == "copy" and res.container == "mp4"
    assert engine.sync_file(res.output).main.result.offset_frames == 0


@pytest.mark.parametrize("planted", PLANTED)
def test_video_is_copied_untouched_and_sound_moved_exactly(clips, fixed, planted):
    res = fixed[planted]
    video = _packets(clips[planted], "video")
    assert _packets(res.output, "video") == video  # same bytes, same pts and dts, same order
    assert res.video_packets == len(video)
    _assert_shifted(clips[planted], res.output, res.shift_samples)
    with av.open(str(clips[planted])) as c:
        end_in = c.duration / av.time_base
    with av.open(res.output) as c:  # a sane file: starts at 0, at most one AAC packet longer than the input
        assert (c.start_time or 0) == 0 and all((s.start_time or 0) >= 0 for s in c.streams)
        assert c.duration / av.time_base <= end_in + 1024 / 16000 + 1e-3


def test_in_sync_clip_gets_a_plain_stream_copy(engine, fixed, tmp_path):
    src = fixed[4].output
    res = fix_file(src, tmp_path / "again.mp4", engine=engine)
    assert res.measured and res.offset_frames == 0 and res.shift_samples == 0 and not res.changed
    for kind in ("video", "audio"):
        assert _packets(res.output, kind) == _packets(src, kind)


def test_a_reading_under_the_evidence_floor_is_not_corrected(engine, clips, tmp_path, strict_heads_installed):
    """Under the model's evidence floor the measured offset is noise: fix refuses and writes nothing, rather than
    move the sound of a clip that may be intact; --delay-ms still moves it."""
    from edge_sync.errors import EdgeSyncError

    with pytest.raises(EdgeSyncError, match="too little sync evidence.*--delay-ms"):
        fix_file(clips[4], tmp_path / "unsure.mp4", engine=engine)
    assert not (tmp_path / "unsure.mp4").exists()
    assert fix_file(clips[4], tmp_path / "forced.mp4", engine=engine, delay_ms=160.0).changed


def test_forced_delay_is_applied_without_measuring(clips, tmp_path):
    # 37.5 ms = 600 samples: neither whole video frames nor whole AAC packets, still exact to the sample
    res = fix_file(clips[4], tmp_path / "forced.m4v", delay_ms=-37.5)
    assert not res.measured and res.offset_frames is None and res.confidence is None
    assert res.shift_samples == 600 and res.audio == "copy"
    assert _packets(res.output, "video") == _packets(clips[4], "video")
    _assert_shifted(clips[4], res.output, 600)


def test_matroska_output(clips, tmp_path):
    src = clips[-3]
    res = fix_file(src, tmp_path / "fixed.mkv", delay_ms=-120.0)
    assert res.container == "matroska" and res.audio == "copy" and res.shift_samples == 1920
    vin, vout = _packets(src, "video"), _packets(res.output, "video")
    assert [p[0] for p in vout] == [p[0] for p in vin]
    # Matroska's 1 ms clock: the video keeps its timing (one constant at most is added to every stream)
    lag = vout[0][3] - vin[0][3]
    np.testing.assert_allclose([p[3] - lag for p in vout], [p[3] for p in vin], atol=5e-4)
    _assert_shifted(src, res.output, 1920)


def test_reencoding_only_the_audio(engine, clips, tmp_path):
    src = clips[4]
    res = fix_file(src, tmp_path / "reencoded.mov", delay_ms=160.0, audio="reencode")
    assert res.audio == "reencode" and res.shift_samples == -2560
    assert _packets(res.output, "video") == _packets(src, "video")
    a, b = read_audio(src), read_audio(res.output)
    seg = a[4000:40000]  # speech; AAC is lossy, so find where it sits in the output by correlation
    corr = np.correlate(b[:len(seg) + 8000], seg, mode="valid")
    assert int(np.argmax(corr)) == 4000 - 2560
    assert engine.sync_file(res.output).main.result.offset_frames == 0


def _with_flac_audio(src, path):
    """The clip with its sound as FLAC in Matroska (video packets copied): a codec MOV refuses."""
    audio = read_audio(src)
    with av.open(str(src)) as inp, av.open(str(path), "w") as out:
        vo = out.add_stream_from_template(inp.streams.video[0], opaque=True)
        ao = out.add_stream("flac", rate=16000, layout="mono")
        for p in inp.demux(inp.streams.video[0]):
            if p.size:
                p.stream = vo
                out.mux(p)
        frame = av.AudioFrame.from_ndarray(audio[None], format="flt", layout="mono")
        frame.sample_rate, frame.pts = 16000, 0
        out.mux(ao.encode(frame))
        out.mux(ao.encode(None))
    return path


def test_audio_the_container_refuses_is_reencoded_in_auto_mode(clips, tmp_path):
    src = _with_flac_audio(clips[4], tmp_path / "flac.mkv")
    res = fix_file(src, tmp_path / "fixed.mov", delay_ms=160.0)  # MOV takes no FLAC: the audio alone is re-encoded
    assert res.audio == "reencode"
    vin, vout = _packets(src, "video"), _packets(res.output, "video")  # Matroska -> MOV: same bytes and times
    assert [(p[0], round(p[3], 4)) for p in vout] == [(p[0], round(p[3], 4)) for p in vin]
    with pytest.raises(MediaError, match="cannot hold h264 video \\+ flac audio.*name the output .mkv"):
        fix_file(src, tmp_path / "copy.mov", delay_ms=160.0, audio="copy")
    res = fix_file(src, tmp_path / "fixed.mkv", delay_ms=160.0)  # Matroska takes it as it is
    assert res.audio == "copy"
    _assert_shifted(src, res.output, -2560)


def test_fix_runs_without_torch():
    code = ("import sys; sys.modules['torch'] = None\n"
            "import edge_sync.usecases.fix\n"
            "assert not [m for m in sys.modules if m.startswith('torch') and sys.modules[m] is not None]\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# --- bad input: one-line errors, and nothing written ------------------------------------------------------------
@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    rng = np.random.default_rng(0)
    frames = np.full((20, 96, 128, 3), 128, np.uint8)
    silent = write_video(root / "silent.mp4", frames, None)
    faceless = write_video(root / "faceless.mp4", frames, (0.1 * rng.standard_normal(20 * 640)).astype(np.float32))
    with wave.open(str(root / "voice.wav"), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000)
        w.writeframes((3000 * rng.standard_normal(16000)).astype("<i2").tobytes())
    return {"silent": silent, "faceless": faceless, "audio_only": root / "voice.wav"}


@pytest.mark.parametrize("case, pattern", [
    ("missing", "not found"),
    ("no_audio", "no audio stream"),
    ("no_video", "no video stream"),
    ("folder_missing", "does not exist"),
    ("same_file", "is the input file"),
    ("avi", r"\.mp4.*\.mkv"),
    ("directory", "is a directory"),
])
def test_bad_input_is_refused_before_anything_is_written(clips, bad_files, tmp_path, case, pattern):
    src, out = clips[4], tmp_path / "out.mp4"
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    if case == "missing":
        src = tmp_path / "nope.mp4"
    elif case == "no_audio":
        src = bad_files["silent"]
    elif case == "no_video":
        src = bad_files["audio_only"]
    elif case == "folder_missing":
        out = tmp_path / "no" / "such" / "out.mp4"
    elif case == "same_file":
        out = src.parent / ".." / src.parent.name / src.name  # the input, spelled another way
    elif case == "avi":
        out = tmp_path / "out.avi"
    elif case == "directory":
        out = tmp_path
    with pytest.raises(MediaError, match=pattern) as info:
        fix_file(src, out, delay_ms=40.0)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "out.mp4").exists() and not list(tmp_path.glob(".*.tmp"))
    assert hashlib.sha256(clips[4].read_bytes()).hexdigest() == digest  # the input is never touched


def test_no_face_to_measure(engine, bad_files, tmp_path):
    with pytest.raises(NoFaceError, match="no face"):
        fix_file(bad_files["faceless"], tmp_path / "out.mp4", engine=engine)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kwargs, pattern", [({"delay_ms": float("nan")}, "finite"),
                                             ({"delay_ms": 40.0, "audio": "mp3"}, "audio must be")])
def test_bad_arguments(clips, tmp_path, kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        fix_file(clips[4], tmp_path / "out.mp4", **kwargs)


EDIT_LIST_CLIP = Path(__file__).resolve().parents[2].parent / "shared" / "real_clips" / "lrdl_sample.mp4"


@pytest.mark.skipif(not EDIT_LIST_CLIP.is_file(), reason="shared/real_clips/lrdl_sample.mp4 is not here")
def test_an_mp4_edit_list_is_kept_in_mp4_and_refused_in_matroska(engine, tmp_path):
    """Its video starts 1.84 s into the coded stream: Matroska would move every stream 1.84 s later."""
    with pytest.raises(MediaError, match="edit list.*name the output .mp4"):
        fix_file(EDIT_LIST_CLIP, tmp_path / "moved.mkv", delay_ms=-160.0)
    assert not (tmp_path / "moved.mkv").exists()
    fix_file(EDIT_LIST_CLIP, tmp_path / "moved.mp4", delay_ms=-160.0)  # the sound 4 frames late
    assert engine.sync_file(tmp_path / "moved.mp4").offset_frames in (3, 4, 5)
