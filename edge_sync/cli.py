"""`edge-sync`: a thin command line over the library. Errors print one line on stderr and exit non-zero.

Conventions every command follows: ``--json`` is a flag that prints JSON on stdout instead of the text (a file is
written with ``-o/--output``); the same idea has the same option name (``--data``, ``--backend``, ``--model``);
choices (targets, precisions, backends, detectors) come from the registries and are listed in ``--help``; usage
errors exit 2 with the usage line, other errors exit 1 with one line; a command that needs an extra names it.
"""
from __future__ import annotations

import importlib.util
import json
import logging
import signal
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import typer
import typer.core

from edge_sync import __version__, cli_usecases
from edge_sync._paths import BUNDLED_CHECKPOINTS, WEIGHTS_DIR, artifact_path, bundled_checkpoint
from edge_sync.cli_options import (ARTIFACT_HELP, BACKEND_HELP, Backend, CalibMethod, Detector, Int8Stems,
                                   NULL_CHECK_HELP, Precision, Preprocessing, Target)
from edge_sync.errors import EdgeSyncError, MissingExtraError

JSON_PATH_COMMANDS = ("eval", "parity", "bench")  # where --json took a file before it became a flag


def _command(args: list[str]) -> str:
    """The subcommand's name in a command line (the root options are all flags)."""
    return next((a for a in args if not a.startswith("-")), "")


def _json_path_alias(args: list[str]) -> list[str]:
    """Deprecated: ``--json FILE.json`` (eval, parity, bench) still writes the file, as ``-o FILE.json`` now does."""
    if _command(args) not in JSON_PATH_COMMANDS:
        return args
    out, i = [], 0
    while i < len(args):
        arg = args[i]
        value = arg[len("--json="):] if arg.startswith("--json=") else (
            args[i + 1] if arg == "--json" and i + 1 < len(args) and args[i + 1].endswith(".json") else None)
        if value is None:
            out.append(arg)
            i += 1
            continue
        print(f"edge-sync: '--json {value}' is deprecated: write the file with '-o {value}' ('--json' alone prints "
              "JSON on stdout)", file=sys.stderr)
        out += ["--output", value]
        i += 1 if arg.startswith("--json=") else 2
    return out


class _Group(typer.core.TyperGroup):
    """The root command group; it reads the deprecated ``--json FILE.json`` before typer parses (here, not in
    main(), so the app called any way, e.g. by typer's CliRunner, keeps the alias)."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, _json_path_alias(args))


app = typer.Typer(cls=_Group, add_completion=True, no_args_is_help=True,
                  help="Lip-sync (SyncNet family) models on edge devices: import, run and prove them.")
log = logging.getLogger("edge_sync")
JSON_HELP = "Print JSON on stdout instead of the text."


def _print_result(write: Callable[[Optional[Path]], Any], as_json: bool, output: Optional[Path],
                  text: Callable[[Any], str] = str) -> None:
    """Run a command's ``write(json_path)`` (the library's writer of its JSON file) and print ``text`` of what it
    returns, or with --json the JSON it wrote (through a temporary file when there is no -o), so the file and
    stdout always carry the same JSON."""
    if not as_json:
        typer.echo(text(write(output)))
        return
    with tempfile.TemporaryDirectory(prefix="edge-sync-") as tmp:
        path = output or Path(tmp) / "result.json"
        write(path)
        typer.echo(path.read_text().rstrip("\n"))




def _bundled_checkpoints(*names: Optional[str]) -> None:
    """The bundled PyTorch checkpoints are not in the wheel (a device needs only the ONNX artifact): say where they
    are before torch is loaded, rather than failing deep in a command."""
    if importlib.util.find_spec("torch") is None:
        return  # the command fails first on torch, naming the extra to install
    for name in names:
        if name in BUNDLED_CHECKPOINTS and not Path(name).exists() and not bundled_checkpoint(name).is_file():
            raise EdgeSyncError(f"the bundled '{name}' PyTorch checkpoint is not in this install (the wheel carries "
                                "only the runtime artifact): export and train from a source checkout (git clone, "
                                "then pip install -e '.[export]'), or pass a checkpoint path")


@app.command("info")
def info_command(as_json: bool = typer.Option(False, "--json", help="Print one JSON object.")) -> None:
    """Show versions, the tensor contract, installed backends and bundled weights."""
    from edge_sync.info import collect_info, format_info

    data = collect_info()
    typer.echo(json.dumps(data, indent=2) if as_json else format_info(data))


@app.command("import-syncnet")
def import_syncnet_command(
    checkpoint: Path = typer.Argument(..., help="syncnet_python checkpoint (e.g. syncnet_v2.model)."),
    output: Path = typer.Option(..., "-o", "--output", help="Where to write the edge-sync checkpoint (.pt)."),
) -> None:
    """Convert an original SyncNet checkpoint into this project's fully convolutional checkpoint."""
    from edge_sync.models.io import parameter_count, save_checkpoint
    from edge_sync.models.legacy import LegacySyncNetFCN

    model = LegacySyncNetFCN.from_checkpoint(checkpoint)
    digest = save_checkpoint(model, output, meta={"imported_from": str(checkpoint)})
    typer.echo(f"wrote {output} (legacy SyncNet S as FCN, {parameter_count(model):,} parameters, "
               f"sha256 {digest[:12]})")


