"""`edge_sync.load(artifact)` -> Engine: numpy in, SyncResult out, on whichever backend can run the artifact.

numpy (and the wrapped backend) only: a device app installs ``edge-sync[onnxruntime]`` without PyTorch.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Sequence, TypeVar, overload

import numpy as np

from edge_sync._json import JsonResult
from edge_sync._paths import artifact_path, bundled_artifact_named
from edge_sync.artifact import Artifact, ArtifactError, read_artifact
from edge_sync.features.speech import PADDING_NOTICE_FRAMES, SpeechPresence, speech_presence
from edge_sync.runtimes.contract_check import check_model_io, contract_from_manifest
from edge_sync.runtimes.evidence import evidence_ratio, unsure_reason
from edge_sync.runtimes.memory import bound_heap_growth
from edge_sync.runtimes.onnxruntime_backend import Provider  # numpy-only: onnxruntime is imported on use
from edge_sync.runtimes.registry import choose_backend
from edge_sync.runtimes.result import SyncResult, array_summary
from edge_sync.runtimes.windows import run_windows
from edge_sync.spec import FRAME_MS, check_pair, output_names

log = logging.getLogger(__name__)
WINDOW_FRAMES = 250  # longer clips run in overlapping windows: bounded memory, same result
# Frames of context each side of a window. An output frame depends on the correlation of +-K frames, the
# encoders' temporal reach (~5 frames) and the head's reach (~15 frames): 48 covers the bundled models; an
# artifact may declare its own as manifest["receptive_field_frames"].
DEFAULT_CONTEXT_FRAMES = 48


@dataclass(repr=False)
class TrackSync:
    """Sync of one face track's uninterrupted segment of a video."""

    track_id: int
    start_frame: int
    result: SyncResult
    # per-frame cues the use cases read: "mouth_motion" [T] (0..255), "box" [T, 3] (centre x, centre y, width)
    cues: dict[str, np.ndarray] = field(default_factory=dict)
    # the segment scored against its sound rolled out of any alignment (edge_sync.runtimes.evidence): the
    # confidence noise gives on this clip; empty when not measured (a soundtrack under 1.52 s, or null_check off)
    null_confidences: list[float] = field(default_factory=list)
    # a null was asked for, but the soundtrack is under 1.52 s: no roll keeps the true alignment out of the
    # offsets read, so the reading is unsure whatever its confidence
    null_too_short: bool = False

    @property
    def evidence_ratio(self) -> float | None:
        """The segment's confidence over its null's (None: no null measured)."""
        return evidence_ratio(self.result.confidence, self.null_confidences)

    @property
    def stop_frame(self) -> int:
        return self.start_frame + self.result.frames

    def __repr__(self) -> str:
        cues = ", ".join(f"{k}={array_summary(v)}" for k, v in self.cues.items())
        return (f"TrackSync(track_id={self.track_id}, start_frame={self.start_frame}, result={self.result!r}, "
                f"cues={{{cues}}})")


AnswerT = TypeVar("AnswerT")


class MainAnswer(Generic[AnswerT]):
    """A read-only :class:`FileSync` attribute that reads its main segment's :class:`SyncResult` attribute of the
    same name (the clip's answer): ``sync.offset_frames`` is ``sync.main.result.offset_frames``. Typed, unlike a
    property made by a function, and not a dataclass field (no annotation), so ``fields(FileSync)`` is unchanged."""

    def __init__(self, doc: str) -> None:
        self.__doc__ = doc

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> MainAnswer[AnswerT]: ...

    @overload
    def __get__(self, obj: FileSync, owner: type | None = None) -> AnswerT: ...

    def __get__(self, obj: FileSync | None, owner: type | None = None) -> AnswerT | MainAnswer[AnswerT]:
        return self if obj is None else getattr(obj.main.result, self.name)

    def __set__(self, obj: FileSync, value: Any) -> None:
        raise AttributeError(f"{self.name} is read from the main segment's result (sync.main.result.{self.name})")


