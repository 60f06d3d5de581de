"""Face detection and streaming face tracking -> per-track mouth (and legacy face) crops.

numpy + OpenCV only. Detectors live in the :data:`DETECTORS` registry (``register_detector``): the default
``"yunet"``, OpenCV's learned YuNet detector with five landmarks (its 230 KB model ships in this package), whose
boxes are placed by the landmarks so mouth crops sit on the mouth; and ``"haar"``, OpenCV's frontal-face Haar
cascade, whose XML ships inside opencv-python < 5 (no download either).

:class:`FaceTracker` is a streaming tracker with a bounded frame buffer (at most ``detect_every`` frames):

* it runs the detector on every ``detect_every``-th frame only (and on a shot cut, found by a cheap
  thumbnail difference, and on the last frame), because detection is the expensive part; while every track is
  followed, those looks cover only the regions around the tracks, with a whole-frame pass at least every
  ``full_every`` frames for faces that appear;
* detections are associated with tracks by IoU / centre distance against each track's constant-velocity
  prediction; a track missed by the full-frame detector gets a second, more lenient look in a small region
  around its prediction (Haar misses faces now and then);
* boxes are smoothed causally (an alpha-beta filter on centre and size: syncnet_python median-filters whole
  tracks offline, which needs the future) and linearly interpolated for the frames between detections;
* where a face appears or disappears between two detection frames, the buffered frames in between are
  searched around the face (region detection) to find the exact frame, so frames without a face are reported
  as missing and never get an invented crop;
* a track survives up to ``max_gap`` frames without a face (the gap is reported) and keeps its id;
  tracks with fewer than ``min_track`` boxed frames are dropped as false positives (their crops are held
  back until the track is confirmed: bounded, ``min_track`` small crops per tentative track).
"""
from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import cv2
import numpy as np

from edge_sync.errors import MissingExtraError, NoFaceError
from edge_sync.features.video import MOUTH_CENTRE, check_frame, get_crop_kind, to_model_input
from edge_sync.features.yunet import YuNetOnnxRuntime
from edge_sync.spec import LEGACY_FACE, MOUTH, VideoPreprocessing

log = logging.getLogger(__name__)

__all__ = [
    "FaceBox", "FaceDetector", "HaarDetector", "YuNetDetector", "aligned_box", "landmark_cues", "DEFAULT_DETECTOR",
    "DETECTORS",
    "register_detector", "get_detector",
    "CropResult", "FaceTracker", "FaceTrack", "FaceTracks", "track_faces",
]


# --- boxes ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FaceBox:
    """A face box in full-resolution pixel coordinates; ``score`` is detector-specific (higher = surer)."""

    x: float
    y: float
    w: float
    h: float
    score: float = 1.0
    # five landmarks (right eye, left eye, nose tip, right and left mouth corner, as the subject sees them)
    # as ((x, y), ...) in full-resolution pixels, where the detector gives them (YuNet); None for Haar
    landmarks: tuple[tuple[float, float], ...] | None = None

    @property
    def cx(self) -> float:
        return self.x + self.w / 2.0

    @property
    def cy(self) -> float:
        return self.y + self.h / 2.0

    @property
    def size(self) -> float:
        return max(self.w, self.h)

    @property
    def area(self) -> float:
        return self.w * self.h

    def as_xywh(self) -> np.ndarray:
        return np.array([self.x, self.y, self.w, self.h], dtype=np.float32)

    def iou(self, other: "FaceBox") -> float:
        ix = max(0.0, min(self.x + self.w, other.x + other.w) - max(self.x, other.x))
        iy = max(0.0, min(self.y + self.h, other.y + other.h) - max(self.y, other.y))
        inter = ix * iy
        union = self.area + other.area - inter
        return inter / union if union > 0 else 0.0

    def centre_distance(self, other: "FaceBox") -> float:
        return float(np.hypot(self.cx - other.cx, self.cy - other.cy))

    @classmethod
    def from_centre(cls, cx: float, cy: float, w: float, h: float, score: float = 1.0,
                    landmarks: tuple[tuple[float, float], ...] | None = None) -> "FaceBox":
        return cls(cx - w / 2.0, cy - h / 2.0, w, h, score, landmarks)

    def shifted(self, dx: float, dy: float) -> "FaceBox":
        """The same box (and landmarks) moved by (dx, dy): region detections back to frame coordinates."""
        marks = None if self.landmarks is None else tuple((x + dx, y + dy) for x, y in self.landmarks)
        return FaceBox(self.x + dx, self.y + dy, self.w, self.h, self.score, marks)


# --- detectors -----------------------------------------------------------------------------------
class FaceDetector:
    """Base class: ``detect(frame_rgb) -> list[FaceBox]`` in full-resolution coordinates.

    ``detect_region`` looks again inside a small region (x0, y0, x1, y1) with lenient settings; the tracker
    uses it to confirm a face it expects there. The default crops the region and calls ``detect``.
    """

    name = "base"

    def detect(self, frame_rgb: np.ndarray) -> list[FaceBox]:  # pragma: no cover - interface
        raise NotImplementedError

    def detect_region(self, frame_rgb: np.ndarray, region: tuple[float, float, float, float],
                      face_size: float | None = None) -> list[FaceBox]:
        """Faces inside ``region`` (x0, y0, x1, y1), full-frame coordinates; ``face_size`` is the expected size."""
        crop, x0, y0 = _cut(frame_rgb, region, 8)
        if crop is None:
            return []
        return [b.shifted(x0, y0) for b in self.detect(np.ascontiguousarray(crop))]


