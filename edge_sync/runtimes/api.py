"""`edge_sync.load(artifact)` -> Engine: numpy in, SyncResult out, on whichever backend can run the artifact.

numpy (and the wrapped backend) only: a device app installs ``edge-sync[onnxruntime]`` without PyTorch.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_sync.artifact import Artifact, ArtifactError, read_artifact
from edge_sync.runtimes.registry import choose_backend
from edge_sync.runtimes.result import SyncResult
from edge_sync.spec import PREPROCESSING, ModelContract, check_pair

log = logging.getLogger(__name__)
BUNDLED_ARTIFACT = Path(__file__).resolve().parent.parent / "weights" / "student.onnx-fp32"


def contract_from_manifest(manifest: dict[str, Any]) -> ModelContract:
    c = manifest.get("contract", {})
    try:
        video = PREPROCESSING[c["video_preprocessing"]["name"]]
        return ModelContract(audio_input=c["audio_input"], video=video, max_offset=int(c["max_offset"]),
                             min_frames=int(c.get("min_frames", 1)))
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(f"the manifest's contract is incomplete or unknown ({exc}); re-export the artifact") from exc


@dataclass
class TrackSync:
    """Sync of one face track's uninterrupted segment of a video."""

    track_id: int
    start_frame: int
    result: SyncResult


@dataclass
class FileSync:
    path: str
    num_frames: int
    tracks: list[TrackSync]
    frames_without_face: list[int] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def main(self) -> TrackSync:
        """The longest segment: the clip-level answer."""
        return max(self.tracks, key=lambda t: t.result.frames)

    def to_dict(self, per_frame: bool = True) -> dict[str, Any]:
        main = self.main
        top = main.result.to_dict(per_frame=False)
        if per_frame:
            top["frames"] = [{**f, "frame": f["frame"] + main.start_frame}
                             for f in main.result.to_dict(per_frame=True)["frames"]]
        return {"path": self.path, **top, "track_id": main.track_id, "start_frame": main.start_frame,
                "video_frames": self.num_frames, "seconds": round(self.seconds, 3),
                "frames_without_face": len(self.frames_without_face),
                "tracks": [{"track_id": t.track_id, "start_frame": t.start_frame,
                            **t.result.to_dict(per_frame=False)} for t in self.tracks]}


class Engine:
    """A loaded artifact on one backend. ``run`` is safe to call from several threads (the backends' sessions
    are; this class keeps no per-call state)."""

    def __init__(self, artifact: Artifact, backend: str = "auto", threads: int | None = None) -> None:
        self.artifact = artifact
        self.contract = contract_from_manifest(artifact.manifest)
        info = choose_backend(artifact, backend)
        self.backend = info.name
        self._session = info.create(artifact, threads)

    @property
    def manifest(self) -> dict[str, Any]:
        return self.artifact.manifest

    def run(self, audio: np.ndarray, video: np.ndarray) -> SyncResult:
        """One clip: audio [1,1,13,4T], video [1,3,T,S,S] float32 per the contract -> SyncResult."""
        frames = check_pair(audio, video, self.contract)
        if audio.shape[0] != 1:
            raise ValueError(f"run takes one clip (batch 1), got batch {audio.shape[0]}; loop over clips")
        start = time.perf_counter()
        probs, corr = self._session.run(np.ascontiguousarray(audio), np.ascontiguousarray(video))
        seconds = time.perf_counter() - start
        if probs.shape[-1] != frames:
            raise ArtifactError(f"{self.artifact.path} returned {probs.shape[-1]} frames for {frames}: the artifact "
                                "does not keep time as the contract says")
        return SyncResult.from_outputs(probs[0], corr[0], backend=self.backend, seconds=seconds)

    def sync_file(self, path: str | Path, detect_every: int = 5) -> FileSync:
        """The whole pipeline on a video file: decode, face tracks, crops, MFCC, model, per track."""
        from edge_sync.features.clip import prepare_clip

        start = time.perf_counter()
        prepared = prepare_clip(path, preprocessing=self.contract.video, detect_every=detect_every)
        tracks = [TrackSync(seg.track_id, seg.start, self.run(seg.audio, seg.video)) for seg in prepared.segments]
        return FileSync(str(path), prepared.num_frames, tracks, prepared.frames_without_face.tolist(),
                        time.perf_counter() - start)


def load(path: str | Path | None = None, backend: str = "auto", threads: int | None = None) -> Engine:
    """Load an artifact directory (default: the bundled student ONNX) on ``backend`` ('auto' picks)."""
    if path is None:
        if not BUNDLED_ARTIFACT.is_dir():
            raise ArtifactError(f"no bundled artifact at {BUNDLED_ARTIFACT}; pass --artifact DIR "
                                "(make one with: edge-sync export --target onnx -o DIR)")
        path = BUNDLED_ARTIFACT
    return Engine(read_artifact(path), backend=backend, threads=threads)