@app.command("demo")
def demo_command(
    offset: int = typer.Option(3, help="Audio delay to plant in the sample clip, in frames (+ = sound late)."),
    model: str = typer.Option("student", help="student, teacher, or a checkpoint path."),
    workdir: Path = typer.Option(Path("out/demo"), help="Where the sample clip is written."),
    seed: int = typer.Option(0, help="Seed for the sample clip."),
) -> None:
    """Make a talking-face clip with a known audio delay, run the whole pipeline on it, print the offset."""
    from edge_sync.demo import run_demo

    result = run_demo(workdir=workdir, offset_frames=offset, model=model, seed=seed)
    typer.echo(result.summary())


def _train_config(model: str, data: str, steps: int, batch_size: int, frames: int, lr: float, seed: int,
                  workers: int, config_json: Optional[Path], device: str, augment: bool, teacher: Optional[str],
                  half: bool):
    from edge_sync.training.losses import LossWeights
    from edge_sync.training.train import TrainConfig

    extra = json.loads(config_json.read_text()) if config_json else {}
    loss = LossWeights(**extra.pop("loss", {}))
    aug = extra.pop("augment", DEFAULT_AUGMENT if augment else None)
    fields = dict(model=model, data=data, steps=steps, batch_size=batch_size, frames=frames, lr=lr, seed=seed,
                  workers=workers, device=device, augment=aug, loss=loss, teacher=teacher, half_weights=half)
    return TrainConfig(**{**fields, **extra})  # the JSON may set any field, e.g. distil into a checkpoint ("model")


END_AT_HELP = ("End the run at this step of the --steps schedule and write the checkpoint as it stands (the "
               "learning rate still follows --steps): reproduces a run cut short by a time limit.")
STOP_AFTER_SECONDS_HELP = ("Stop after the step that ends past this many seconds of this call and save the state "
                           "(no checkpoint yet): the same command resumes it. For machines lent for a fixed time.")
DEFAULT_AUGMENT = {"jitter": True, "crop": True, "flip": True, "colour": True, "freq_mask": True}


