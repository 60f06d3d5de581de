"""Crop geometry, resizing and normalisation: face boxes -> model input tensors.

numpy + OpenCV only (no torch), so a device app can run it. Two crop kinds exist, kept in the
:data:`CROP_KINDS` registry:

* ``"mouth"``: a square around the mouth (lower part of the face box), 112x112 RGB, what the
  teacher/student models read (:data:`edge_sync.spec.MOUTH`).
* ``"legacy_face"``: syncnet_python's whole-face crop, 224x224, what the legacy SyncNet reads
  (:data:`edge_sync.spec.LEGACY_FACE`; crops are stored RGB, ``normalise`` turns them into BGR).

All crops pad with grey 110 where the region leaves the image, as syncnet_python does, so a face at
the frame edge keeps its position inside the crop instead of being stretched.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import cv2
import numpy as np

from edge_sync.spec import LEGACY_FACE, MOUTH, VideoPreprocessing

PAD_VALUE = 110  # syncnet_python's padding grey

# Where the mouth sits inside a frontal Haar face box, as fractions of the box (measured on
# skimage's astronaut photo: box (177, 66, 95, 95), mouth centre ~(224, 144), nose tip y~128,
# chin y~175 -> mouth at 0.50 w, 0.82 h). The square side covers the lips with margin and the
# chin/nose-tip, which is what a lip-sync model needs to see.
MOUTH_CENTRE = (0.5, 0.8)
MOUTH_SIDE = 0.65
LEGACY_CROP_SCALE = 0.4  # syncnet_python's --crop_scale default


@dataclass(frozen=True)
class Region:
    """An axis-aligned crop region in pixel coordinates (x1, y1 exclusive; may leave the image)."""

    x0: float
    y0: float
    x1: float
    y1: float

    @property
    def width(self) -> float:
        return self.x1 - self.x0

    @property
    def height(self) -> float:
        return self.y1 - self.y0

    @property
    def centre(self) -> tuple[float, float]:
        return (self.x0 + self.x1) / 2.0, (self.y0 + self.y1) / 2.0

    def bounds(self) -> tuple[int, int, int, int]:
        """Integer pixel bounds; floor of each edge, as ``int()`` on syncnet_python's padded coordinates."""
        return (int(np.floor(self.x0)), int(np.floor(self.y0)), int(np.floor(self.x1)), int(np.floor(self.y1)))

    @classmethod
    def square(cls, cx: float, cy: float, side: float) -> "Region":
        half = side / 2.0
        return cls(cx - half, cy - half, cx + half, cy + half)


def _xywh(box: Any) -> tuple[float, float, float, float]:
    """Accept a FaceBox-like object (x, y, w, h attributes) or a 4-sequence (x, y, w, h)."""
    if all(hasattr(box, a) for a in ("x", "y", "w", "h")):
        x, y, w, h = box.x, box.y, box.w, box.h
    else:
        vals = np.asarray(box, dtype=np.float64).reshape(-1)
        if vals.size != 4:
            raise ValueError(f"face box must be (x, y, w, h), got {box!r}")
        x, y, w, h = vals
    if not (w > 0 and h > 0):
        raise ValueError(f"face box must have positive width and height, got w={w}, h={h}")
    return float(x), float(y), float(w), float(h)


def check_frame(frame: Any, what: str = "frame") -> np.ndarray:
    """Validate one video frame: numpy uint8 [H, W, 3] (RGB). Raises TypeError/ValueError saying how to fix it."""
    if not isinstance(frame, np.ndarray):
        raise TypeError(f"{what} must be a numpy array [H, W, 3] uint8 RGB, got {type(frame).__name__}")
    if frame.ndim == 2:
        raise ValueError(f"{what} is a 2-D (grayscale) array of shape {frame.shape}; expected [H, W, 3] uint8 RGB. "
                         "Convert with cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)")
    if frame.ndim != 3 or frame.shape[2] != 3:
        hint = "; drop the alpha channel with frame[..., :3]" if frame.ndim == 3 and frame.shape[2] == 4 else ""
        raise ValueError(f"{what} must have shape [H, W, 3] (RGB), got {frame.shape}{hint}")
    if frame.dtype != np.uint8:
        raise TypeError(f"{what} must be uint8 (0..255), got {frame.dtype}; for floats in [0, 1] use "
                        "(frame * 255).round().clip(0, 255).astype(np.uint8)")
    if frame.shape[0] < 1 or frame.shape[1] < 1:
        raise ValueError(f"{what} is empty: shape {frame.shape}")
    return frame


def crop_region(frame: np.ndarray, region: Region, out_size: int, pad_value: int = PAD_VALUE,
                interpolation: int | None = None) -> np.ndarray:
    """Cut ``region`` out of ``frame`` (padding with ``pad_value`` outside it) and resize to out_size x out_size.

    ``interpolation`` None picks INTER_AREA when shrinking (no aliasing) and INTER_LINEAR when enlarging.
    """
    check_frame(frame)
    x0, y0, x1, y1 = region.bounds()
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"empty crop region {region}")
    h, w = frame.shape[:2]
    if x0 >= 0 and y0 >= 0 and x1 <= w and y1 <= h:
        patch = frame[y0:y1, x0:x1]
    else:
        patch = np.full((y1 - y0, x1 - x0, 3), pad_value, dtype=np.uint8)
        ix0, iy0, ix1, iy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
        if ix1 > ix0 and iy1 > iy0:
            patch[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0] = frame[iy0:iy1, ix0:ix1]
    if interpolation is None:
        shrinking = patch.shape[0] > out_size or patch.shape[1] > out_size
        interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    if patch.shape[0] == out_size and patch.shape[1] == out_size:
        return np.ascontiguousarray(patch)
    return cv2.resize(patch, (out_size, out_size), interpolation=interpolation)