UNSURE_PREFIX = "UNSURE:"  # FileSync's warning when the clip's confidence is under the model's evidence floor


@dataclass(repr=False)
class FileSync(JsonResult):
    """A video file's sync: one :class:`TrackSync` per face-track segment; the clip's answer is ``main``'s, and
    ``offset_frames``, ``audio_delay_ms``, ``confidence``, ``probability`` and ``no_speech`` read it directly."""

    path: str
    num_frames: int
    tracks: list[TrackSync]
    frames_without_face: list[int] = field(default_factory=list)
    seconds: float = 0.0
    audio_level_db: np.ndarray | None = None  # [num_frames] soundtrack loudness per video frame (dBFS)
    width: int = 0
    height: int = 0
    audio_frames: float | None = None  # how many video frames the decoded soundtrack reaches (None: unknown)
    # the model's evidence floor (LSE-C fitted on real clips beside its use-case heads; None: none fitted)
    evidence_floor: float | None = None

    @property
    def main(self) -> TrackSync:
        """The longest segment: the clip-level answer."""
        return max(self.tracks, key=lambda t: t.result.frames)

    @property
    def audio_coverage(self) -> float | None:
        """Share of the video's frames the decoded soundtrack covers; the rest was analysed as silence."""
        if self.audio_frames is None or not self.num_frames:
            return None
        return float(min(1.0, self.audio_frames / self.num_frames))

    offset_frames = MainAnswer[int]("The clip's offset in video frames (k > 0: the sound comes late).")
    audio_delay_ms = MainAnswer[float]("The clip's offset in milliseconds (40 ms a frame; > 0: the sound comes late).")
    confidence = MainAnswer[float]("syncnet_python's confidence of the clip's offset (median - min of the distance "
                                   "curve; 0 without speech).")
    probability = MainAnswer[float]("The sync head's frame-averaged probability of the clip's offset (chance "
                                    "without speech).")
    speech = MainAnswer["SpeechPresence | None"]("What the main segment's soundtrack holds: ``fraction`` (frames "
                                                 "with speech), ``sound_fraction``, ``no_speech``.")
    no_speech = MainAnswer[bool]("The clip-level answer (the main track's span) has too little speech to measure "
                                 "an offset on.")

    def __repr__(self) -> str:
        if not self.tracks:
            return f"FileSync({self.path!r}, tracks=0, num_frames={self.num_frames})"
        return (f"FileSync({self.path!r}, offset_frames={self.offset_frames}, audio_delay_ms={self.audio_delay_ms:g}, "
                f"confidence={self.confidence:.3f}, probability={self.probability:.3f}, no_speech={self.no_speech}, "
                f"num_frames={self.num_frames}, tracks={len(self.tracks)}, main_track={self.main.track_id}, "
                f"warnings={len(self.warnings)})")

    @property
    def below_floor(self) -> bool:
        """The clip's confidence is under the model's evidence floor (every right answer of the model on real clips
        read above it). False without speech (that has its own flag) or without a fitted floor."""
        # the shared rule with no null is the floor alone (a NaN confidence is no evidence either)
        return bool(self.tracks) and not self.no_speech and unsure_reason(self.confidence, self.evidence_floor,
                                                                          []) is not None

    @property
    def evidence_ratio(self) -> float | None:
        """The main segment's confidence over its null's (:mod:`edge_sync.runtimes.evidence`; None: not measured)."""
        return self.main.evidence_ratio if self.tracks else None

    @property
    def unsure_reason(self) -> str | None:
        """Why the offset cannot be trusted (:func:`edge_sync.runtimes.evidence.unsure_reason`: under the model's
        evidence floor, a soundtrack too short for any null (under 1.52 s), or under 1.5x what this clip's own sound
        gives against its video rolled out of any alignment); None when the evidence stands, without speech (that
        has its own flag) or without tracks."""
        if not self.tracks or self.no_speech:
            return None
        return unsure_reason(self.confidence, self.evidence_floor, self.main.null_confidences,
                             self.main.null_too_short)

    @property
    def low_evidence(self) -> bool:
        """Too little sync evidence for the offset to be trusted (docs/applications.md, "Unsure"): see
        :attr:`unsure_reason`."""
        return self.unsure_reason is not None

    @property
    def file_news(self) -> list[str]:
        """What the file itself says, whatever is judged on it: a soundtrack shorter than the video."""
        cover = self.audio_coverage
        if cover is None or self.num_frames - self.audio_frames < PADDING_NOTICE_FRAMES:
            return []
        seconds = FRAME_MS / 1000.0
        return [f"the soundtrack covers {self.audio_frames * seconds:.1f} s of the {self.num_frames * seconds:.1f} s "
                f"video ({cover:.0%}); the rest was padded with silence"]

    @property
    def warnings(self) -> list[str]:
        """What a reader of the clip's offset should know: the file's news, no or little speech in the main
        track's span, too little sync evidence for the offset to be trusted."""
        speech = self.main.result.speech
        out = self.file_news + (speech.speech_warnings if speech is not None else [])
        reason = self.unsure_reason
        if reason is not None:
            out.append(f"{UNSURE_PREFIX} {reason}: the offset may be noise")
        return out

    def to_dict(self, per_frame: bool = True) -> dict[str, Any]:
        main = self.main
        top = main.result.to_dict(per_frame=False)
        if per_frame:
            top["frames"] = [{**f, "frame": f["frame"] + main.start_frame}
                             for f in main.result.to_dict(per_frame=True)["frames"]]
        cover = self.audio_coverage
        return {"path": self.path, **top, "track_id": main.track_id, "start_frame": main.start_frame,
                "video_frames": self.num_frames, "audio_coverage": None if cover is None else round(cover, 4),
                "low_evidence": self.low_evidence, "evidence_floor": self.evidence_floor,
                "evidence_ratio": None if self.evidence_ratio is None else round(self.evidence_ratio, 4),
                "warnings": self.warnings, "seconds": round(self.seconds, 3),
                "frames_without_face": len(self.frames_without_face),
                "tracks": [{"track_id": t.track_id, "start_frame": t.start_frame,
                            **{k: v for k, v in t.result.to_dict(per_frame=False).items() if k != "seconds"}}
                           for t in self.tracks]}  # streamed segments share the file's time, given above


