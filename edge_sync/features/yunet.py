"""YuNet's network run by onnxruntime, decoded as OpenCV's ``FaceDetectorYN`` decodes it.

Why: the same ONNX model on onnxruntime took 0.6 ms for a 128x128 look and 3.3 ms for a 320x320 frame where
OpenCV's DNN module took 1.6 and 8.3 ms (one thread, this 2-core CPU), and face detection is the front end's largest
cost. The decoding follows OpenCV's (objdetect/src/face_detect.cpp): the image padded to a multiple of 32 at its
bottom and right edges, BGR as float 0..255 in NCHW; per stride 8/16/32 and grid cell (row r, column c) the score is
sqrt(clip(cls) * clip(obj)), the box centre (c + dx, r + dy) * stride with size exp(dw, dh) * stride, each landmark
(c + kx, r + ky) * stride; then non-maximum suppression on the integer boxes. So both runners give the same faces
(tests/features/test_yunet.py compares them) and the tracker's crops do not depend on which one ran.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edge_sync._ort import session_options

STRIDES = (8, 16, 32)
DIVISOR = 32


class YuNetOnnxRuntime:
    """``detect(bgr) -> [N, 15]`` rows (x, y, w, h, five landmarks' x, y, score), like ``FaceDetectorYN.detect``."""

    def __init__(self, model: str | Path, score_threshold: float, nms_threshold: float, top_k: int) -> None:
        import onnxruntime as ort

        # one thread: for one small image a second costs more than it gives, and the sync's model runs beside it
        self._session = ort.InferenceSession(str(model), sess_options=session_options(1, 1),
                                             providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name
        self._outputs = [f"{kind}_{s}" for kind in ("cls", "obj", "bbox", "kps") for s in STRIDES]
        self.score_threshold = float(score_threshold)
        self.nms_threshold = float(nms_threshold)
        self.top_k = int(top_k)
        self._grids: dict[tuple[int, int], list[np.ndarray]] = {}

    def setScoreThreshold(self, threshold: float) -> None:  # noqa: N802 - FaceDetectorYN's own name
        self.score_threshold = float(threshold)

    def setInputSize(self, size: tuple[int, int]) -> None:  # noqa: N802 - sizes are read off each image instead
        pass

    def _grid(self, pad_h: int, pad_w: int) -> list[np.ndarray]:
        """Per stride, each anchor's (column, row) as float32 [rows * cols, 2], row-major like the outputs."""
        key = (pad_h, pad_w)
        if key not in self._grids:
            grids = []
            for s in STRIDES:
                rows, cols = pad_h // s, pad_w // s
                r, c = np.mgrid[0:rows, 0:cols]
                grids.append(np.stack([c.ravel(), r.ravel()], axis=1).astype(np.float32))
            self._grids[key] = grids
        return self._grids[key]

    def detect(self, bgr: np.ndarray) -> tuple[int, np.ndarray | None]:
        h, w = bgr.shape[:2]
        pad_h, pad_w = -(-h // DIVISOR) * DIVISOR, -(-w // DIVISOR) * DIVISOR
        blob = np.zeros((1, 3, pad_h, pad_w), np.float32)
        blob[0, :, :h, :w] = bgr.transpose(2, 0, 1)
        outs = dict(zip(self._outputs, self._session.run(self._outputs, {self._input: blob})))
        faces = []
        for s, grid in zip(STRIDES, self._grid(pad_h, pad_w)):
            cls = np.clip(outs[f"cls_{s}"].reshape(-1), 0.0, 1.0)
            obj = np.clip(outs[f"obj_{s}"].reshape(-1), 0.0, 1.0)
            score = np.sqrt(cls * obj)
            keep = score >= self.score_threshold
            if not keep.any():
                continue
            cell = grid[keep]
            box = outs[f"bbox_{s}"].reshape(-1, 4)[keep]
            kps = outs[f"kps_{s}"].reshape(-1, 5, 2)[keep]
            centre = (cell + box[:, :2]) * s
            size = np.exp(box[:, 2:]) * s
            marks = ((kps + cell[:, None, :]) * s).reshape(-1, 10)
            faces.append(np.concatenate([centre - size / 2, size, marks, score[keep, None]], axis=1))
        if not faces:
            return 1, None
        found = np.concatenate(faces).astype(np.float32)
        if len(found) > 1:
            boxes = [[int(x), int(y), int(bw), int(bh)] for x, y, bw, bh in found[:, :4]]
            kept = cv2.dnn.NMSBoxes(boxes, found[:, 14].tolist(), self.score_threshold, self.nms_threshold,
                                    top_k=self.top_k)
            found = found[np.asarray(kept, int).reshape(-1)]
        return 1, found
