"""Face detection and tracking on synthetic videos made from a real face photo (skimage's astronaut).

The astronaut's face is pasted (resized, moving, flipped) onto a 640x360 background, so the ground truth of
every frame (face box, mouth centre) is known exactly.
"""
from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np
import pytest

from edge_sync.errors import NoFaceError
from edge_sync.features.faces import (DETECTORS, FaceBox, FaceDetector, FaceTracker, HaarDetector, get_detector,
                                      register_detector, track_faces)
from edge_sync.features.video import crop_region, mouth_box

skdata = pytest.importorskip("skimage.data", reason="tests use scikit-image's bundled astronaut photo")
# OpenCV 5 has no CascadeClassifier: the Haar fallback is then an extra ([haar] pins OpenCV 4)
needs_haar = pytest.mark.skipif(not hasattr(cv2, "CascadeClassifier"),
                                reason="OpenCV 5 has no Haar cascades: pip install 'edge-sync[haar]'")

# Patch of the photo around the head and where things are in the photo (read off the 512x512 image by eye;
# the Haar cascade finds the face box (177, 66, 95, 95) on the full photo).
PX0, PY0, PX1, PY1 = 120, 20, 330, 220
PHOTO_MOUTH = (224.0, 144.0)
PHOTO_BOX = (177.0, 66.0, 95.0, 95.0)
H, W = 360, 640


@lru_cache(maxsize=1)
def _photo() -> np.ndarray:
    return skdata.astronaut()


@lru_cache(maxsize=1)
def _background() -> np.ndarray:
    yy, xx = np.mgrid[0:H, 0:W]
    bg = np.stack([60 + 80 * xx / W, 90 + 40 * yy / H, 140 - 60 * xx / W], -1)
    noise = np.random.default_rng(0).normal(0, 3, bg.shape)
    return np.clip(bg + noise, 0, 255).astype(np.uint8)