def crop_square(frame: np.ndarray, cx: float, cy: float, side: float, out_size: int,
                pad_value: int = PAD_VALUE, interpolation: int | None = None) -> np.ndarray:
    """Square of ``side`` pixels centred on (cx, cy), padded where it leaves the image -> uint8 [out, out, 3]."""
    if not side >= 1:
        raise ValueError(f"crop side must be >= 1 pixel, got {side}")
    side_i = int(round(side))
    x0 = int(np.floor(cx - side_i / 2.0 + 0.5))
    y0 = int(np.floor(cy - side_i / 2.0 + 0.5))
    return crop_region(frame, Region(x0, y0, x0 + side_i, y0 + side_i), out_size, pad_value, interpolation)


def mouth_box(face_box: Any, centre: tuple[float, float] = MOUTH_CENTRE, side: float = MOUTH_SIDE) -> Region:
    """Square region around the mouth of a frontal face box (x, y, w, h).

    Centred at ``centre`` (fractions of box width, height) with side ``side * max(w, h)``; the defaults
    put the lips in the middle of the crop with the nose tip near the top and the chin near the bottom.
    """
    x, y, w, h = _xywh(face_box)
    return Region.square(x + centre[0] * w, y + centre[1] * h, side * max(w, h))


def legacy_face_box(face_box: Any, crop_scale: float = LEGACY_CROP_SCALE) -> Region:
    """syncnet_python's face crop for a box (x, y, w, h).

    With half-size ``bs = max(w, h) / 2`` around the box centre (cx, cy), the crop spans rows
    ``[cy - bs, cy + bs (1 + 2 crop_scale))`` and columns ``[cx - bs (1 + crop_scale), cx + bs (1 + crop_scale))``:
    a square of side ``2 bs (1 + crop_scale)`` shifted down by ``bs crop_scale`` so that it keeps the chin and
    mouth. syncnet_python pads the image by ``bs (1 + 2 crop_scale)`` with 110 first; :func:`crop_region` pads
    only where needed, with the same result.
    """
    if crop_scale < 0:
        raise ValueError(f"crop_scale must be >= 0, got {crop_scale}")
    x, y, w, h = _xywh(face_box)
    bs = max(w, h) / 2.0
    cx, cy = x + w / 2.0, y + h / 2.0
    return Region(cx - bs * (1 + crop_scale), cy - bs, cx + bs * (1 + crop_scale), cy + bs * (1 + 2 * crop_scale))


@dataclass(frozen=True)
class CropKind:
    """One kind of crop the tracker can produce: region geometry, output size, resize filter."""

    name: str
    region: Callable[[Any], Region]
    preprocessing: VideoPreprocessing
    interpolation: int | None = None  # None: INTER_AREA when shrinking, else INTER_LINEAR

    @property
    def size(self) -> int:
        return self.preprocessing.size

    def crop(self, frame: np.ndarray, face_box: Any) -> np.ndarray:
        return crop_region(frame, self.region(face_box), self.size, PAD_VALUE, self.interpolation)


CROP_KINDS: dict[str, CropKind] = {}


def register_crop_kind(kind: CropKind) -> CropKind:
    CROP_KINDS[kind.name] = kind
    return kind


register_crop_kind(CropKind("mouth", mouth_box, MOUTH))
# syncnet_python resizes with cv2.resize's default (bilinear); keep it so legacy crops match its pipeline.
register_crop_kind(CropKind("legacy_face", legacy_face_box, LEGACY_FACE, cv2.INTER_LINEAR))


def get_crop_kind(name: str) -> CropKind:
    try:
        return CROP_KINDS[name]
    except KeyError:
        raise ValueError(f"unknown crop kind {name!r}; choose from {sorted(CROP_KINDS)}") from None


def to_model_input(crops: np.ndarray, preprocessing: VideoPreprocessing = MOUTH) -> np.ndarray:
    """uint8 RGB crops [T, S, S, 3] -> float32 [1, 3, T, S, S] model input, via ``preprocessing.normalise``."""
    if not isinstance(crops, np.ndarray):
        raise TypeError(f"crops must be a numpy array [T, S, S, 3] uint8, got {type(crops).__name__}")
    if crops.dtype != np.uint8:
        raise TypeError(f"crops must be uint8 RGB (0..255), got {crops.dtype}")
    s = preprocessing.size
    if crops.ndim != 4 or crops.shape[1:] != (s, s, 3):
        raise ValueError(f"crops for {preprocessing.name} must be [T, {s}, {s}, 3], got {list(crops.shape)}")
    if crops.shape[0] < 1:
        raise ValueError("crops must contain at least one frame")
    return preprocessing.normalise(crops)[None]