def _cut(frame: np.ndarray, region: tuple[float, float, float, float], min_side: int):
    h, w = frame.shape[:2]
    x0, y0 = max(0, int(region[0])), max(0, int(region[1]))
    x1, y1 = min(w, int(np.ceil(region[2]))), min(h, int(np.ceil(region[3])))
    if x1 - x0 < min_side or y1 - y0 < min_side:
        return None, x0, y0
    return frame[y0:y1, x0:x1], x0, y0


DETECTORS: dict[str, type[FaceDetector]] = {}
DEFAULT_DETECTOR = "yunet"  # learned, with landmarks; "haar" stays registered as the fallback


def register_detector(name: str) -> Callable[[type[FaceDetector]], type[FaceDetector]]:
    """Class decorator: make a detector available by name to :func:`get_detector` and the tracker."""

    def deco(cls: type[FaceDetector]) -> type[FaceDetector]:
        if name in DETECTORS:
            raise ValueError(f"a face detector named {name!r} is already registered ({DETECTORS[name].__name__})")
        cls.name = name
        DETECTORS[name] = cls
        return cls

    return deco


def get_detector(detector: str | FaceDetector = DEFAULT_DETECTOR, **kwargs: Any) -> FaceDetector:
    """A detector instance from a registered name (kwargs go to its constructor) or an instance as is."""
    if isinstance(detector, FaceDetector):
        if kwargs:
            raise ValueError("detector options can only be given with a detector name, not an instance")
        return detector
    try:
        cls = DETECTORS[detector]
    except (KeyError, TypeError):
        raise ValueError(f"unknown face detector {detector!r}; registered: {sorted(DETECTORS)}") from None
    return cls(**kwargs)


@register_detector("haar")
class HaarDetector(FaceDetector):
    """OpenCV's frontal-face Haar cascade (the XML ships inside opencv-python<5 under ``cv2.data``; OpenCV 5 has no
    cascades at all, so this fallback needs ``pip install 'edge-sync[haar]'`` there).

    Runs on a grayscale copy downscaled so its longest side is ``detect_size`` pixels (speed: ~4x fewer
    pixels for 640x360), then maps boxes back to full resolution. ``min_face`` is the smallest face in pixels
    *at detection scale* (the cascade's own window is 24). ``score`` is the number of merged neighbour
    detections (OpenCV's detectMultiScale2), the cascade's usual confidence.
    """

    def __init__(self, cascade: str = "haarcascade_frontalface_default.xml", detect_size: int = 320,
                 scale_factor: float = 1.1, min_neighbors: int = 5, min_face: int = 24,
                 region_min_neighbors: int = 3, equalize: bool = False) -> None:
        if not hasattr(cv2, "CascadeClassifier"):
            raise MissingExtraError("cv2.CascadeClassifier", "haar", "the Haar face detector",
                                    hint=f"OpenCV {cv2.__version__} has no Haar cascades (OpenCV 5 dropped them): "
                                         "pip install 'edge-sync[haar]' for OpenCV 4, or use the default detector "
                                         "(yunet)")
        path = cascade if os.path.isabs(cascade) else os.path.join(_haar_dir(), cascade)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"Haar cascade not found at {path}; install opencv-python-headless<5 "
                                    "(OpenCV 5 no longer ships the cascades) or pass an absolute path")
        self._cascade = cv2.CascadeClassifier(path)
        if self._cascade.empty():
            raise ValueError(f"OpenCV could not load the Haar cascade {path}")
        if detect_size < 32:
            raise ValueError(f"detect_size must be >= 32 pixels, got {detect_size}")
        if scale_factor <= 1.0:
            raise ValueError(f"scale_factor must be > 1, got {scale_factor}")
        self.cascade_path = path
        self.detect_size = int(detect_size)
        self.scale_factor = float(scale_factor)
        self.min_neighbors = int(min_neighbors)
        self.min_face = int(min_face)
        self.region_min_neighbors = int(region_min_neighbors)
        self.equalize = bool(equalize)

    def detect(self, frame_rgb: np.ndarray) -> list[FaceBox]:
        check_frame(frame_rgb)
        return self._run(frame_rgb, self.min_neighbors, self.min_face)

    def detect_region(self, frame_rgb: np.ndarray, region: tuple[float, float, float, float],
                      face_size: float | None = None) -> list[FaceBox]:
        """Lenient look inside ``region``; with ``face_size`` only faces of 0.67x..1.5x that size are searched,
        on a copy scaled so the face is ~48 px (a handful of cascade scales: ~1 ms)."""
        crop, x0, y0 = _cut(frame_rgb, region, self.min_face)
        if crop is None:
            return []
        scale, min_face, max_face = None, self.min_face, None
        if face_size is not None and face_size > 0:
            scale = min(1.0, 48.0 / face_size)
            min_face = max(self.min_face, int(0.67 * face_size * scale))
            max_face = int(np.ceil(1.5 * face_size * scale))
        found = self._run(crop, self.region_min_neighbors, min_face, scale, max_face)
        return [FaceBox(b.x + x0, b.y + y0, b.w, b.h, b.score) for b in found]

    def _run(self, rgb: np.ndarray, min_neighbors: int, min_face: int, scale: float | None = None,
             max_face: int | None = None) -> list[FaceBox]:
        h, w = rgb.shape[:2]
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        if scale is None:
            scale = min(1.0, self.detect_size / max(h, w))
        gray, sx, sy = _downscale(gray, scale)
        if self.equalize:
            gray = cv2.equalizeHist(gray)
        if min(gray.shape) < min_face:
            return []
        max_size = (max_face, max_face) if max_face else (0, 0)
        rects, neighbours = self._cascade.detectMultiScale2(
            gray, scaleFactor=self.scale_factor, minNeighbors=min_neighbors, minSize=(min_face, min_face),
            maxSize=max_size)
        return [FaceBox(float(x) * sx, float(y) * sy, float(bw) * sx, float(bh) * sy, float(n))
                for (x, y, bw, bh), n in zip(np.asarray(rects).reshape(-1, 4), np.asarray(neighbours).reshape(-1))]