class Engine:
    """A loaded artifact on one backend. ``run`` is safe to call from several threads (the backends' sessions
    are; this class keeps no per-call state)."""

    def __init__(self, artifact: Artifact, backend: str = "auto", threads: int | None = None,
                 window_frames: int = WINDOW_FRAMES, providers: str | Sequence[Provider] | None = None) -> None:
        self.artifact = artifact
        self.window_frames = window_frames
        self.context_frames = int(artifact.manifest.get("receptive_field_frames", DEFAULT_CONTEXT_FRAMES))
        self.contract = contract_from_manifest(artifact.manifest)
        # static-shape artifacts (LiteRT) run only these clip lengths; the windows are cut to fit them
        time_range = artifact.manifest.get("time_range", {})
        self.buckets = tuple(int(b) for b in time_range.get("buckets", ()))
        if time_range.get("max_frames") and not self.buckets:  # a bounded artifact (TensorRT profile, CoreML range)
            fit = int(time_range["max_frames"]) - 2 * self.context_frames
            if fit < 1:
                raise ArtifactError(f"{artifact.path} takes at most {time_range['max_frames']} frames, less than its "
                                    f"receptive field needs ({2 * self.context_frames + 1}); re-export with a larger "
                                    "--max-frames")
            self.window_frames = min(self.window_frames, fit)
        info = choose_backend(artifact, backend)
        self.backend = info.name
        options = {} if providers is None else {"providers": providers}  # a backend refuses options it lacks
        self._session = info.create(artifact, threads, **options)
        check_model_io(self.contract, self._session, artifact.path)
        # the backend also returns the artifact's per-frame embeddings (contract.embeddings, on a backend that reads
        # them): sync_file reads the evidence null off them instead of running the model again
        self.embeddings = bool(getattr(self._session, "embeddings", False))
        self.output_names = output_names(self.embeddings)

    @property
    def manifest(self) -> dict[str, Any]:
        return self.artifact.manifest

    def __repr__(self) -> str:
        c = self.contract
        return (f"<Engine {self.artifact.path.name}: target={self.artifact.target} precision={self.artifact.precision} "
                f"backend={self.backend} contract={c.audio_input} audio + {c.video.name} video, offsets "
                f"-{c.max_offset}..{c.max_offset}>")

    def run(self, audio: np.ndarray, video: np.ndarray) -> SyncResult:
        """One clip: audio [1,1,13,4T], video [1,3,T,S,S] float32 per the contract -> SyncResult.

        Clips longer than ``window_frames`` (or than a static-shape artifact's bucket) run in windows with
        ``context_frames`` of overlap each side, and only each window's centre is kept, so the result equals a
        single pass with bounded memory (see :mod:`edge_sync.runtimes.windows`).
        """
        return self.run_with_outputs(audio, video)[0]

    def run_with_outputs(self, audio: np.ndarray, video: np.ndarray) -> tuple[SyncResult, dict[str, np.ndarray]]:
        """:meth:`run`'s result and the raw outputs it was computed from (:meth:`run_outputs`), from one pass."""
        start = time.perf_counter()
        outputs = self.run_outputs(audio, video)
        return self._result(audio, outputs, time.perf_counter() - start), outputs

    def run_outputs(self, audio: np.ndarray, video: np.ndarray) -> dict[str, np.ndarray]:
        """:meth:`run`'s raw outputs for one clip, each [C, T]: ``sync_probs``, ``correlation`` and, where
        :attr:`embeddings`, ``audio_emb`` and ``video_emb`` (what a caller computes its own statistics from)."""
        frames = check_pair(audio, video, self.contract)
        if audio.shape[0] != 1:
            raise ValueError(f"run takes one clip (batch 1), got batch {audio.shape[0]}; loop over clips")
        outputs = self._windowed(audio, lambda lo, hi: np.ascontiguousarray(video[:, :, lo:hi]), frames)
        return dict(zip(self.output_names, outputs))

    def _windowed(self, audio: np.ndarray, video_window, frames: int) -> tuple[np.ndarray, ...]:
        return run_windows(self._session.run, audio, video_window, frames, self.window_frames, self.context_frames,
                           self.buckets, f"{self.artifact.path} (the artifact)", ArtifactError)

    def _result(self, audio: np.ndarray, outputs: dict[str, np.ndarray], seconds: float) -> SyncResult:
        speech = speech_presence(audio) if self.contract.audio_input == "mfcc" else None
        return SyncResult.from_outputs(outputs["sync_probs"], outputs["correlation"], backend=self.backend,
                                       seconds=seconds, speech=speech)

    def run_segment(self, segment) -> SyncResult:
        """A prepared clip segment (uint8 crops normalised window by window, so memory stays bounded)."""
        start = time.perf_counter()
        outputs = self._windowed(segment.audio, segment.video_window, segment.frames)
        return self._result(segment.audio, dict(zip(self.output_names, outputs)), time.perf_counter() - start)

    def stream(self, hop_frames: int = 25, previous_sample: float | None = None, keep_frames: int | None = None,
               max_lead_frames: int | None = None, keep_embeddings: bool = False):
        """A live stream: push audio samples and mouth crops as they arrive, get per-frame results (see
        :class:`edge_sync.runtimes.streaming.SyncStream`); the results equal :meth:`run` on the same data.
        ``keep_frames`` bounds what ``result()`` summarises to the latest frames (always-on streams);
        ``max_lead_frames`` how far one input may run ahead of the other (default 30 s); ``keep_embeddings`` holds
        the frames' embeddings for ``embeddings()`` (where :attr:`embeddings`)."""
        from edge_sync.runtimes.streaming import MAX_LEAD_FRAMES, SyncStream

        return SyncStream(self, hop_frames=hop_frames, previous_sample=previous_sample, keep_frames=keep_frames,
                          max_lead_frames=MAX_LEAD_FRAMES if max_lead_frames is None else max_lead_frames,
                          keep_embeddings=keep_embeddings)

    def sync_file(self, path: str | Path, detect_every: int = 5, detector: str | None = None,
                  null_check: bool = True) -> FileSync:
        """The whole pipeline on a video file: decode, face tracks, crops, MFCC, model, per track segment.
        Crops stream into bounded windows (:mod:`edge_sync.runtimes.file_sync`), so memory does not grow
        with the clip's length. ``detector``: a registered face detector (default YuNet; "haar").
        ``null_check``: also measure each segment's evidence null (:mod:`edge_sync.runtimes.evidence`), which
        ``low_evidence`` reads: off the segment's own embeddings where :attr:`embeddings` (no more model calls),
        else by running the model three more times (decoding and faces once)."""
        from edge_sync.features.faces import DEFAULT_DETECTOR
        from edge_sync.runtimes.file_sync import sync_file

        return sync_file(self, path, detect_every=detect_every, detector=detector or DEFAULT_DETECTOR,
                         null_check=null_check)