def _paste(frame: np.ndarray, x: float, y: float, scale: float, flip: bool = False):
    """Paste the head patch at (x, y) scaled; return (mouth_xy, face_box_xywh) ground truth in the frame."""
    patch = _photo()[PY0:PY1, PX0:PX1]
    if flip:
        patch = patch[:, ::-1]
    patch = cv2.resize(patch, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    xi, yi = int(round(x)), int(round(y))
    frame[yi:yi + patch.shape[0], xi:xi + patch.shape[1]] = patch
    mx, (bx, by, bw, bh) = PHOTO_MOUTH[0], PHOTO_BOX
    if flip:
        mx, bx = PX1 - 1 - (mx - PX0), PX1 - (bx + bw - PX0)
    mouth = (xi + (mx - PX0) * scale, yi + (PHOTO_MOUTH[1] - PY0) * scale)
    return mouth, (xi + (bx - PX0) * scale, yi + (by - PY0) * scale, bw * scale, bh * scale)


def _moving(n: int = 60, blank: tuple[int, int] | None = None):
    """One face moving right 3 px/frame, down 0.5 px/frame and growing 0.7%/frame; optional blank frames."""
    frames, truth = [], []
    for i in range(n):
        f = _background().copy()
        if blank and blank[0] <= i < blank[1]:
            f[:] = 20
            truth.append(None)
        else:
            truth.append(_paste(f, 100 + 3 * i, 40 + 0.5 * i, 0.6 + 0.004 * i))
        frames.append(f)
    return frames, truth


def _iou(a, b) -> float:
    return FaceBox(*a).iou(FaceBox(*b))


# --- detector --------------------------------------------------------------------------------------
@needs_haar
def test_registry_has_haar_and_rejects_unknown_names():
    assert "haar" in DETECTORS and DETECTORS["haar"] is HaarDetector
    det = get_detector("haar")
    assert isinstance(det, HaarDetector) and det.name == "haar"
    assert get_detector(det) is det
    with pytest.raises(ValueError, match="unknown face detector 'nope'.*haar"):
        get_detector("nope")
    with pytest.raises(ValueError, match="already registered"):
        register_detector("haar")(HaarDetector)


@needs_haar
def test_registered_detector_is_usable_by_name():
    @register_detector("haar_alt2_test")
    class HaarAlt2(HaarDetector):
        def __init__(self, **kw):
            super().__init__(cascade="haarcascade_frontalface_alt2.xml", **kw)

    try:
        frame = _background().copy()
        _, box = _paste(frame, 200, 40, 0.8)
        found = get_detector("haar_alt2_test").detect(frame)
        assert len(found) == 1 and _iou(found[0].as_xywh(), box) > 0.5
    finally:
        DETECTORS.pop("haar_alt2_test")


@needs_haar
def test_haar_finds_the_real_face_in_the_photo():
    found = HaarDetector().detect(_photo())
    assert len(found) == 1
    assert _iou(found[0].as_xywh(), PHOTO_BOX) > 0.6
    assert found[0].score >= 1


@needs_haar
@pytest.mark.parametrize("scale", [0.55, 1.0, 1.3])
def test_detection_maps_boxes_back_to_full_resolution(scale):
    frame = _background().copy()
    _, box = _paste(frame, 180, 30, scale)
    det = HaarDetector(detect_size=320)
    found = det.detect(frame)
    assert len(found) == 1
    assert _iou(found[0].as_xywh(), box) > 0.6, (found, box)
    assert not HaarDetector().detect(_background())


@needs_haar
def test_detector_rejects_bad_frames_clearly():
    det = HaarDetector()
    with pytest.raises(ValueError, match="grayscale"):
        det.detect(np.zeros((360, 640), np.uint8))
    with pytest.raises(TypeError, match="uint8"):
        det.detect(np.zeros((360, 640, 3), np.float32))
    with pytest.raises(ValueError, match=r"\[H, W, 3\]"):
        det.detect(np.zeros((360, 640, 1), np.uint8))
    with pytest.raises(FileNotFoundError, match="cascade"):
        HaarDetector(cascade="no_such_cascade.xml")


# --- tracker ---------------------------------------------------------------------------------------
def test_tracker_follows_motion_and_mouth_crops_are_centred():
    frames, truth = _moving(60)
    res = track_faces(frames, crops=("mouth", "legacy_face"))
    assert res.num_frames == 60 and len(res.tracks) == 1
    assert res.frames_without_face.size == 0
    tr = res.largest_track()
    np.testing.assert_array_equal(tr.frames, np.arange(60))
    assert tr.boxes.shape == (60, 4) and tr.mouth.shape == (60, 112, 112, 3) and tr.mouth.dtype == np.uint8
    assert tr.legacy_face.shape == (60, 224, 224, 3)
    errs = []
    for j in range(60):
        (mx, my), gt_box = truth[j]
        size = gt_box[2]
        assert _iou(tr.boxes[j], gt_box) > 0.6, j
        cx, cy = mouth_box(tr.boxes[j]).centre
        errs.append(np.hypot(cx - mx, cy - my) / size)
    assert max(errs) < 0.09, np.round(errs, 3)  # mouth centre within 9% of the face size, every frame
    # the boxes move right with the face (3 px per frame)
    assert 150 < tr.boxes[-1, 0] - tr.boxes[0, 0] < 200
    # crops are the frames' content at the tracked box, and show the same mouth as a crop at the true mouth
    j = 33
    np.testing.assert_array_equal(tr.mouth[j], crop_region(frames[j], mouth_box(tr.boxes[j]), 112))
    (mx, my), gt_box = truth[j]
    ref = crop_region(frames[j], mouth_box((mx - 0.5 * gt_box[2], my - 0.8 * gt_box[3], gt_box[2], gt_box[3])), 112)
    a, b = tr.mouth[j].astype(float).ravel(), ref.astype(float).ravel()
    assert np.corrcoef(a, b)[0, 1] > 0.8
    x = tr.model_input()
    assert x.shape == (1, 3, 60, 112, 112) and x.dtype == np.float32


@needs_haar
def test_interpolated_frames_lie_between_detections():
    frames, _ = _moving(40)
    tracker = FaceTracker("haar", detect_every=5, cut_threshold=None)
    results = []
    for f in frames:
        results += tracker.push(f)
    results += tracker.finish()
    boxes = {r.frame_index: r.box.as_xywh().astype(np.float64) for r in results}
    assert sorted(boxes) == list(range(40))
    det_frames = [0, 5, 10, 15, 20, 25, 30, 35, 39]  # every 5th, plus the last frame at finish()
    assert tracker.detection_frames == len(det_frames)
    for a, b in zip(det_frames, det_frames[1:]):
        for j in range(a + 1, b):
            t = (j - a) / (b - a)
            np.testing.assert_allclose(boxes[j], boxes[a] + t * (boxes[b] - boxes[a]), atol=1e-3)
            assert np.all(boxes[j] >= np.minimum(boxes[a], boxes[b]) - 1e-3)
            assert np.all(boxes[j] <= np.maximum(boxes[a], boxes[b]) + 1e-3)


@pytest.mark.parametrize("blank,cut_threshold", [((32, 44), None), ((32, 44), 25.0), ((31, 34), 25.0)])
def test_blank_frames_are_reported_missing_without_crops(blank, cut_threshold):
    # without cut detection, the face's exit/return between detection frames (30|35, 40|45) is found by the
    # region search over the buffered frames; with it, a gap shorter than detect_every is caught as well
    frames, _ = _moving(80, blank=blank)
    res = track_faces(frames, cut_threshold=cut_threshold)
    gap = np.arange(*blank)
    np.testing.assert_array_equal(res.frames_without_face, gap)
    assert len(res.tracks) == 1  # the face comes back within max_gap: same track, with a gap
    tr = res.tracks[0]
    assert tr.track_id == 0 and tr.start == 0 and tr.end == 79
    np.testing.assert_array_equal(tr.missing, gap)
    assert not np.isin(tr.frames, gap).any()
    assert len(tr.frames) == len(tr.mouth) == len(tr.boxes) == 80 - gap.size


def test_long_absence_ends_the_track_and_starts_a_new_one():
    frames, _ = _moving(90, blank=(30, 62))
    res = track_faces(frames, max_gap=10)
    assert [(t.track_id, t.start, t.end) for t in res.tracks] == [(0, 0, 29), (1, 62, 89)]
    np.testing.assert_array_equal(res.frames_without_face, np.arange(30, 62))


def test_two_faces_give_two_stable_tracks():
    frames, truth = [], []
    for i in range(40):
        f = _background().copy()
        left = _paste(f, 40 + i, 60, 0.9)
        right = _paste(f, 380 - i, 60 + 0.5 * i, 0.7, flip=True)
        frames.append(f)
        truth.append((left, right))
    res = track_faces(frames)
    assert len(res.tracks) == 2
    assert sorted(t.track_id for t in res.tracks) == [0, 1]
    for tr in res.tracks:
        np.testing.assert_array_equal(tr.frames, np.arange(40))
    by_side = sorted(res.tracks, key=lambda t: t.boxes[0, 0])
    for side, tr in enumerate(by_side):  # each track stays on its own face for the whole clip
        for j in range(40):
            assert _iou(tr.boxes[j], truth[j][side][1]) > 0.5, (side, j)
    assert res.largest_track() is by_side[0]  # same length, the left face is bigger


@needs_haar
def test_buffer_is_bounded_and_results_stream_out():
    tracker = FaceTracker("haar", detect_every=5, crops=("mouth",))
    bg = _background()
    max_buffered, streamed = 0, 0
    for i in range(200):
        f = bg.copy()
        _paste(f, 150 + 60 * np.sin(i / 15), 40 + 20 * np.cos(i / 11), 0.8)
        streamed += len(tracker.push(f))
        max_buffered = max(max_buffered, tracker.buffered)
    assert max_buffered <= tracker.detect_every + 1
    assert streamed >= 195  # results leave as the stream goes, not at the end
    rest = tracker.finish()
    assert streamed + len(rest) == 200
    assert tracker.frames_without_face().size == 0
    with pytest.raises(RuntimeError, match="finished"):
        tracker.push(bg)


def test_faceless_video_raises_no_face_error():
    frames = [_background().copy() for _ in range(30)]
    with pytest.raises(NoFaceError, match="640x360.*frontal"):
        track_faces(frames)
    with pytest.raises(NoFaceError, match="0 frames"):
        track_faces([])


def test_short_tracks_are_dropped_as_false_positives():
    frames, _ = _moving(40, blank=(6, 40))  # a face for 6 frames only
    with pytest.raises(NoFaceError):
        track_faces(frames, min_track=10)
    res = track_faces(frames, min_track=5)
    assert len(res.tracks) == 1 and res.tracks[0].end == 5


def test_tracker_rejects_bad_input():
    tracker = FaceTracker()
    with pytest.raises(ValueError, match="frame 0.*grayscale"):
        tracker.push(np.zeros((360, 640), np.uint8))
    with pytest.raises(TypeError, match="uint8"):
        tracker.push(np.zeros((360, 640, 3), np.float64))
    tracker.push(_background())
    with pytest.raises(ValueError, match="same size"):
        tracker.push(np.zeros((100, 100, 3), np.uint8))
    with pytest.raises(ValueError, match="detect_every"):
        FaceTracker(detect_every=0)
    with pytest.raises(ValueError, match="unknown crop kind"):
        FaceTracker(crops=("lips",))


def test_a_custom_detector_instance_drives_the_tracker():
    class FixedDetector(FaceDetector):
        """A real (if trivial) detector: one face in the middle of any image that is not blank."""

        def detect(self, frame_rgb):
            h, w = frame_rgb.shape[:2]
            return [FaceBox(w / 2 - 40, h / 2 - 40, 80, 80, 1.0)] if frame_rgb.max() > 20 else []

    frames, _ = _moving(30, blank=(12, 18))
    res = track_faces(frames, detector=FixedDetector(), detect_every=4)
    np.testing.assert_array_equal(res.frames_without_face, np.arange(12, 18))
    np.testing.assert_allclose(res.tracks[0].boxes, np.tile([280, 140, 80, 80], (24, 1)), atol=1e-4)


# --- YuNet: the default, learned detector with landmarks -------------------------------------------------
def test_yunet_is_the_default_detector_and_haar_stays_registered():
    from edge_sync.features.faces import DEFAULT_DETECTOR, YuNetDetector

    assert DEFAULT_DETECTOR == "yunet" and isinstance(get_detector(), YuNetDetector)
    assert DETECTORS["haar"] is HaarDetector


@pytest.mark.skipif(hasattr(cv2, "CascadeClassifier"), reason="OpenCV 4 has the Haar cascades")
def test_haar_on_opencv_5_names_the_extra():
    from edge_sync.errors import MissingExtraError

    with pytest.raises(MissingExtraError, match=r"edge-sync\[haar\]"):
        get_detector("haar")


def test_yunet_finds_the_photo_face_with_landmarks_and_centres_the_mouth_crop():
    from edge_sync.features.video import MOUTH_CENTRE

    boxes = get_detector("yunet").detect(_photo())
    assert len(boxes) == 1
    box = boxes[0]
    assert box.landmarks is not None and len(box.landmarks) == 5
    mouth = np.mean(box.landmarks[3:5], axis=0)
    # the aligned box puts the mouth corners' midpoint where the mouth crop is centred ...
    assert box.x + MOUTH_CENTRE[0] * box.w == pytest.approx(mouth[0], abs=0.01)
    assert box.y + MOUTH_CENTRE[1] * box.h == pytest.approx(mouth[1], abs=0.01)
    # ... which is the photo's mouth, and the box has the size of the face (Haar's box: 95 px)
    assert np.hypot(mouth[0] - PHOTO_MOUTH[0], mouth[1] - PHOTO_MOUTH[1]) < 6
    assert 0.85 < box.w / PHOTO_BOX[2] < 1.2


@pytest.mark.parametrize("scale, flip", [(0.35, False), (1.4, True)])
def test_yunet_tracks_small_and_large_faces_and_the_mouth_crop_follows_the_mouth(scale, flip):
    """A face of ~50 px and one of ~200 px (mirrored): every frame tracked, mouth centre within a few pixels."""
    frames, mouths = [], []
    for i in range(30):
        frame = _background().copy()
        mouth, _ = _paste(frame, 40 + 2 * i, 40 + 0.5 * i, scale, flip)
        frames.append(frame)
        mouths.append(mouth)
    tracks = track_faces(frames, detector="yunet", detect_every=5)
    track = tracks.largest_track()
    assert len(track) == 30 and len(tracks.frames_without_face) == 0
    from edge_sync.features.video import MOUTH_CENTRE

    centre = track.boxes[:, :2] + track.boxes[:, 2:] * np.array(MOUTH_CENTRE)
    err = np.hypot(*(centre - np.array(mouths)).T)
    assert np.median(err) < 0.1 * track.boxes[:, 2].mean(), err  # the hand-read photo mouth is itself ~3 px off


def test_yunet_region_detection_keeps_landmarks_in_frame_coordinates():
    frame = _background().copy()
    mouth, face = _paste(frame, 300, 100, 0.6)
    det = get_detector("yunet")
    region = (face[0] - face[2], face[1] - face[3], face[0] + 2 * face[2], face[1] + 2 * face[3])
    found = det.detect_region(frame, region, face_size=face[2])
    assert len(found) == 1
    assert np.hypot(*(np.mean(found[0].landmarks[3:5], axis=0) - np.array(mouth))) < 5


def test_tracked_faces_are_looked_for_around_their_track_between_whole_frame_passes():
    """With full_every=25, detection frames in between only search around the followed face: fewer whole-frame
    passes, the same coverage, boxes close to the whole-frame tracker's."""
    frames, truth = _moving(60)
    every = FaceTracker("yunet", detect_every=5, full_every=None)
    sparse = FaceTracker("yunet", detect_every=5, full_every=25)
    out = {}
    for name, tracker in (("every", every), ("sparse", sparse)):
        res = [r for f in frames for r in tracker.push(f)] + tracker.finish()
        out[name] = {r.frame_index: r.box.as_xywh() for r in res}
    assert sorted(out["sparse"]) == sorted(out["every"]) == list(range(60))
    assert every.full_detections == every.detection_frames == 13
    assert sparse.detection_frames == 13 and sparse.full_detections == 3  # frames 0, 25, 50
    from edge_sync.features.video import MOUTH_CENTRE

    def mouth_error(boxes):
        return np.median([np.hypot(*(boxes[i][:2] + boxes[i][2:] * np.array(MOUTH_CENTRE) - np.array(truth[i][0])))
                          for i in range(60)])

    assert mouth_error(out["sparse"]) < mouth_error(out["every"]) + 1.0  # the mouth crop is as well placed


def test_a_face_that_appears_is_found_by_the_next_whole_frame_pass():
    frames, _ = _moving(70, blank=(0, 12))  # the face enters at frame 12
    tracker = FaceTracker("yunet", detect_every=5, full_every=25, cut_threshold=None)
    res = [r for f in frames for r in tracker.push(f)] + tracker.finish()
    first = min(r.frame_index for r in res)
    assert 12 <= first <= 12 + 5  # no track yet, so every detection frame is a whole-frame pass
    with pytest.raises(ValueError, match="full_every"):
        FaceTracker(full_every=0)


# --- per-frame landmark cues ---------------------------------------------------------------------------------
def test_detection_frames_carry_the_detectors_own_box_and_interpolated_frames_none():
    frames, _ = _moving(40)
    tracker = FaceTracker("yunet", detect_every=5)
    res = [r for f in frames for r in tracker.push(f)] + tracker.finish()
    detected = sorted(r.frame_index for r in res if r.detection is not None)
    assert detected == list(range(0, 40, 5)) + [39]  # every 5th frame and the last; the rest interpolated
    for r in res:
        if r.detection is not None:
            assert r.detection.landmarks is not None and len(r.detection.landmarks) == 5


def _face_marks(yaw_shift: float = 0.0, roll_deg: float = 0.0, mouth_half: float = 18.0) -> FaceBox:
    """Landmarks of a frontal face (eyes 40 px apart, mouth 45 px below), the nose moved sideways by yaw_shift px,
    the whole face rolled by roll_deg."""
    pts = np.array([[-20, 0], [20, 0], [yaw_shift, 22], [-mouth_half, 45], [mouth_half, 45]], float)
    a = np.deg2rad(roll_deg)
    pts = pts @ np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]]) + [300, 200]
    return FaceBox(250, 150, 100, 100, 0.9, tuple(map(tuple, pts)))