def _downscale(image: np.ndarray, scale: float) -> tuple[np.ndarray, float, float]:
    """``image`` shrunk by ``scale`` (< 1; else as is) and the factors (sx, sy) that map its pixels back."""
    if scale >= 1.0:
        return image, 1.0, 1.0
    h, w = image.shape[:2]
    size = (max(1, int(round(w * scale))), max(1, int(round(h * scale))))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), w / size[0], h / size[1]


def _haar_dir() -> str:
    data = getattr(cv2, "data", None)
    path = getattr(data, "haarcascades", None)
    if not path:
        raise FileNotFoundError("this OpenCV build has no cv2.data.haarcascades; install opencv-python-headless<5")
    return path


YUNET_MODEL = Path(__file__).resolve().parent / "detectors" / "face_detection_yunet_2026may.onnx"
# Where the eyes sit in a frontal face box of the convention the mouth crop was made for (Haar's box on the
# astronaut photo: eyes at 0.38 of its height, mouth at MOUTH_CENTRE[1] = 0.80; YuNet's landmarks on the same
# photo put them 41 px apart in a 95 px box).
EYE_LINE = 0.38


def aligned_box(landmarks: np.ndarray, score: float = 1.0) -> FaceBox:
    """A square face box placed by five landmarks instead of a detector's box edges.

    Centred horizontally on the mouth, its mouth line (``MOUTH_CENTRE[1]``) through the mouth corners' midpoint,
    its side the eye-to-mouth distance over (``MOUTH_CENTRE[1] - EYE_LINE``). So every crop kind keeps its
    geometry (the mouth crop lands at the middle of the mouth at a scale fixed by the face, not by how wide the
    mouth opens), and the box follows the mouth rather than the box edges, which jitter with hair and pose.
    """
    lm = np.asarray(landmarks, np.float64).reshape(5, 2)
    eyes, mouth = lm[:2].mean(axis=0), lm[3:5].mean(axis=0)
    side = float(np.hypot(*(mouth - eyes))) / (MOUTH_CENTRE[1] - EYE_LINE)
    side = max(side, 1.0)
    marks = tuple((float(x), float(y)) for x, y in lm)
    return FaceBox(float(mouth[0]) - side / 2.0, float(mouth[1]) - MOUTH_CENTRE[1] * side, side, side, score, marks)


def landmark_cues(detections: Sequence[FaceBox | None]) -> dict[str, np.ndarray]:
    """Per-frame face measures from the detector's own boxes, NaN where a frame had none (the tracker
    interpolated it) or the detector gives no landmarks (Haar: ``face_size`` only).

    * ``landmarks`` float32 [T, 5, 2]: right eye, left eye, nose tip, right and left mouth corner (as the subject
      sees them), full-frame pixels, as detected (unsmoothed);
    * ``mouth_width`` [T]: mouth-corner distance / eye distance. YuNet gives the mouth corners only, so this is how
      wide the mouth is (spread lips, a smile, "ee" vs "oo"), not how far it is open; both distances shrink alike as
      the head turns, so it barely moves with yaw. Talking faces in the shared real clips read 0.78-0.91 (5th-95th
      percentile, docs/faces_cpu.md);
    * ``yaw`` [T]: the nose tip's offset from the eye-centre-to-mouth-centre midline, over the eye-to-mouth
      distance (unitless, not degrees; in-plane roll cancels): ~0 for a frontal face, > 0 when the face turns
      towards the image's right (the subject's left), growing with the turn; the mostly frontal real clips stay
      within about +-0.2;
    * ``face_size`` [T]: the detected face's side in pixels (YuNet: the landmark-placed square the crops are cut
      from before smoothing, i.e. eye-to-mouth distance / 0.42; Haar: the cascade's box).
    """
    n = len(detections)
    marks = np.full((n, 5, 2), np.nan, np.float64)
    size = np.full(n, np.nan, np.float64)
    for i, d in enumerate(detections):
        if d is not None:
            size[i] = d.size
            if d.landmarks is not None:
                marks[i] = d.landmarks
    eyes, mouth = marks[:, :2].mean(axis=1), marks[:, 3:5].mean(axis=1)
    axis = mouth - eyes
    length = np.hypot(axis[:, 0], axis[:, 1])
    nose = marks[:, 2] - eyes
    with np.errstate(invalid="ignore", divide="ignore"):
        width = np.hypot(*(marks[:, 3] - marks[:, 4]).T) / np.hypot(*(marks[:, 0] - marks[:, 1]).T)
        yaw = (axis[:, 1] * nose[:, 0] - axis[:, 0] * nose[:, 1]) / length ** 2
    return {"landmarks": marks.astype(np.float32), "mouth_width": width.astype(np.float32),
            "yaw": yaw.astype(np.float32), "face_size": size.astype(np.float32)}


