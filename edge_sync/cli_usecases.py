"""`edge-sync speakers | score | desync | fix`: the use cases built on the runtime (numpy-only, any artifact)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import typer

from edge_sync.cli_options import ARTIFACT_HELP, BACKEND_HELP, NULL_CHECK_HELP, Backend

HEADS_HELP = "Use-case heads JSON (default: the heads fitted for the artifact's model, if any)."


def _engine(artifact: Optional[str], backend: str):
    from edge_sync.runtimes.api import load

    return load(artifact, backend=backend)


def _heads(engine, heads: Optional[Path]):
    from edge_sync.usecases.heads import heads_for

    return heads_for(engine.manifest, heads)


def _each_file(videos: list[Path], analyse: Callable[[Path], Any], as_json: bool) -> Iterator[tuple[Path, Any]]:
    """(video, result) for every video that analyses; a bad one (no face, no audio, broken file...) is reported on
    stderr (a JSON object with ``error`` under --json, on stdout) and the batch goes on. Ends with exit code 1 when
    any failed, so scripts still see it."""
    from edge_sync.errors import EdgeSyncError

    failed = 0
    for video in videos:
        try:
            result = analyse(video)
        except (EdgeSyncError, OSError) as exc:
            failed += 1
            if as_json:
                typer.echo(json.dumps({"path": str(video), "error": str(exc), "error_type": type(exc).__name__}))
            else:
                typer.echo(f"{video}: error: {exc}", err=True)
            continue
        yield video, result
    if failed:
        if len(videos) > 1:
            typer.echo(f"{failed} of {len(videos)} files failed", err=True)
        raise typer.Exit(1)


def speakers_command(
    video: Path = typer.Argument(..., help="A video with one or more faces and their shared soundtrack."),
    artifact: Optional[str] = typer.Option(None, help=ARTIFACT_HELP),
    backend: Backend = typer.Option("auto", help=BACKEND_HELP),
    heads: Optional[Path] = typer.Option(None, help=HEADS_HELP),
    as_json: bool = typer.Option(False, "--json", help="One JSON object with per-frame probabilities."),
) -> None:
    """Active speaker detection: per face track, a per-frame speaking probability, and who speaks when."""
    from edge_sync.usecases.speakers import detect_speakers

    engine = _engine(artifact, backend)
    # null_check=False: the evidence null is read by sync, score and fix only
    result = detect_speakers(engine.sync_file(video, null_check=False), _heads(engine, heads))
    if as_json:
        typer.echo(result.to_json())
        return
    typer.echo(f"{video}: {len(result.tracks)} face track segment(s), {result.num_frames} frames"
               + ("" if result.fitted else " (no fitted head for this model: raw sync evidence)")
               + (" - NO SPEECH in the soundtrack: nobody speaks" if result.no_speech else ""))
    for t in result.to_dict(per_frame=False)["tracks"]:
        typer.echo(f"  track {t['track_id']} (x~{t['centre_x']:.0f}px) frames {t['start_frame']}-{t['stop_frame']}: "
                   f"speaking {t['speaking_fraction']:.0%} of its frames")
    for turn in result.turns:
        typer.echo(f"  {turn['start_frame'] / 25:6.2f}-{turn['stop_frame'] / 25:6.2f} s  track {turn['track_id']} "
                   "speaks")


def score_command(
    inputs: list[Path] = typer.Argument(..., help="Video files, or folders of them (scored as a corpus)."),
    artifact: Optional[str] = typer.Option(None, help=ARTIFACT_HELP),
    backend: Backend = typer.Option("auto", help=BACKEND_HELP),
    heads: Optional[Path] = typer.Option(None, help=HEADS_HELP),
    legacy_checkpoint: Optional[Path] = typer.Option(None, help="Score with an original SyncNet checkpoint "
                                                                "(syncnet_python's own LSE-D/LSE-C; needs torch)."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Corpus mode: JSON lines file written as "
                                                                       "clips finish (resumable)."),
    workers: int = typer.Option(1, help="Corpus mode: worker processes (0: score in this process)."),
    runner: str = typer.Option("pool", help="Corpus mode: pool (processes on this machine) or dask."),
    scheduler: Optional[str] = typer.Option(None, help="Corpus mode, dask: scheduler address (default: a local "
                                                       "cluster of --workers processes)."),
    parquet: Optional[Path] = typer.Option(None, help="Corpus mode: also write the results as Parquet at the end."),
    resume: bool = typer.Option(True, help="Corpus mode: skip clips already in OUTPUT (--no-resume: empty it and "
                                           "score every clip again)."),
    retry_errors: bool = typer.Option(False, help="Corpus mode: score again the clips whose earlier attempt failed."),
    threads_per_worker: int = typer.Option(1, help="Corpus mode: model and OpenCV threads in each worker."),
    clip_timeout: Optional[float] = typer.Option(None, help="Corpus mode: seconds a clip may take before its worker "
                                                 "is stopped and the clip recorded as ClipTimeout (pool runner)."),
    null_check: bool = typer.Option(True, help=NULL_CHECK_HELP),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per video."),
) -> None:
    """Sync-quality scores: LSE-D (lower = better) and LSE-C (higher = surer), offset, P(in sync).

    A folder or --output switches to corpus mode: every clip is scored and written as one JSON line as it finishes.
    """
    corpus = output is not None or any(p.is_dir() for p in inputs)
    if corpus:
        from edge_sync.usecases.corpus import score_corpus

        if output is None:
            raise typer.BadParameter("corpus mode needs --output FILE.jsonl (it is also how a rerun resumes)")
        if legacy_checkpoint is not None:
            raise typer.BadParameter("--legacy-checkpoint scores single videos; export it and pass --artifact")
        summary = score_corpus(inputs, output, artifact=artifact, backend=backend, workers=workers, runner=runner,
                               scheduler=scheduler, resume=resume, retry_errors=retry_errors, parquet=parquet,
                               threads_per_worker=threads_per_worker, heads=heads, clip_timeout=clip_timeout,
                               null_check=null_check)
        typer.echo(summary.to_json() if as_json else summary.describe())
        if summary.failed:  # recorded in the journal and the batch went on; scripts still see it
            raise typer.Exit(1)
        return
    if legacy_checkpoint is not None:
        from edge_sync.usecases.quality import score_legacy_checkpoint

        def analyse(video: Path) -> Any:
            return score_legacy_checkpoint(legacy_checkpoint, video)
    else:
        from edge_sync.usecases.quality import score_sync

        engine = _engine(artifact, backend)
        found = _heads(engine, heads)

        def analyse(video: Path) -> Any:
            return score_sync(engine.sync_file(video, null_check=null_check), found)
    for _, s in _each_file(inputs, analyse, as_json):
        if as_json:
            typer.echo(s.to_json())
            continue
        said = ("NO SPEECH, not judged" if s.no_speech else "UNSURE, too little sync evidence" if s.low_evidence
                else "in sync" if s.in_sync else "OUT OF SYNC")
        verdict = "" if s.sync_probability is None else (
            f", P(in sync) {s.sync_probability:.2f} -> {said} (threshold {s.threshold:.2f})")
        typer.echo(f"{s.path}: LSE-D {s.lse_d:.3f}, LSE-C {s.lse_c:.3f} [{s.scale}], offset {s.offset_frames:+d} "
                   f"frames ({s.audio_delay_ms:+.0f} ms){verdict}")


def desync_command(
    videos: list[Path] = typer.Argument(..., help="Video files to check."),
    artifact: Optional[str] = typer.Option(None, help=ARTIFACT_HELP),
    backend: Backend = typer.Option("auto", help=BACKEND_HELP),
    heads: Optional[Path] = typer.Option(None, help=HEADS_HELP),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per video (with the features)."),
) -> None:
    """Flag clips whose sound drifts, is offset, does not belong to the mouth, or looks manipulated."""
    from edge_sync.usecases.desync import flag_sync

    engine = _engine(artifact, backend)
    found = _heads(engine, heads)
    for video, flag in _each_file(videos, lambda v: flag_sync(engine.sync_file(v, null_check=False), found), as_json):
        if as_json:
            typer.echo(flag.to_json())
            continue
        p = "" if flag.probability is None else f" P(manipulated) {flag.probability:.2f},"
        state = ("FLAGGED" if flag.flagged else "ok" if flag.flagged is not None
                 else "NO SPEECH, not judged" if flag.no_speech else "NOT JUDGED")
        typer.echo(f"{video}: {state} ({p} offset {flag.offset_frames:+d} frames)"
                   + ("".join(f"\n  - {r}" for r in flag.reasons)))


def fix_command(
    video: Path = typer.Argument(..., help="The video whose sound is early or late."),
    output: Path = typer.Option(..., "-o", "--output", help="The fixed clip: .mp4, .mov, .m4v or .mkv (its folder "
                                                            "must exist; never the input)."),
    artifact: Optional[str] = typer.Option(None, help=ARTIFACT_HELP),
    backend: Backend = typer.Option("auto", help=BACKEND_HELP),
    delay_ms: Optional[float] = typer.Option(None, help="Correct this delay instead of measuring it (ms; > 0: the "
                                                        "sound is late, < 0: early)."),
    audio: str = typer.Option("auto", help="copy: shift the audio packets' timestamps (exact, lossless); reencode: "
                                           "re-encode only the audio as AAC; auto: copy wherever that is exact."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as one JSON object."),
) -> None:
    """Re-mux VIDEO with its audio delay corrected: video packets copied untouched (no re-encode), the sound moved
    by the measured delay. Writes OUT atomically; an in-sync clip gets a plain copy."""
    from edge_sync.usecases.fix import fix_file

    engine = None if delay_ms is not None else _engine(artifact, backend)
    r = fix_file(video, output, engine=engine, delay_ms=delay_ms, audio=audio)
    if as_json:
        typer.echo(r.to_json())
        return
    how = (f"offset {r.offset_frames:+d}, confidence {r.confidence:.3f}" if r.measured else "forced")
    state = "late" if r.audio_delay_ms >= 0 else "early"
    typer.echo(f"fixed: {r.input} -> {r.output}: sound was {abs(r.audio_delay_ms):.0f} ms {state} ({how}); audio "
               f"moved {r.shift_ms:+.0f} ms ({r.audio}); {r.video_packets} video packets copied")


def register(app: typer.Typer) -> None:
    """Add the use-case commands to the ``edge-sync`` app (called by edge_sync.cli)."""
    for name, command in (("speakers", speakers_command), ("score", score_command), ("desync", desync_command),
                          ("fix", fix_command)):
        app.command(name)(command)