def test_landmark_cues_measure_mouth_width_yaw_and_size_and_are_nan_without_a_detection():
    from edge_sync.features.faces import aligned_box, landmark_cues

    frontal, turned, rolled = _face_marks(), _face_marks(yaw_shift=9.0), _face_marks(yaw_shift=9.0, roll_deg=30)
    haar = FaceBox(10, 10, 80, 80, 5.0)  # a box without landmarks
    cues = landmark_cues([frontal, None, turned, rolled, haar])
    assert cues["landmarks"].shape == (5, 5, 2) and cues["landmarks"].dtype == np.float32
    np.testing.assert_allclose(cues["mouth_width"][[0, 2, 3]], 36 / 40, rtol=1e-6)
    assert cues["yaw"][0] == pytest.approx(0, abs=1e-6)
    assert cues["yaw"][2] == pytest.approx(9 / 45, rel=1e-5)  # towards the image's right: positive
    assert cues["yaw"][3] == pytest.approx(cues["yaw"][2], rel=1e-5)  # in-plane roll cancels
    assert landmark_cues([_face_marks(yaw_shift=-9.0)])["yaw"][0] < 0
    assert cues["face_size"][0] == 100 and cues["face_size"][4] == 80
    # a frame the tracker interpolated has no measures; Haar has a size but no landmarks
    for key in ("mouth_width", "yaw", "face_size"):
        assert np.isnan(cues[key][1])
    assert np.isnan(cues["landmarks"][[1, 4]]).all() and np.isnan(cues["yaw"][4])
    # YuNet's aligned box: face_size is the landmark-placed square the crops come from
    assert landmark_cues([aligned_box(np.array(frontal.landmarks))])["face_size"][0] == pytest.approx(45 / 0.42)
    assert {k: v.shape for k, v in landmark_cues([]).items()}["landmarks"] == (0, 5, 2)