@register_detector("yunet")
class YuNetDetector(FaceDetector):
    """The YuNet face detector (MIT licence, vendored in ``features/detectors``), run by onnxruntime where it is
    installed (``runner="onnxruntime"``, 2-3x faster: :mod:`edge_sync.features.yunet`) and by OpenCV's
    ``FaceDetectorYN`` otherwise (``runner="opencv"``); both decode the network's outputs the same way.

    A small CNN (~75 k parameters) that finds faces from about 10 to 300 pixels, frontal or turned, with five
    landmarks. It runs on a copy scaled so its longest side is ``detect_size`` pixels (a face 1/8 of a 1080p
    frame's height is then ~22 px, inside its range), and in :meth:`detect_region` on a crop scaled so the expected
    face is ``region_face_px``: a look around a tracked face costs a fraction of a full-frame pass. Boxes are
    :func:`aligned_box` es from the landmarks (``raw_boxes=True`` keeps the detector's own boxes).
    """

    def __init__(self, model: str | os.PathLike | None = None, detect_size: int = 320, score_threshold: float = 0.5,
                 region_score_threshold: float = 0.4, nms_threshold: float = 0.3, region_face_px: int = 64,
                 raw_boxes: bool = False, runner: str = "auto") -> None:
        path = Path(model) if model is not None else YUNET_MODEL
        if not path.is_file():
            raise FileNotFoundError(f"YuNet model not found at {path}; reinstall edge-sync (the model ships inside "
                                    "the package) or pass model=PATH")
        if detect_size < 32:
            raise ValueError(f"detect_size must be >= 32 pixels, got {detect_size}")
        self.model_path = str(path)
        self.detect_size = int(detect_size)
        self.score_threshold = float(score_threshold)
        self.region_score_threshold = float(region_score_threshold)
        self.region_face_px = int(region_face_px)
        self.raw_boxes = bool(raw_boxes)
        if runner not in ("auto", "onnxruntime", "opencv"):
            raise ValueError(f"runner must be 'auto', 'onnxruntime' or 'opencv', got {runner!r}")
        if runner == "auto":
            runner = "onnxruntime" if importlib.util.find_spec("onnxruntime") is not None else "opencv"
        self.runner = runner
        if runner == "opencv" and not hasattr(cv2, "FaceDetectorYN"):
            raise RuntimeError(f"OpenCV {cv2.__version__} has no FaceDetectorYN; install opencv-python-headless>=4.8 "
                               "or use detector='haar'")
        if runner == "onnxruntime":
            self._net = YuNetOnnxRuntime(path, self.score_threshold, float(nms_threshold), 50)
        else:
            self._net = cv2.FaceDetectorYN.create(self.model_path, "", (320, 320), self.score_threshold,
                                                  float(nms_threshold), 50)
        self._size: tuple[int, int] | None = None

    def detect(self, frame_rgb: np.ndarray) -> list[FaceBox]:
        check_frame(frame_rgb)
        h, w = frame_rgb.shape[:2]
        return self._run(frame_rgb, min(1.0, self.detect_size / max(h, w)), self.score_threshold)

    def detect_region(self, frame_rgb: np.ndarray, region: tuple[float, float, float, float],
                      face_size: float | None = None) -> list[FaceBox]:
        crop, x0, y0 = _cut(frame_rgb, region, 8)
        if crop is None:
            return []
        if face_size is not None and face_size > 0:
            scale = min(1.0, self.region_face_px / face_size)
        else:
            scale = min(1.0, self.detect_size / max(crop.shape[:2]))
        return [b.shifted(x0, y0) for b in self._run(crop, scale, self.region_score_threshold)]

    def _run(self, rgb: np.ndarray, scale: float, threshold: float) -> list[FaceBox]:
        small, sx, sy = _downscale(rgb, scale)
        bgr = cv2.cvtColor(small, cv2.COLOR_RGB2BGR)
        size = (bgr.shape[1], bgr.shape[0])
        if size != self._size:
            self._net.setInputSize(size)
            self._size = size
        self._net.setScoreThreshold(threshold)
        _, faces = self._net.detect(bgr)
        out = []
        for f in (faces if faces is not None else ()):
            marks = f[4:14].reshape(5, 2) * np.array([sx, sy])
            if self.raw_boxes:
                out.append(FaceBox(float(f[0]) * sx, float(f[1]) * sy, float(f[2]) * sx, float(f[3]) * sy,
                                   float(f[14]), tuple((float(x), float(y)) for x, y in marks)))
            else:
                out.append(aligned_box(marks, float(f[14])))
        return out