@app.command("train")
def train_command(
    model: str = typer.Option("teacher", help="teacher, student, or a checkpoint path to fine-tune."),
    data: str = typer.Option("synthetic", help="synthetic, or a folder of your videos (any nesting)."),
    output: Path = typer.Option(..., "-o", "--output", help="Checkpoint to write (.pt)."),
    steps: int = typer.Option(2000, help="Optimisation steps."),
    batch_size: int = typer.Option(16, help="Clips per step (per process under torchrun)."),
    frames: int = typer.Option(50, help="Frames per training clip."),
    lr: float = typer.Option(2e-3, help="Peak learning rate (AdamW, warm-up then cosine)."),
    seed: int = typer.Option(0, help="Seed: the same seed gives the same clips and initialisation."),
    workers: int = typer.Option(1, help="Data loader worker processes."),
    config: Optional[Path] = typer.Option(None, help="JSON with more TrainConfig fields, e.g. model_config, loss."),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:1 ..."),
    augment: bool = typer.Option(True, help="Jitter, crop, flip, colour, frequency masking."),
    resume: bool = typer.Option(True, help="Continue from OUTPUT.train-state if it exists."),
    half: bool = typer.Option(False, help="Store the final weights in float16 (bundled weights)."),
    end_at: Optional[int] = typer.Option(None, help=END_AT_HELP),
    stop_after_seconds: Optional[float] = typer.Option(None, help=STOP_AFTER_SECONDS_HELP),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Train a teacher or student; resumable, seeded, runs unchanged under torchrun (DDP)."""
    from edge_sync.training.train import train

    _bundled_checkpoints(model)
    cfg = _train_config(model, data, steps, batch_size, frames, lr, seed, workers, config, device, augment, None, half)
    _print_trained(train(cfg, output, resume=resume, end_at=end_at, stop_after_seconds=stop_after_seconds), as_json)


def _print_trained(result: Any, as_json: bool) -> None:
    from edge_sync.training.together import trained_line

    if as_json:
        typer.echo(json.dumps({"checkpoint": str(result.checkpoint), "steps": result.steps,
                               "seconds": result.seconds, "final_loss": result.final_loss,
                               "written": result.written}))
        return
    typer.echo(trained_line(result))


@app.command("pretrain")
def pretrain_command(
    output: Path = typer.Option(..., "-o", "--output", help="Checkpoint to write (.pt); fine-tune it with "
                                "edge-sync train --config '{\"model\": OUTPUT}'."),
    model: str = typer.Option("teacher", help="teacher, student, or a checkpoint path whose encoders to pre-train."),
    data: str = typer.Option("synthetic", help="A folder of your unlabeled videos (assumed in sync), or synthetic."),
    objective: list[str] = typer.Option(list(("correspondence", "order", "infonce")), "--objective",
                                        help="Self-supervised objectives (repeat): correspondence, order, infonce, "
                                        "masked, contrastive."),
    steps: int = typer.Option(1000), batch_size: int = typer.Option(16), frames: int = typer.Option(40),
    lr: float = typer.Option(1e-3), seed: int = typer.Option(0), workers: int = typer.Option(1),
    config: Optional[Path] = typer.Option(None, help="JSON with more PretrainConfig fields (model_config, "
                                          "objective_weights, synthetic_fraction, cache_dir...)."),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:1 ..."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Self-supervised pre-training of a model's encoders on unlabeled videos (no offset labels): masked
    audio-visual prediction, SimCLR/MoCo contrastive, AV correspondence, temporal order, aligned InfoNCE."""
    from edge_sync.training.pretrain import PretrainConfig, pretrain

    _bundled_checkpoints(model)
    extra = json.loads(config.read_text()) if config else {}
    fields = dict(model=model, data=data, objectives=list(objective), steps=steps, batch_size=batch_size,
                  frames=frames, lr=lr, seed=seed, workers=workers, device=device)
    _print_trained(pretrain(PretrainConfig(**{**fields, **extra}), output), as_json)


@app.command("distill")
def distill_command(
    teacher: str = typer.Option(..., help="Teacher checkpoint (or 'teacher' for the bundled one)."),
    output: Path = typer.Option(..., "-o", "--output", help="Student checkpoint to write (.pt)."),
    data: str = typer.Option("synthetic", help="synthetic, or a folder of your videos."),
    steps: int = typer.Option(2000), batch_size: int = typer.Option(16), frames: int = typer.Option(50),
    lr: float = typer.Option(2e-3), seed: int = typer.Option(0), workers: int = typer.Option(1),
    config: Optional[Path] = typer.Option(None, help="JSON with more TrainConfig fields."),
    device: str = typer.Option("auto"), augment: bool = typer.Option(True), resume: bool = typer.Option(True),
    half: bool = typer.Option(False, help="Store the final weights in float16."),
    end_at: Optional[int] = typer.Option(None, help=END_AT_HELP),
    stop_after_seconds: Optional[float] = typer.Option(None, help=STOP_AFTER_SECONDS_HELP),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Distil the X3D student from a teacher (KL at temperature + the task loss)."""
    from edge_sync.training.train import train

    _bundled_checkpoints(teacher)
    cfg = _train_config("student", data, steps, batch_size, frames, lr, seed, workers, config, device, augment,
                        teacher, half)
    _print_trained(train(cfg, output, resume=resume, end_at=end_at, stop_after_seconds=stop_after_seconds), as_json)


def _clip_names(spec: str) -> list[str]:
    """Names from a comma-separated list, or from a file of one name per line (blank lines, # comments skipped)."""
    path = Path(spec)
    if path.is_file():
        lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
        return [line for line in lines if line]
    return [c.strip() for c in spec.split(",") if c.strip()]


@app.command("eval")
def eval_command(
    model: list[str] = typer.Option(["student"], "--model", help="Model(s): student, teacher, checkpoint paths, or "
                                    "(with --data DIR) artifact directories or bundled ones by name (student-int8)."),
    data: str = typer.Option("synthetic", help="synthetic (the hold-out split), or a folder of in-sync videos of "
                             "real people (optional MANIFEST.tsv): the real-footage protocol with planted offsets."),
    planted: str = typer.Option("-12,-8,-4,-2,2,4,8,12", help="--data DIR: planted audio shifts in frames "
                                "(+ = sound late); the original clip is always scored too."),
    clips: Optional[str] = typer.Option(None, help="--data DIR: only these files: comma-separated names, or a text "
                                        "file with one name per line (# comments), e.g. scripts/real_holdout.txt."),
    detector: Optional[Detector] = typer.Option(None, help="--data DIR: face detector (default yunet)."),
    seed: int = typer.Option(1000, help="Hold-out seed (never used for training)."),
    count: int = typer.Option(200, help="Clips to evaluate."),
    frames: int = typer.Option(50, help="Frames per clip."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Write the metrics as JSON here."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
    device: str = typer.Option("cpu"),
    ablation: bool = typer.Option(False, "--ablation", help="The modernisation table instead of --model: legacy "
                                  "baseline, + modern trunk, + attention, distilled student, its INT8 artifact; "
                                  "accuracy, speed and size on the same clips, written as Markdown to --report."),
    legacy: str = typer.Option("runs/legacy_baseline.pt", help="--ablation: the legacy SyncNet S trained by the "
                               "teacher's recipe (scripts/train_bundled.sh legacy-baseline)."),
    modern: str = typer.Option("teacher", help="--ablation: the modern-trunk teacher (default: the bundled one)."),
    attention: str = typer.Option("runs/teacher_attention.pt", help="--ablation: the teacher with cross-modal "
                                  "attention (scripts/train_bundled.sh teacher-attention)."),
    student: str = typer.Option("student", help="--ablation: the distilled student (default: the bundled one)."),
    int8: Optional[str] = typer.Option(None, help="--ablation: the student's INT8 artifact (default: exported "
                                        "from --student to ONNX INT8 for this run)."),
    extra: list[str] = typer.Option([], "--extra", help="--ablation: more rows, LABEL=CHECKPOINT."),
    base_rows: bool = typer.Option(True, "--base-rows/--no-base-rows", help="--ablation: the five rows of the "
                                   "modernisation plan first; without them only the --extra rows (the first is the "
                                   "baseline of the ratios)."),
    real_data: Optional[Path] = typer.Option(None, "--real-data", help="--ablation: also score every row on this "
                                             "folder of in-sync real clips, by the --data DIR protocol (--clips, "
                                             "--planted and --detector apply)."),
    report: Path = typer.Option(Path("docs/ablation.md"), help="--ablation: where to write the Markdown table."),
    threads: Optional[int] = typer.Option(None, help="--ablation: CPU threads for timing (default: all cores)."),
    speed_frames: int = typer.Option(100, help="--ablation: clip length (frames) that speed is measured at."),
    repeat: int = typer.Option(10, help="--ablation: timed calls per row and round (the median is reported)."),
    rounds: int = typer.Option(5, help="--ablation: interleaved timing rounds over all rows (the best is kept)."),
) -> None:
    """Accuracy, accuracy@+-1, MAE and temporal consistency per frame and per clip, plus the LRS2 context table;
    with --data DIR, the real-footage protocol (planted shifts of real in-sync clips, per source and clip); with
    --ablation, the modernisation table (legacy -> modern trunk -> attention -> student -> INT8)."""
    _bundled_checkpoints(*model)
    if not ablation and data != "synthetic":
        from edge_sync.training.evaluate_cli import run_real_eval

        shifts = [int(k) for k in planted.split(",") if k.strip()]
        names = _clip_names(clips) if clips else None
        _print_result(lambda path: run_real_eval(model, data, path, shifts, detector, names), as_json, output)
        return
    if not ablation:
        from edge_sync.training.evaluate_cli import run_eval

        _print_result(lambda path: run_eval(model, data, seed, count, frames, path, device), as_json, output)
        return
    from edge_sync.training.ablation import AblationRow, RealSet, default_rows, run_ablation, write_ablation

    extras = {}
    for item in extra:
        label, sep, path = item.partition("=")
        if not sep or not label or not path:
            raise ValueError(f"--extra takes LABEL=CHECKPOINT, got {item!r}")
        extras[label] = path
    if base_rows:
        for name, path in (("--legacy", legacy), ("--attention", attention)):
            if not Path(path).is_file() and path not in ("teacher", "student"):
                raise FileNotFoundError(f"{name} {path} does not exist; train it with scripts/train_bundled.sh "
                                        f"{'legacy-baseline' if name == '--legacy' else 'teacher-attention'}")
        rows = default_rows(legacy, modern, attention, student, str(int8) if int8 else None, extras)
        command = (f"edge-sync eval --ablation --legacy {legacy} --modern {modern} --attention {attention} "
                   f"--student {student}" + (f" --int8 {int8}" if int8 else ""))
    else:
        if not extras:
            raise ValueError("--no-base-rows leaves only the --extra rows: give at least one")
        rows = [AblationRow(label, path, note="extra row (--extra)") for label, path in extras.items()]
        command = "edge-sync eval --ablation --no-base-rows"
    real = None
    if real_data is not None:
        real = RealSet(real_data, _clip_names(clips) if clips else None,
                       tuple(int(k) for k in planted.split(",") if k.strip()), detector.value if detector else None)
    _bundled_checkpoints(*(row.source for row in rows if row.kind == "checkpoint"))
    result = run_ablation(rows, data=data, seed=seed, count=count, frames=frames, speed_frames=speed_frames,
                          threads=threads, repeat=repeat, rounds=rounds, device=device, real=real)
    command += "".join(f" --extra '{k}={v}'" for k, v in extras.items())
    if real_data is not None:
        command += f" --real-data '{real_data}'" + (f" --clips '{clips}'" if clips else "")
        command += f" --planted {planted}" if planted != "-12,-8,-4,-2,2,4,8,12" else ""
        command += f" --detector {detector.value}" if detector else ""
    command += (f" --count {count} --frames {frames} --seed {seed}" + (f" --threads {threads}" if threads else "")
                + (f" --repeat {repeat}" if repeat != 10 else "") + (f" --rounds {rounds}" if rounds != 5 else ""))
    _print_result(lambda path: write_ablation(result, report, path, command), as_json, output)


@app.command("export")
def export_command(
    ctx: typer.Context,
    model: str = typer.Option("student", help="student, teacher, legacy checkpoint, or a checkpoint path."),
    target: Target = typer.Option("onnx", help="Export target; all: every target whose toolchain is installed."),
    precision: Precision = typer.Option("fp32", help="Numeric precision of the artifact."),
    output: Path = typer.Option(Path("artifacts"), "-o", "--output", help="Folder for the artifact directories."),
    name: Optional[str] = typer.Option(None, help="Artifact name (default: the model's name)."),
    calib: Optional[Path] = typer.Option(None, help="int8 only: calibration set (edge-sync calibrate) for onnx, "
                                                    "openvino, tflite, tensorrt; default: a synthetic set built "
                                                    "once and shared."),
    calib_method: Optional[CalibMethod] = typer.Option(None, help="int8, onnx/tensorrt only (default: minmax for "
                                                                  "onnx, percentile for tensorrt)."),
    int8_stems: Optional[Int8Stems] = typer.Option(None, help="int8, onnx/tensorrt only: float (default) keeps the "
                                                   "encoders' first convs float, which lowers INT8's error vs "
                                                   "PyTorch at no measured speed cost; int8 quantizes them too, for "
                                                   "NPUs that run INT8 ops only."),
    min_frames: Optional[int] = typer.Option(None, help="Shortest clip (video frames) the artifact must take "
                                                        "(not tflite: see --buckets). Default 1."),
    opt_frames: Optional[int] = typer.Option(None, help="Clip length to optimise for (TensorRT profile, CoreML "
                                                        "default shape; not tflite). Default 100."),
    max_frames: Optional[int] = typer.Option(None, help="Longest clip per call (longer clips are windowed by the "
                                                        "runtime; not tflite)."),
    buckets: Optional[str] = typer.Option(None, help="tflite only: the static clip lengths to export, e.g. 50,250 "
                                                     "(the runtime windows and pads clips to them)."),
    jobs: int = typer.Option(2, "--jobs", "-j", min=1, help="Targets exported side by side, each in its own "
                             "process (targets that share work run one after another)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object per artifact (path, target, "
                                 "precision, bytes, seconds, peak memory, quick parity) instead of the table."),
) -> None:
    """Export a model to deployable artifacts (a directory per target, with a manifest), each target in its own
    process: one progress line per artifact on stderr (other tools' logs only with -v), the table on stdout. An
    option the chosen targets do not read is refused (exit 2)."""
    from edge_sync.exporters.api import check_options, export_targets
    from edge_sync.exporters.applicable import InapplicableOptionError
    from edge_sync.exporters.isolated import export_isolated

    _bundled_checkpoints(model)
    frames = {"--min-frames": min_frames, "--opt-frames": opt_frames, "--max-frames": max_frames}
    options = {"calib": calib, "calib_method": calib_method, "int8_stems": int8_stems,
               "time_range": _time_range(min_frames, opt_frames, max_frames), "buckets": _buckets(buckets)}
    targets = export_targets(target)
    try:
        check_options(targets, precision, options,
                      flag={"calib": "--calib", "calib_method": "--calib-method", "int8_stems": "--int8-stems",
                            "buckets": "--buckets",
                            "time_range": "/".join(k for k, v in frames.items() if v is not None)})
    except InapplicableOptionError as exc:
        raise typer.BadParameter(exc.reason, ctx=ctx, param_hint=f"'{exc.flag}'") from exc
    verbose = bool((ctx.obj or {}).get("verbose"))  # the root -v
    done = export_isolated(model, targets, precision, output, name=name, options=options, verbose=verbose,
                           say=lambda line: typer.echo(line, err=True), jobs=jobs)
    _print_exported(done, as_json)


def _time_range(min_frames: Optional[int], opt_frames: Optional[int], max_frames: Optional[int]) -> Any:
    """The TimeRange the user asked for, or None when no frames option was given (each target's own default)."""
    from edge_sync.exporters.common import TimeRange

    if min_frames is None and opt_frames is None and max_frames is None:
        return None
    lo = min_frames or 1
    opt = opt_frames or max(lo, min(100, max_frames or 100))
    return TimeRange(lo, opt, max_frames)


def _buckets(text: Optional[str]) -> Optional[tuple[int, ...]]:
    if not text:
        return None
    try:
        return tuple(int(b) for b in text.split(",") if b.strip())
    except ValueError:
        raise typer.BadParameter(f"clip lengths in video frames, e.g. 50,250; got {text!r}",
                                 param_hint="'--buckets'") from None


def _print_exported(done: list[Any], as_json: bool) -> None:
    """stdout: one JSON object per artifact, or a table of them with the quick parity check's error."""
    from edge_sync.artifact import read_artifact

    rows = []
    for d in done:
        quick = read_artifact(d.path).manifest.get("parity_quick", {})
        if as_json:
            typer.echo(json.dumps({"path": str(d.path), "target": d.target, "precision": d.precision,
                                   "bytes": d.bytes, "seconds": round(d.seconds, 2),
                                   "peak_rss_mb": round(d.peak_rss_mb), "parity_quick": quick},
                                  default=float))
            continue
        err = quick.get("max_abs_err", {}).get("sync_probs")
        rows.append((str(d.path), d.target, d.precision, f"{d.bytes / 1e6:.2f} MB",
                     quick.get("status", "-") if err is None else f"{err:.1e}"))
    if rows:
        typer.echo("| artifact | target | precision | size | max abs err sync_probs vs PyTorch (quick check) |\n"
                   "|---|---|---|---|---|")
        for r in rows:
            typer.echo("| " + " | ".join(r) + " |")


@app.command("calibrate")
def calibrate_command(
    data: list[str] = typer.Option(["synthetic"], help="synthetic, or a folder of your videos (any nesting); "
                                   "repeat it to mix sources, each giving an equal share of --count."),
    output: Path = typer.Option(..., "-o", "--output", help="Calibration set folder to write."),
    count: int = typer.Option(64, help="Clips in the set."),
    frames: int = typer.Option(50, help="Frames per clip."),
    seed: int = typer.Option(4242, help="Seed for the synthetic clips / the order of files."),
    preprocessing: Preprocessing = typer.Option("mouth112", help="Crops the model takes: mouth112 (teacher, "
                                                "student) or legacy_face224 (imported SyncNet; needs a video folder)."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
    source: Optional[str] = typer.Option(None, "--source", hidden=True, help="Old name of --data."),
) -> None:
    """Build a versioned calibration set for INT8 export (shared by every target)."""
    from edge_sync.calibration import build_calibration_set, load_calibration_set

    path = build_calibration_set([source] if source else data, output, count=count, frames=frames, seed=seed,
                                 preprocessing=preprocessing)
    calib = load_calibration_set(path)
    if as_json:
        typer.echo(json.dumps({"path": str(path), "id": calib.id, "clips": len(calib), "frames": calib.frames,
                               "sha256": calib.sha256}))
        return
    typer.echo(f"{path}: {calib.id} ({len(calib)} clips x {calib.frames} frames, sha256 {calib.sha256[:16]}...)")


@app.command("parity")
def parity_command(
    artifacts: list[str] = typer.Argument(..., help="Artifact directories (edge-sync export -o DIR), or bundled "
                                           "ones by name (student-fp32, student-int8)."),
    reference: Optional[str] = typer.Option(None, help="PyTorch reference: student, teacher or a checkpoint "
                                                       "(default: the model each artifact was exported from)."),
    data: str = typer.Option("synthetic", help="synthetic (hold-out clips with ground truth), a folder of videos, "
                                               "or none (random inputs only)."),
    count: int = typer.Option(100, help="Synthetic hold-out clips."),
    lengths: str = typer.Option("25,100,250", help="Clip lengths for the random-input checks."),
    backend: Backend = typer.Option("auto", help=BACKEND_HELP),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Write the full results as JSON here."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
    report: Optional[Path] = typer.Option(None, help="Write the Markdown report here."),
) -> None:
    """Check artifacts against PyTorch: numeric tolerances per precision and task accuracy. Exit code as bench's: 1
    when an artifact failed, 0 when each passed or was skipped (no backend runs it on this OS)."""
    from edge_sync.parity import parity_markdown, run_parity, write_reports

    _bundled_checkpoints(reference)
    lens = tuple(int(x) for x in lengths.split(",") if x.strip())
    paths = [str(artifact_path(a).absolute()) for a in artifacts]
    results = run_parity(paths, reference=reference, data=data, count=count, lengths=lens, backend=backend)
    settings = {"data": data, "count": count, "lengths": list(lens), "reference": reference}
    _print_result(lambda path: write_reports(results, path, report, settings), as_json, output,
                  lambda _: parity_markdown(results))
    _exit_on_failures({Path(r.artifact).name: ", ".join(r.failures()) for r in results
                       if r.status in ("fail", "error")})


def _exit_on_failures(failures: dict[str, str]) -> None:
    """How parity and bench end: exit 1 naming each artifact that failed (could not run, or failed a check); an
    artifact skipped because no backend runs it on this OS is in the table and is not a failure."""
    if failures:
        raise EdgeSyncError("; ".join(f"{name}: {why}" for name, why in failures.items()))


@app.command("bench")
def bench_command(
    artifacts: list[str] = typer.Argument(..., help="Artifact directories to time, or bundled ones by name "
                                           "(student-fp32, student-int8)."),
    lengths: str = typer.Option("25,100,250", help="Clip lengths (frames)."),
    batch: str = typer.Option("1,8", help="Batch sizes."),
    threads: Optional[int] = typer.Option(None, help="Threads per backend (default: the backend's choice)."),
    repeat: int = typer.Option(10, help="Timed calls per row (after warm-up)."),
    backend: Backend = typer.Option("auto", help=BACKEND_HELP),
    baselines: Optional[bool] = typer.Option(None, "--baselines/--no-baselines", help="Also time the PyTorch "
                                             "teacher, student and original SyncNet S (default: when torch is "
                                             "installed; without torch the parity column is not checked either)."),
    quick: bool = typer.Option(False, help="Smoke run: T 25,100, batch 1, 3 repeats."),
    torch_device: str = typer.Option("cpu", help="Device for the PyTorch baselines (cpu, cuda)."),
    torch_half: bool = typer.Option(False, help="Also time the PyTorch baselines in FP16."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Write the rows as JSON here."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
    report: Optional[Path] = typer.Option(None, help="Write the Markdown table here."),
    plot: Optional[Path] = typer.Option(None, help="Write latency and size/speed plots here (.png)."),
    parity: Optional[Path] = typer.Option(None, metavar="P.json", help="A parity run's JSON (parity --data ... -o "
                                          "P.json): the plot shows each artifact's clip accuracy from it."),
) -> None:
    """Latency matrix: median/p90 latency, frames/s, real-time factor, peak RSS, load time and size per artifact.
    Exit code as parity's: 1 when an artifact failed (or failed its parity check), 0 when each was timed or skipped
    (no backend runs it on this OS)."""
    from edge_sync._deps import require
    from edge_sync.bench.matrix import QUICK, run_bench
    from edge_sync.bench.plot import clip_accuracy, plot as plot_rows
    from edge_sync.bench.report import bench_markdown, write_json

    if plot:
        require("matplotlib", "bench", "bench --plot")  # before minutes of timing, not after
    if baselines is None:
        baselines = importlib.util.find_spec("torch") is not None
        if not baselines:
            typer.echo("edge-sync: no torch here: timing the artifacts only (the PyTorch baselines and the parity "
                       "check need pip install 'edge-sync[export]')", err=True)
    lens = QUICK["lengths"] if quick else [int(x) for x in lengths.split(",") if x.strip()]
    batches = QUICK["batches"] if quick else [int(x) for x in batch.split(",") if x.strip()]
    rep, warm = (QUICK["repeat"], QUICK["warmup"]) if quick else (repeat, 2)
    paths = [str(artifact_path(a).absolute()) for a in artifacts]
    rows = run_bench(paths, lens, batches, threads, rep, warm, backend, baselines, torch_device=torch_device,
                     torch_half=torch_half)
    table = bench_markdown(rows)
    settings = {"lengths": lens, "batches": batches, "threads": threads, "repeat": rep, "backend": backend,
                "baselines": baselines, "torch_device": torch_device, "torch_half": torch_half}
    if report:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text("# Latency matrix\n\n" + table + "\n")
    if plot:
        plot_rows(rows, plot, clip_accuracy(parity) if parity else None)
    _print_result(lambda path: write_json(rows, path, settings) if path else None, as_json, output, lambda _: table)
    _exit_on_failures({r.name: f"{r.status} ({r.detail})" if r.detail else r.status for r in rows
                       if r.status in ("failed", "parity failed")})


CLIP_TIMEOUT_EXIT = 124  # exit status of a clip stopped by its time limit (timeout(1)'s; score's worker watchdog)


class ClipTimeout(BaseException):
    """Raised in the main thread when a clip runs past ``sync --clip-timeout``. A BaseException, so that no
    ``except Exception`` on the way (a library's fallback) swallows it."""


@contextmanager
def _clip_time_limit(seconds: Optional[float]) -> Iterator[None]:
    """Raise :class:`ClipTimeout` in the block once it has run ``seconds`` (None: no limit). A SIGALRM timer
    (setitimer) whose handler raises in the main thread: decoding, face tracking and the model return to Python
    every frame or window, where it lands within milliseconds; all of it runs in this process, so nothing is left
    running when the command exits. The timer is stopped and the previous handler restored on the way out.

    An alarm that lands where Python cannot raise (a finaliser, a callback whose exceptions are ignored) is lost, and
    CI once saw a clip run to its no-face error past its limit: so the alarm rings again every 50 ms until the block
    ends, and a block that ends (or fails otherwise) after an alarm ends in ClipTimeout all the same."""
    if not seconds:
        yield
        return
    rang: list[bool] = []

    def expire(signum: int, frame: Any) -> None:
        rang.append(True)
        raise ClipTimeout

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 1e-3), 0.05)  # under 1 us would read as 0: no timer at all
    try:
        try:
            yield
        except Exception:
            if rang:  # an alarm was swallowed on the way to this error: the limit came first
                raise ClipTimeout from None
            raise
        if rang:
            raise ClipTimeout
    finally:
        try:
            signal.setitimer(signal.ITIMER_REAL, 0)
        finally:  # even when the alarm lands just before it is stopped
            signal.signal(signal.SIGALRM, previous)


@app.command("sync")
def sync_command(
    video: Path = typer.Argument(..., help="A video file with a visible face and its soundtrack."),
    artifact: Optional[str] = typer.Option(None, help=ARTIFACT_HELP),
    backend: Backend = typer.Option("auto", help=BACKEND_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object (with per-frame results)."),
    detector: Detector = typer.Option("yunet", help="Face detector: yunet (learned, landmarks) or haar (fallback)."),
    null_check: bool = typer.Option(True, help=NULL_CHECK_HELP),
    clip_timeout: Optional[float] = typer.Option(
        None, metavar="SECONDS", help="Stop the clip once decoding, face tracking and scoring have taken this long "
        f"(one line on stderr, exit {CLIP_TIMEOUT_EXIT}); default: no limit. POSIX only (SIGALRM)."),
) -> None:
    """Measure the audio/video offset of a video file: decode, face tracks, mouth crops, MFCC, model."""
    from edge_sync.runtimes.api import UNSURE_PREFIX, load

    if clip_timeout is not None and not 0 < clip_timeout < float("inf"):
        raise typer.BadParameter(f"must be a number of seconds > 0, got {clip_timeout:g}",
                                 param_hint="'--clip-timeout'")
    if clip_timeout is not None and not hasattr(signal, "setitimer"):
        raise typer.BadParameter("needs POSIX signals (SIGALRM), which this platform (Windows) lacks; run without it "
                                 "and bound the run from outside", param_hint="'--clip-timeout'")
    engine = load(artifact, backend=backend)
    try:
        with _clip_time_limit(clip_timeout):
            result = engine.sync_file(video, detector=detector, null_check=null_check)
    except ClipTimeout:
        typer.echo(f"edge-sync: error: {video}: decoding, face tracking and scoring took longer than "
                   f"{clip_timeout:g} s (--clip-timeout), so it was stopped", err=True)
        raise typer.Exit(CLIP_TIMEOUT_EXIT) from None
    if as_json:
        typer.echo(result.to_json())
        return
    main = result.main.result
    if main.no_speech:  # the headline must not read like a measurement (--json keeps the model's guess)
        typer.echo(f"{video}: NO SPEECH, no offset measured (the model's guess {main.offset_frames:+d} frames at "
                   f"confidence {main.confidence:.3f}), {main.frames} frames, backend {engine.backend}")
    else:
        typer.echo(f"{video}: offset {main.offset_frames:+d} frames ({main.audio_delay_ms:+.0f} ms, sound late if +; "
                   f"syncnet_python AV offset {main.av_offset:+d}), confidence {main.confidence:.3f}, "
                   f"p={main.probability:.2f}, {main.frames} frames, backend {engine.backend}")
    for t in result.tracks:
        if t is not result.main:
            typer.echo(f"  track {t.track_id} from frame {t.start_frame}: offset {t.result.offset_frames:+d}, "
                       f"confidence {t.result.confidence:.3f}, {t.result.frames} frames")
    if main.speech is not None:
        typer.echo(f"  speech in {main.speech.fraction:.0%} of the analysed frames"
                   + (" (NO SPEECH: the offset is not measured)" if main.no_speech else ""))
    for warning in result.warnings:
        typer.echo(f"  {warning}" if warning.startswith(UNSURE_PREFIX) else f"  warning: {warning}")


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"edge-sync {__version__}")
        raise typer.Exit()


@app.callback()
def _root(ctx: typer.Context,
          verbose: bool = typer.Option(False, "--verbose", "-v", help="Log what edge-sync decides (and, for "
                                       "export, show the export tools' own logs and warnings)."),
          version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    ctx.ensure_object(dict)["verbose"] = verbose  # subcommands read it from their context
    _configure_logging(verbose)


# The extra that brings torch to each command that needs it; a runtime-only install (a device) has no torch.
# `demo` also draws its clip with scikit-image, which only the dev extra installs.
TORCH_EXTRA = {"export": "export", "parity": "export", "bench": "export", "import-syncnet": "export",
               "train": "train", "distill": "train", "eval": "train", "calibrate": "train", "demo": "dev"}
# the extra that brings each other optional module a command imports on its way
MODULE_EXTRA = {"onnx": "export", "onnxscript": "export", "onnx_ir": "export", "matplotlib": "bench",
                "psutil": "bench", "skimage": "dev", "transformers": "trunks"}


def _missing_module(exc: ModuleNotFoundError, args: list[str]) -> Optional[MissingExtraError]:
    """A missing optional module as an error a user can act on: the command that needed it and the extra that
    brings it (None for a module no extra provides: a broken install, shown as it is)."""
    module = (exc.name or "").split(".")[0]
    command = _command(args)
    extra = TORCH_EXTRA.get(command, "export") if module == "torch" else MODULE_EXTRA.get(module)
    if extra is None:
        return None
    hint = f"install it with: pip install 'edge-sync[{extra}]'" + (
        ", or time the artifacts alone with --no-baselines" if command == "bench" and module == "torch" else "")
    return MissingExtraError(module, extra, f"edge-sync {command}".strip(), hint)


def main(argv: Optional[list[str]] = None) -> None:
    """Console entry point: usage errors print typer's usage message and exit 2; library errors become one line on
    stderr and exit code 1."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        code = app(args=args, prog_name="edge-sync", standalone_mode=False)
    except EdgeSyncError as exc:
        print(f"edge-sync: error: {exc}", file=sys.stderr)
        sys.exit(1)
    except typer.Abort:
        print("edge-sync: aborted", file=sys.stderr)
        sys.exit(130)
    except typer.TyperException as exc:  # typer's own (vendored click) usage errors: usage + one line, exit 2
        show = getattr(exc, "show", None)
        show() if show else print(f"edge-sync: error: {exc.format_message()}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except ModuleNotFoundError as exc:
        missing = _missing_module(exc, args)
        if missing is None:
            raise
        print(f"edge-sync: error: {missing}", file=sys.stderr)
        sys.exit(1)
    except (FileNotFoundError, IsADirectoryError, PermissionError, ValueError, TypeError) as exc:
        print(f"edge-sync: error: {exc}", file=sys.stderr)
        sys.exit(1)
    if isinstance(code, int) and code:  # typer.Exit(code) and Ctrl-C (130) come back as a return value here
        sys.exit(code)


cli_usecases.register(app)

if __name__ == "__main__":
    main()