def load(path: str | Path | None = None, backend: str = "auto", *,
         providers: str | Sequence[Provider] | None = None, threads: int | None = None,
         window_frames: int = WINDOW_FRAMES, low_memory: bool = True) -> Engine:
    """Load an artifact directory into an :class:`Engine` (numpy in, numpy out; never imports torch).

    Args:
        path: an artifact directory ``NAME.<target>-<precision>/`` made by ``edge-sync export``, or the name of a
            bundled one ("student-fp32", "student-int8") where no such directory exists; None loads the bundled
            student ONNX FP32. Its manifest and every file's hash are checked first.
        backend: "auto" picks the preferred installed backend that runs the artifact's target (the order
            ``edge-sync info`` prints; the choice is logged), or name one: "onnxruntime", "openvino", "litert",
            "coreml", "tensorrt".
        providers: onnxruntime execution providers in order of preference, e.g.
            ``["CoreMLExecutionProvider", "CPUExecutionProvider"]`` (also NNAPI, QNN, XNNPACK, CUDA, ...; a
            ``(name, options)`` pair passes provider options), handed to ``onnxruntime.InferenceSession``. Each must
            be in ``onnxruntime.get_available_providers()``, else a one-line error lists those. None: TensorRT,
            CUDA, then CPU, whichever this build has. Other backends refuse it (CoreML picks its compute units
            from ``$EDGE_SYNC_COREML_COMPUTE_UNITS``).
        threads: intra-op threads for the backend (None: the backend's own default).
        window_frames: clips longer than this run in overlapping windows, same result, bounded memory.
        low_memory: keep the process's resident memory at its working set on glibc Linux, at 10-40% of file-sync
            speed (see :mod:`edge_sync.runtimes.memory`); False for throughput on a machine with memory to spare.

    Raises:
        ArtifactError: the artifact is missing, corrupted or made for another contract.
        MissingExtraError: its backend is not installed (the message names the extra).
        EdgeSyncError: an unknown backend, one that cannot run this target, or an option it does not take.
    """
    if low_memory:
        bound_heap_growth()
    resolved = artifact_path(path)
    if (path is None or bundled_artifact_named(path)) and not resolved.is_dir():  # bundled, not in this install
        raise ArtifactError(f"no bundled artifact at {resolved} in this install; pass --artifact DIR "
                            "(make one with: edge-sync export --target onnx -o DIR)")
    return Engine(read_artifact(resolved), backend=backend, threads=threads, window_frames=window_frames,
                  providers=providers)