# --- tracking ------------------------------------------------------------------------------------
@dataclass
class CropResult:
    """One final per-frame result of a confirmed track: smoothed box and crops (uint8 RGB, by crop kind)."""

    track_id: int
    frame_index: int
    box: FaceBox
    crops: dict[str, np.ndarray]
    # the detector's own box (and landmarks) on this frame, unsmoothed; None where the tracker interpolated the
    # box between detection frames
    detection: FaceBox | None = None


class _BoxFilter:
    """Causal alpha-beta (constant velocity) filter on box centre and size, updated at detection frames.

    Haar boxes jitter by a few pixels and their size moves in ``scale_factor`` steps; the velocity term
    follows steady motion and zoom without the lag a plain moving average/median would add.
    """

    def __init__(self, box: FaceBox, frame: int, pos_gain: tuple[float, float], size_gain: tuple[float, float]):
        self.state = np.array([box.cx, box.cy, box.w, box.h], dtype=np.float64)
        self.landmarks = box.landmarks  # the latest detection's, as measured (the box is what gets smoothed)
        self.vel = np.zeros(4)
        self.frame = frame
        self.updates = 0
        self.alpha = np.array([pos_gain[0], pos_gain[0], size_gain[0], size_gain[0]])
        self.beta = np.array([pos_gain[1], pos_gain[1], size_gain[1], size_gain[1]])

    def predict(self, frame: int) -> FaceBox:
        s = self.state + self.vel * (frame - self.frame)
        return FaceBox.from_centre(s[0], s[1], max(s[2], 1.0), max(s[3], 1.0))

    def box(self) -> FaceBox:
        s = self.state
        return FaceBox.from_centre(s[0], s[1], max(s[2], 1.0), max(s[3], 1.0), landmarks=self.landmarks)

    def update(self, det: FaceBox, frame: int) -> FaceBox:
        dt = max(1, frame - self.frame)
        pred = self.state + self.vel * dt
        resid = np.array([det.cx, det.cy, det.w, det.h]) - pred
        if self.updates == 0:  # second sighting: take its velocity instead of ramping up from zero
            self.vel = resid / dt
            self.state = pred + resid
        else:
            self.state = pred + self.alpha * resid
            self.vel = self.vel + self.beta * resid / dt
        self.updates += 1
        self.frame = frame
        self.landmarks = det.landmarks
        return FaceBox.from_centre(self.state[0], self.state[1], max(self.state[2], 1.0), max(self.state[3], 1.0),
                                   det.score, det.landmarks)


@dataclass
class _Track:
    key: int
    filt: _BoxFilter
    first: int
    track_id: int | None = None  # assigned on confirmation
    count: int = 0  # frames with a box
    lost_since: int | None = None  # first frame without a box while the track waits for the face to return
    pending: list[tuple[int, FaceBox, dict[str, np.ndarray], FaceBox | None]] = field(default_factory=list)


def _interp(a: FaceBox, b: FaceBox, t: float) -> FaceBox:
    marks = None
    if a.landmarks is not None and b.landmarks is not None:
        marks = tuple((pa[0] + (pb[0] - pa[0]) * t, pa[1] + (pb[1] - pa[1]) * t)
                      for pa, pb in zip(a.landmarks, b.landmarks))
    return FaceBox(a.x + (b.x - a.x) * t, a.y + (b.y - a.y) * t, a.w + (b.w - a.w) * t, a.h + (b.h - a.h) * t,
                   min(a.score, b.score), marks)


