"""`edge-sync`: a thin command line over the library. Errors print one line on stderr and exit non-zero."""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Optional

import click
import typer

from edge_sync import __version__
from edge_sync.errors import EdgeSyncError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Lip-sync (SyncNet family) models on edge devices: import, run and prove them.")
log = logging.getLogger("edge_sync")


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


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")


@app.callback()
def _root(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log what edge-sync decides."),
          version: bool = typer.Option(False, "--version", help="Print the version and exit.")) -> None:
    _configure_logging(verbose)
    if version:
        typer.echo(__version__)
        raise typer.Exit()


def main(argv: Optional[list[str]] = None) -> None:
    """Console entry point: library errors become one line on stderr and exit code 1."""
    try:
        app(args=argv, standalone_mode=False)
    except EdgeSyncError as exc:
        print(f"edge-sync: error: {exc}", file=sys.stderr)
        sys.exit(1)
    except click.exceptions.Abort:
        print("edge-sync: aborted", file=sys.stderr)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except (FileNotFoundError, IsADirectoryError, PermissionError, ValueError, TypeError) as exc:
        print(f"edge-sync: error: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