class FaceTracker:
    """Streaming face tracker with a bounded buffer; see the module docstring for the algorithm.

    ``push(frame)`` takes one RGB uint8 frame [H, W, 3] and returns the :class:`CropResult` of frames that became
    final (at most ``detect_every`` frames are held); ``finish()`` flushes the rest. After ``finish``,
    :meth:`frames_without_face` lists frames that no confirmed track covers.

    Parameters: ``detector`` a registered name or instance; ``detect_every`` frames between full detections;
    ``max_gap`` frames a track may miss its face and keep its id; ``min_track`` boxed frames a track needs to be
    kept; ``crops`` crop kinds from :data:`edge_sync.features.video.CROP_KINDS`; ``iou_threshold`` /
    ``centre_threshold`` (fraction of the face size) for association; ``search_scale`` side of the region
    searched around an expected face, in face sizes; ``cut_threshold`` thumbnail difference (0..255) that
    forces a detection (None: off); ``pos_gain`` / ``size_gain`` alpha-beta gains of the box filter;
    ``copy_frames`` copies each pushed frame (set False only if the caller never reuses frame buffers);
    ``full_every`` frames at most between whole-frame detections while every track is followed (in between, the
    detector only looks around the tracked faces; a face that appears waits up to that long; None: always the
    whole frame).
    """

    def __init__(self, detector: str | FaceDetector = DEFAULT_DETECTOR, detect_every: int = 5, max_gap: int = 25,
                 min_track: int = 10, crops: Sequence[str] = ("mouth",), iou_threshold: float = 0.3,
                 centre_threshold: float = 0.5, search_scale: float = 2.0, cut_threshold: float | None = 25.0,
                 pos_gain: tuple[float, float] = (0.7, 0.3), size_gain: tuple[float, float] = (0.5, 0.2),
                 copy_frames: bool = True, full_every: int | None = 25) -> None:
        if detect_every < 1:
            raise ValueError(f"detect_every must be >= 1, got {detect_every}")
        if full_every is not None and full_every < 1:
            raise ValueError(f"full_every must be >= 1 or None, got {full_every}")
        if max_gap < 0 or min_track < 1:
            raise ValueError(f"need max_gap >= 0 and min_track >= 1, got {max_gap}, {min_track}")
        self.detector = get_detector(detector)
        self.detect_every = int(detect_every)
        self.max_gap = int(max_gap)
        self.min_track = int(min_track)
        self.crop_kinds = [get_crop_kind(c) for c in crops]
        if not self.crop_kinds:
            raise ValueError("crops must name at least one crop kind, e.g. ('mouth',)")
        self.iou_threshold = iou_threshold
        self.centre_threshold = centre_threshold
        self.search_scale = search_scale
        self.cut_threshold = cut_threshold
        self.pos_gain, self.size_gain = pos_gain, size_gain
        self.copy_frames = copy_frames
        self.full_every = full_every
        self._buffer: list[tuple[int, np.ndarray]] = []
        self._tracks: list[_Track] = []
        self._next_key = 0
        self._next_id = 0
        self._n = 0
        self._last_det: int | None = None
        self._shape: tuple[int, ...] | None = None
        self._thumb: np.ndarray | None = None
        self._covered = bytearray()
        self._finished = False
        self.detection_frames = 0  # how many frames went through the detector (for profiling)
        self.full_detections = 0  # of those, whole-frame passes; the rest looked only around the tracked faces
        self._last_full: int | None = None

    # -- public ----------------------------------------------------------------------------------
    @property
    def buffered(self) -> int:
        """Frames currently held (bounded by ``detect_every``)."""
        return len(self._buffer)

    @property
    def num_frames(self) -> int:
        return self._n

    def push(self, frame: np.ndarray) -> list[CropResult]:
        if self._finished:
            raise RuntimeError("this FaceTracker is finished; create a new one for another video")
        check_frame(frame, f"frame {self._n}")
        if self._shape is None:
            self._shape = frame.shape
        elif frame.shape != self._shape:
            raise ValueError(f"frame {self._n} has shape {frame.shape} but the video started with {self._shape}; "
                             "all frames of one video must have the same size")
        idx = self._n
        self._n += 1
        self._covered.append(0)
        self._buffer.append((idx, frame.copy() if self.copy_frames else frame))
        cut = self._is_cut(frame)
        if self._last_det is None or idx - self._last_det >= self.detect_every or cut:
            return self._step(full=cut)
        return []

    def finish(self) -> list[CropResult]:
        """Detect on the last frame if it is still buffered, end all tracks, return the remaining results."""
        if self._finished:
            return []
        out = self._step() if self._buffer else []
        for t in self._tracks:
            out.extend(self._end(t))
        self._tracks = []
        self._finished = True
        out.sort(key=lambda r: (r.frame_index, r.track_id))
        return out

    def frames_without_face(self) -> np.ndarray:
        """Frame indices not covered by any confirmed track (final only after :meth:`finish`)."""
        cov = np.frombuffer(bytes(self._covered), dtype=np.uint8)
        return np.flatnonzero(cov == 0).astype(np.int64)

    # -- internals -------------------------------------------------------------------------------
    def _is_cut(self, frame: np.ndarray) -> bool:
        """Cheap shot-cut test (mean abs difference of 32-pixel-wide thumbnails); a cut forces a detection, so a
        face that vanishes for less than ``detect_every`` frames is still noticed."""
        if self.cut_threshold is None:
            return False
        h, w = frame.shape[:2]
        step = max(1, min(h, w) // 90)  # subsample first: INTER_AREA over the full frame costs ~0.15 ms
        tw = 32
        th = max(1, int(round(h * tw / w)))
        thumb = cv2.resize(frame[::step, ::step], (tw, th), interpolation=cv2.INTER_AREA).astype(np.int16)
        prev, self._thumb = self._thumb, thumb
        return prev is not None and float(np.abs(thumb - prev).mean()) > self.cut_threshold

    def _matches(self, box: FaceBox, ref: FaceBox, loose: float = 1.0) -> bool:
        if box.iou(ref) >= self.iou_threshold / loose:
            return True
        ratio = box.size / ref.size
        return box.centre_distance(ref) <= self.centre_threshold * loose * ref.size and 1 / 1.5 <= ratio <= 1.5

    def _search(self, frame: np.ndarray, around: FaceBox) -> FaceBox | None:
        """Lenient detection in a region around ``around``; the best matching box or None."""
        side = around.size * self.search_scale
        region = (around.cx - side / 2, around.cy - side / 2, around.cx + side / 2, around.cy + side / 2)
        cands = [b for b in self.detector.detect_region(frame, region, around.size)
                 if self._matches(b, around)]
        if not cands:
            return None
        return min(cands, key=lambda b: b.centre_distance(around))

    def _detect(self, k: int, frame: np.ndarray, full: bool) -> list[FaceBox]:
        """Faces on detection frame ``k``: the whole frame, or, while every track is followed and a whole-frame
        pass happened less than ``full_every`` frames ago, only the regions around the tracks' predicted boxes
        (a few times cheaper; new faces wait for the next whole-frame pass)."""
        tracked = [t for t in self._tracks if t.lost_since is None]
        regional = (self.full_every is not None and not full and tracked and len(tracked) == len(self._tracks)
                    and self._last_full is not None and k - self._last_full < self.full_every)
        self.detection_frames += 1
        if not regional:
            self._last_full = k
            self.full_detections += 1
            return self.detector.detect(frame)
        found: list[FaceBox] = []
        for t in tracked:
            pred = t.filt.predict(k)
            side = pred.size * self.search_scale
            region = (pred.cx - side / 2, pred.cy - side / 2, pred.cx + side / 2, pred.cy + side / 2)
            found += [b for b in self.detector.detect_region(frame, region, pred.size)
                      if not any(b.iou(f) > self.iou_threshold for f in found)]
        return found

    def _step(self, full: bool = False) -> list[CropResult]:
        k, frame_k = self._buffer[-1]
        between = self._buffer[:-1]  # frames after the previous detection frame, before k
        frames = dict(self._buffer)
        dets = self._detect(k, frame_k, full)
        emitted: list[tuple[_Track, int, FaceBox, FaceBox | None]] = []  # track, frame, box, detection

        active = [t for t in self._tracks if t.lost_since is None]
        lost = [t for t in self._tracks if t.lost_since is not None]

        # 1. associate detections with active tracks (greedy on IoU with the predicted box)
        preds = {t.key: t.filt.predict(k) for t in active}
        pairs = sorted(((preds[t.key].iou(d), -preds[t.key].centre_distance(d), ti, di)
                        for ti, t in enumerate(active) for di, d in enumerate(dets)
                        if self._matches(d, preds[t.key])), reverse=True)
        matched: dict[int, FaceBox] = {}
        used: set[int] = set()
        for _, _, ti, di in pairs:
            if ti not in matched and di not in used:
                matched[ti] = dets[di]
                used.add(di)
        # 2. a second, lenient look around each active track the detector missed
        for ti, t in enumerate(active):
            if ti not in matched:
                found = self._search(frame_k, preds[t.key])
                if found is not None:
                    matched[ti] = found

        for ti, t in enumerate(active):
            prev_box = t.filt.box()
            prev_frame = t.filt.frame
            if ti in matched:
                box_k = t.filt.update(matched[ti], k)
                for j, _ in between:
                    emitted.append((t, j, _interp(prev_box, box_k, (j - prev_frame) / (k - prev_frame)), None))
                emitted.append((t, k, box_k, matched[ti]))
            else:
                # 3. the face left between detections: find the last frame that still has it
                t.lost_since = k
                for j, f in between:
                    found = self._search(f, t.filt.predict(j))
                    if found is None:
                        t.lost_since = j
                        break
                    emitted.append((t, j, t.filt.update(found, j), found))

        # 4. unmatched detections: revive a track lost earlier, or start a new one
        claimed = [m for m in matched.values()]
        rest = [d for di, d in enumerate(dets) if di not in used
                and not any(d.iou(c) > self.iou_threshold for c in claimed)]
        rest.sort(key=lambda d: -d.score)
        for d in rest:
            if any(d.iou(c) > self.iou_threshold for c in claimed):
                continue  # duplicate of a box already taken this step
            claimed.append(d)
            cand = [t for t in lost if k - t.lost_since <= self.max_gap and self._matches(d, t.filt.box(), loose=2.0)]
            if cand:
                t = min(cand, key=lambda t: d.centre_distance(t.filt.box()))
                lost.remove(t)
                gap_start = t.lost_since
                t.filt = _BoxFilter(d, k, self.pos_gain, self.size_gain)
                t.lost_since = None
            else:
                t = _Track(self._next_key, _BoxFilter(d, k, self.pos_gain, self.size_gain), first=k)
                self._next_key += 1
                self._tracks.append(t)
                gap_start = None
            # the face may have appeared before k: walk back through the buffered frames
            back: list[tuple[int, FaceBox, FaceBox]] = []
            for j, f in reversed(between):
                if gap_start is not None and j < gap_start:
                    break
                found = self._search(f, d)
                if found is None:
                    break
                kept = FaceBox(found.cx - d.w / 2, found.cy - d.h / 2, d.w, d.h, found.score, found.landmarks)
                back.append((j, kept, found))
            for j, b, found in reversed(back):
                emitted.append((t, j, b, found))
            if back:
                t.first = min(t.first, back[-1][0])
            emitted.append((t, k, t.filt.box(), d))

        # 5. crops for every emitted box, while the frames are still here
        out: list[CropResult] = []
        emitted.sort(key=lambda e: (e[1], e[0].key))
        for t, j, box, det in emitted:
            t.count += 1
            crops = {c.name: c.crop(frames[j], box) for c in self.crop_kinds}
            if t.track_id is not None:
                self._covered[j] = 1
                out.append(CropResult(t.track_id, j, box, crops, det))
            else:
                t.pending.append((j, box, crops, det))
        # 6. confirm long-enough tracks; end tracks lost for longer than max_gap
        for t in sorted(self._tracks, key=lambda t: (t.first, t.key)):
            if t.track_id is None and t.count >= self.min_track:
                t.track_id = self._next_id
                self._next_id += 1
                out.extend(self._flush(t))
        keep = []
        for t in self._tracks:
            if t.lost_since is not None and k - t.lost_since >= self.max_gap:
                out.extend(self._end(t))
            else:
                keep.append(t)
        self._tracks = keep

        self._buffer.clear()
        self._last_det = k
        out.sort(key=lambda r: (r.frame_index, r.track_id))
        return out

    def _flush(self, t: _Track) -> list[CropResult]:
        res = []
        for j, box, crops, det in t.pending:
            self._covered[j] = 1
            res.append(CropResult(t.track_id, j, box, crops, det))
        t.pending = []
        return res

    def _end(self, t: _Track) -> list[CropResult]:
        if t.track_id is None:
            log.debug("dropping face track of %d frames starting at %d (< min_track=%d)", t.count, t.first,
                      self.min_track)
            t.pending = []
            return []
        return self._flush(t)


# --- offline convenience ---------------------------------------------------------------------------
@dataclass
class FaceTrack:
    """One confirmed face track: frames with a box, their boxes (x, y, w, h) and crops (uint8 RGB)."""

    track_id: int
    frames: np.ndarray  # int64 [n]
    boxes: np.ndarray  # float32 [n, 4] x, y, w, h
    mouth: np.ndarray | None  # uint8 [n, 112, 112, 3] RGB
    legacy_face: np.ndarray | None = None  # uint8 [n, 224, 224, 3] RGB (LEGACY_FACE.normalise makes BGR)
    missing: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # gaps inside [start, end]

    def __len__(self) -> int:
        return int(self.frames.size)

    @property
    def start(self) -> int:
        return int(self.frames[0])

    @property
    def end(self) -> int:
        """Last frame with a box (inclusive)."""
        return int(self.frames[-1])

    @property
    def mean_area(self) -> float:
        return float((self.boxes[:, 2] * self.boxes[:, 3]).mean())

    def model_input(self, preprocessing: VideoPreprocessing = MOUTH) -> np.ndarray:
        """float32 [1, 3, n, S, S] for the model (frames of a gap are absent: split at gaps for sync work)."""
        crops = {MOUTH.name: self.mouth, LEGACY_FACE.name: self.legacy_face}.get(preprocessing.name)
        if crops is None:
            raise ValueError(f"this track has no crops for {preprocessing.name}; track with the matching crops=")
        return to_model_input(crops, preprocessing)


@dataclass
class FaceTracks:
    """All confirmed tracks of a video, the frames where no face was found, and the video's frame count."""

    tracks: list[FaceTrack]
    frames_without_face: np.ndarray
    num_frames: int

    def __len__(self) -> int:
        return len(self.tracks)

    def __iter__(self):
        return iter(self.tracks)

    def largest_track(self) -> FaceTrack:
        """The track with the most frames (ties: the larger mean face), usually the main speaker."""
        if not self.tracks:
            raise NoFaceError("no face track was found")
        return max(self.tracks, key=lambda t: (len(t), t.mean_area))


def _stack_releasing(results: list[CropResult], kind: str) -> np.ndarray:
    """Stack one crop kind of a track's results, dropping each per-frame crop once copied: peak memory is the
    crops once, not twice (np.stack would hold both the per-frame arrays and the stack)."""
    first = results[0].crops[kind]
    out = np.empty((len(results), *first.shape), first.dtype)
    for i, r in enumerate(results):
        out[i] = r.crops.pop(kind)
    return out


def track_faces(frames: Iterable[np.ndarray], detector: str | FaceDetector = DEFAULT_DETECTOR, detect_every: int = 5,
                crops: Sequence[str] = ("mouth",), **tracker_kwargs: Any) -> FaceTracks:
    """Track faces through RGB uint8 frames and gather per-track boxes and crops.

    Raises :class:`NoFaceError` when no track survives. ``tracker_kwargs`` go to :class:`FaceTracker`.
    """
    tracker = FaceTracker(detector, detect_every=detect_every, crops=crops, **tracker_kwargs)
    per: dict[int, list[CropResult]] = {}
    shape = None
    for frame in frames:
        if shape is None and isinstance(frame, np.ndarray):
            shape = frame.shape
        for r in tracker.push(frame):
            per.setdefault(r.track_id, []).append(r)
    for r in tracker.finish():
        per.setdefault(r.track_id, []).append(r)
    n = tracker.num_frames
    if not per:
        where = f"{n} frames of {shape[1]}x{shape[0]}" if shape is not None else "an empty video (0 frames)"
        raise NoFaceError(
            f"no face track found in {where} (detector {tracker.detector.name!r}, tracks need >= "
            f"{tracker.min_track} frames). Check that a frontal, upright face is visible and well lit, that it is "
            "at least ~50 pixels tall in the frame (the Haar detector works on a copy downscaled to "
            f"{getattr(tracker.detector, 'detect_size', '?')} px), and that frames are RGB uint8 [H, W, 3]")
    tracks = []
    for tid in sorted(per):
        rs = sorted(per[tid], key=lambda r: r.frame_index)
        idx = np.array([r.frame_index for r in rs], dtype=np.int64)
        stacks = {c.name: _stack_releasing(rs, c.name) for c in tracker.crop_kinds}
        missing = np.setdiff1d(np.arange(idx[0], idx[-1] + 1), idx).astype(np.int64)
        tracks.append(FaceTrack(
            track_id=tid, frames=idx, boxes=np.stack([r.box.as_xywh() for r in rs]).astype(np.float32),
            mouth=stacks.get("mouth"), legacy_face=stacks.get("legacy_face"), missing=missing))
    return FaceTracks(tracks, tracker.frames_without_face(), n)
