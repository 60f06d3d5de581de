"""The `edge-sync` command as a user runs it: a real subprocess, real files, exit codes and stderr."""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from edge_sync._paths import BUNDLED_ARTIFACT
from edge_sync.models import io
from edge_sync.models.legacy import LegacySyncNetFCN, SyncNetS
from tests.artifact_helpers import edit_manifest, edited_copy, forge_model, set_contract


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge_sync.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300)


def test_help_lists_the_commands():
    out = run("--help")
    assert out.returncode == 0
    for command in ("info", "import-syncnet", "demo"):
        assert command in out.stdout


def test_info_json_reports_contract_and_backends():
    out = run("info", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["contract"]["max_offset"] == 15 and data["contract"]["video_fps"] == 25
    assert data["backends"]["torch"]["version"].startswith("2.13")


def test_import_syncnet_converts_a_public_checkpoint(tmp_path):
    original = SyncNetS().eval()
    torch.save(original.state_dict(), tmp_path / "syncnet_v2.model")
    out = run("import-syncnet", str(tmp_path / "syncnet_v2.model"), "-o", str(tmp_path / "legacy.pt"))
    assert out.returncode == 0, out.stderr
    assert "legacy SyncNet S" in out.stdout
    model = io.load(tmp_path / "legacy.pt")
    assert isinstance(model, LegacySyncNetFCN)
    frames = torch.rand(1, 3, 5, 224, 224) * 255
    with torch.no_grad():
        torch.testing.assert_close(model.embed_video(frames)[0, :, 0], original.forward_lip(frames)[0])


@pytest.mark.parametrize("args, message", [
    (("import-syncnet", "/nonexistent/syncnet_v2.model", "-o", "x.pt"), "legacy checkpoint not found"),
    (("demo", "--offset", "40"), "within +-15"),
])
def test_errors_are_one_line_and_nonzero(tmp_path, args, message):
    out = run(*args, cwd=tmp_path)
    assert out.returncode != 0
    lines = [line for line in out.stderr.strip().splitlines() if line]
    assert len(lines) == 1 and message in lines[0], out.stderr
    assert "Traceback" not in out.stderr


def test_bad_checkpoint_is_refused_without_traceback(tmp_path):
    (tmp_path / "junk.model").write_bytes(b"junk")
    out = run("import-syncnet", str(tmp_path / "junk.model"), "-o", str(tmp_path / "o.pt"))
    assert out.returncode == 1 and "not a readable torch checkpoint" in out.stderr
    assert not (tmp_path / "o.pt").exists()


BAD_ARTIFACTS = {
    "files table emptied": (lambda art: edit_manifest(art, lambda m: m.update(files={})), "files"),
    "entry outside": (lambda art: edit_manifest(art, lambda m: m["entry"].update(model="/etc/passwd")),
                      "entry.model"),
    "format_version a string": (lambda art: edit_manifest(art, lambda m: m.update(format_version="1")),
                                "format_version"),
    "max_offset against the model": (lambda art: edit_manifest(art, set_contract("max_offset", 10)),
                                     "contract.max_offset"),
    "garbage model, matching hash": (lambda art: forge_model(art, b"\x08\x07 no model"), "onnxruntime cannot load"),
}


@pytest.mark.parametrize("case", BAD_ARTIFACTS, ids=list(BAD_ARTIFACTS))
def test_a_bad_artifact_is_one_line_without_traceback(tmp_path, case):
    tamper, message = BAD_ARTIFACTS[case]
    art = tamper(edited_copy(tmp_path / "art"))
    out = run("sync", str(tmp_path / "clip.mp4"), "--artifact", str(art))
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 1 and len(lines) == 1 and message in lines[0], out.stderr
    assert "Traceback" not in out.stderr + out.stdout


def test_sync_stops_a_clip_past_clip_timeout(tmp_path):
    """A 10-minute faceless clip (15,000 frames to decode and search for a face, then a no-face error: about 2-3 s
    on a quiet 2-core machine since YuNet runs on onnxruntime, so a 2 s limit was a race) under a 0.3 s limit: one
    line naming the file and the limit, exit 124 (timeout(1)'s, as score's ClipTimeout worker), stopped long before
    the clip would finish, and no process left working on it."""
    import shutil
    import time

    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed; scripts/setup.sh installs it")
    clip = tmp_path / "long.mp4"
    subprocess.run(["ffmpeg", "-y", "-v", "error", "-f", "lavfi", "-i", "color=c=gray:s=160x120:r=25:d=600",
                    "-f", "lavfi", "-i", "sine=f=300:d=600", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac",
                    "-shortest", str(clip)], check=True)
    start = time.monotonic()
    out = run("sync", str(clip), "--clip-timeout", "0.3")
    took = time.monotonic() - start
    assert out.returncode == 124, out.stderr
    assert out.stderr.strip().splitlines() == [
        f"edge-sync: error: {clip}: decoding, face tracking and scoring took longer than 0.3 s (--clip-timeout), so "
        "it was stopped"] and out.stdout == ""
    assert took < 15, took  # start-up + 0.3 s, not the whole clip
    still = [pid for pid in os.listdir("/proc") if pid.isdigit() and _cmdline_has(int(pid), str(clip))]
    assert still == [], still


def test_a_clip_time_limit_is_kept_when_its_alarm_is_swallowed():
    """An alarm that lands in a finaliser (exceptions there are printed and dropped) must not let the clip run on
    unbounded: the alarm rings again, and a block that finishes after one rang still ends in ClipTimeout."""
    import time

    from edge_sync import cli

    swallowed = 0
    with pytest.raises(cli.ClipTimeout):
        with cli._clip_time_limit(0.05):
            deadline = time.monotonic() + 0.4
            while time.monotonic() < deadline:
                try:
                    time.sleep(0.01)
                except cli.ClipTimeout:  # what a finaliser does with it
                    swallowed += 1
    assert swallowed >= 2  # it rang again after the first one was lost
    with cli._clip_time_limit(5.0):  # a block well inside its limit is left alone
        time.sleep(0.01)


def _cmdline_has(pid: int, text: str) -> bool:
    try:
        return text.encode() in (Path("/proc") / str(pid) / "cmdline").read_bytes()
    except OSError:  # gone meanwhile, or not ours to read
        return False


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf"])
def test_sync_clip_timeout_must_be_positive_seconds(value):
    out = run("sync", "x.mp4", "--clip-timeout", value)
    assert out.returncode == 2 and "must be a number of seconds > 0" in out.stderr, out.stderr


def test_sync_clip_timeout_is_refused_where_there_is_no_sigalrm(monkeypatch, capsys):
    """Windows has no setitimer: the option is refused in one line rather than silently not limiting anything."""
    import signal

    from edge_sync.cli import main

    monkeypatch.delattr(signal, "setitimer")
    with pytest.raises(SystemExit) as stop:
        main(["sync", "x.mp4", "--clip-timeout", "5"])
    assert stop.value.code == 2 and "needs POSIX signals (SIGALRM)" in capsys.readouterr().err


def test_the_clip_time_limit_is_gone_once_the_clip_is_done():
    """A clip finished under its limit: no alarm fires later, and the previous SIGALRM handler is back."""
    import signal
    import time

    from edge_sync.cli import ClipTimeout, _clip_time_limit

    before = signal.getsignal(signal.SIGALRM)
    with _clip_time_limit(0.2):
        pass
    time.sleep(0.4)
    assert signal.getsignal(signal.SIGALRM) is before and signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    with pytest.raises(ClipTimeout), _clip_time_limit(0.1):
        time.sleep(5)
    assert signal.getsignal(signal.SIGALRM) is before


def test_demo_runs_the_whole_pipeline(tmp_path):
    out = run("demo", "--offset", "2", "--workdir", str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert "planted:   +2 frames" in out.stdout and "detected:" in out.stdout
    assert (tmp_path / "talking_offset+2.mp4").stat().st_size > 10_000


def test_info_lists_export_targets_and_runtime_backends(capsys):
    import json as _json

    from edge_sync.cli import main

    main(["info", "--json"])
    data = _json.loads(capsys.readouterr().out)
    assert set(data["export_targets"]) == {"onnx", "openvino", "coreml", "tflite", "tensorrt"}
    backends = data["runtime_backends"]
    assert list(backends)[0] == "tensorrt" and "tensorrt" in backends["onnxruntime"]["targets"]
    assert backends["coreml"]["platforms"] == ["darwin"]
    # running a .tflite artifact needs the interpreter only: the runtime extra, not the exporter's
    assert data["backends"]["ai-edge-litert"]["extra"] == "litert" == backends["litert"]["extra"]


def test_version_prints_name_and_version():
    from edge_sync import __version__

    out = run("--version")
    assert out.returncode == 0, out.stderr
    assert out.stdout == f"edge-sync {__version__}\n"


@pytest.mark.parametrize("args, message", [
    (("synk",), "No such command 'synk'"),
    (("sync",), "Missing argument"),
    (("sync", "--bogus", "x.mp4"), "No such option: --bogus"),
])
def test_usage_errors_are_short_and_exit_2(args, message):
    out = run(*args)
    assert out.returncode == 2, out.stderr
    assert message in out.stderr and "Usage: edge-sync" in out.stderr
    assert "Traceback" not in out.stderr + out.stdout and len(out.stderr.strip().splitlines()) <= 5, out.stderr


def test_bare_command_prints_help_without_traceback():
    out = run()
    assert out.returncode == 2  # typer's convention for a group called without a command: help, exit 2
    text = out.stdout + out.stderr
    assert "Usage: edge-sync" in text and "sync" in text and "Traceback" not in text


def without(modules: tuple[str, ...], *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """The CLI as on an install that lacks ``modules`` (a runtime-only install has no torch): importing them fails."""
    hide = "".join(f"sys.modules[{m!r}] = None; " for m in modules)
    code = f"import sys; {hide}from edge_sync.cli import main; main({list(args)!r})"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, timeout=300)


@pytest.mark.parametrize("args, extra", [
    (("export",), "export"),
    (("train", "-o", "x.pt"), "train"),
    (("parity", "art"), "export"),
    (("bench", "art", "--baselines"), "export"),  # asked for the PyTorch baselines; the message offers --no-baselines
])
def test_a_command_that_needs_torch_names_the_extra(tmp_path, args, extra):
    out = without(("torch",), *args, cwd=tmp_path)
    assert out.returncode == 1, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and f"pip install 'edge-sync[{extra}]'" in lines[0], out.stderr


def test_bench_times_an_artifact_without_torch(tmp_path):
    out = without(("torch",), "bench", str(BUNDLED_ARTIFACT), "--quick", "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)["rows"]
    assert {r["status"] for r in rows} == {"ok"} and {r["name"] for r in rows} == {"student.onnx-fp32"}
    assert all("no torch" in r["detail"] for r in rows)  # no baselines, no parity check: said, not failed
    assert "pip install 'edge-sync[export]'" in out.stderr


def test_bench_plot_without_matplotlib_names_the_extra_before_timing(tmp_path):
    out = without(("matplotlib",), "bench", str(BUNDLED_ARTIFACT), "--no-baselines", "--plot", "b.png", cwd=tmp_path)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 1 and len(lines) == 1 and "pip install 'edge-sync[bench]'" in lines[0], out.stderr
    assert out.stdout == ""  # refused before any timing


def test_a_missing_bundled_checkpoint_says_where_it_comes_from(tmp_path, monkeypatch, capsys):
    import edge_sync._paths as paths
    from edge_sync import cli

    monkeypatch.setattr(paths, "WEIGHTS_DIR", tmp_path)  # as in an installed wheel: no .pt files
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        cli.main(["export", "--model", "student"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 1 and len(err) == 1 and "source checkout" in err[0], err


# --- conventions: every command follows them, checked on the command tree itself -----------------------------
def commands() -> dict:
    import typer

    from edge_sync.cli import app

    return typer.main.get_command(app).commands


def options(command) -> dict[str, object]:
    return {opt: p for p in command.params for opt in (*p.opts, *getattr(p, "secondary_opts", []))
            if opt.startswith("-")}


def test_json_is_a_flag_everywhere_and_files_go_to_output():
    cmds = commands()
    with_json = {name for name, c in cmds.items() if "--json" in options(c)}
    assert {"info", "export", "calibrate", "eval", "parity", "bench", "train", "distill", "sync", "score"} <= with_json
    for name in with_json:
        assert options(cmds[name])["--json"].is_flag, f"{name} --json takes a value"
    for name in ("eval", "parity", "bench"):  # the JSON file these wrote with --json PATH
        opts = options(cmds[name])
        assert opts["-o"] is opts["--output"], name


# one name per idea: the names on the left are hidden aliases at most
ALIASES = {"--source": "--data"}


def test_one_option_name_per_idea():
    for name, command in commands().items():
        for opt, param in options(command).items():
            assert opt not in ALIASES or param.hidden, f"{name} shows {opt}; the name is {ALIASES[opt]}"


def wide_help(*args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "edge_sync.cli", *args, "--help"], capture_output=True, text=True,
                         timeout=300, env={**os.environ, "COLUMNS": "400"})
    assert out.returncode == 0, out.stderr
    return out.stdout


def choices_in(text: str, option: str) -> list[str]:
    line = next(line for line in text.splitlines() if re.search(rf"{option}\b", line))
    return re.search(r"<([\w|-]+)>", line.split(option, 1)[1]).group(1).split("|")


def test_help_lists_the_choices_from_the_registries():
    from edge_sync.exporters import EXPORTERS
    from edge_sync.features.faces import DETECTORS
    from edge_sync.runtimes.registry import BACKENDS

    export = wide_help("export")
    assert choices_in(export, "--target") == [*EXPORTERS, "all"]
    assert set(choices_in(export, "--precision")) == {p for e in EXPORTERS.values() for p in e.precisions}
    for command in ("sync", "parity", "bench", "score", "speakers", "desync", "fix"):
        assert set(choices_in(wide_help(command), "--backend")) == {"auto", *BACKENDS}, command
    for command in ("sync", "eval"):
        assert set(choices_in(wide_help(command), "--detector")) == set(DETECTORS), command


def test_a_value_outside_the_choices_is_a_usage_error():
    out = run("export", "--target", "onxx")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "'onxx' is not one of" in out.stderr and "'openvino'" in out.stderr, out.stderr


def test_shell_completion_is_on_and_completes_choices():
    from edge_sync.exporters import EXPORTERS

    assert "--install-completion" in wide_help()
    # typer finds the shell among the process's ancestors: run it from bash (kept alive by the second command), as a
    # user would, so the test does not depend on whether pytest itself was started from a shell
    shown = subprocess.run(["bash", "-c", f"{shlex.quote(sys.executable)} -m edge_sync.cli --show-completion; exit $?"],
                           capture_output=True, text=True, timeout=300)
    assert shown.returncode == 0 and "complete -o default" in shown.stdout, shown.stderr
    env = {**os.environ, "_EDGE_SYNC_COMPLETE": "complete_bash", "COMP_WORDS": "edge-sync export --target ",
           "COMP_CWORD": "3"}
    done = subprocess.run([sys.executable, "-m", "edge_sync.cli"], capture_output=True, text=True, env=env,
                          timeout=300)
    assert done.returncode == 0 and done.stdout.split() == [*EXPORTERS, "all"], done.stdout


# --- --json prints, -o writes, --json PATH still works (deprecated) --------------------------------------------
def test_json_flag_prints_what_output_writes(tmp_path):
    out = run("eval", "--model", "student", "--count", "2", "--frames", "36", "--json", "-o", str(tmp_path / "e.json"))
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == json.loads((tmp_path / "e.json").read_text())
    assert json.loads(out.stdout)["models"]["student"]["clip"]["n_clips"] == 2


def test_parity_and_bench_print_json(tmp_path):
    parity = run("parity", str(BUNDLED_ARTIFACT), "--data", "none", "--lengths", "25", "--json")
    assert parity.returncode == 0, parity.stderr
    assert json.loads(parity.stdout)["results"][0]["status"] == "pass"
    bench = run("bench", str(BUNDLED_ARTIFACT), "--quick", "--no-baselines", "--json")
    assert bench.returncode == 0, bench.stderr
    assert {r["frames"] for r in json.loads(bench.stdout)["rows"]} == {25, 100}


def test_parity_and_bench_take_a_bundled_artifact_by_name(tmp_path):
    parity = run("parity", "student-int8", "--data", "none", "--lengths", "25", "--json", cwd=tmp_path)
    assert parity.returncode == 0, parity.stderr
    assert json.loads(parity.stdout)["results"][0]["artifact"].endswith("student.onnx-int8")
    bench = run("bench", "student-int8", "--quick", "--no-baselines", "--json", cwd=tmp_path)
    assert bench.returncode == 0, bench.stderr
    assert {r["name"] for r in json.loads(bench.stdout)["rows"]} == {"student.onnx-int8"}


def test_a_path_spelt_with_a_folder_is_never_a_bundled_name(tmp_path):
    """./student-int8 means a folder here: missing, it is an error, not the bundled artifact of that name."""
    for args in (("sync", "clip.mp4", "--artifact", "./student-int8"), ("bench", "./student-int8", "--quick"),
                 ("parity", "./student-int8", "--data", "none", "--lengths", "25", "--json"),
                 ("desync", "clip.mp4", "--artifact", "./student-int8")):
        out = run(*args, cwd=tmp_path)
        assert out.returncode != 0 and "student-int8" in out.stderr + out.stdout, (args, out.stdout, out.stderr)
        assert "student.onnx-int8" not in out.stdout, args


def test_json_with_a_path_is_a_deprecated_output(tmp_path):
    out = run("bench", str(BUNDLED_ARTIFACT), "--quick", "--no-baselines", "--json", str(tmp_path / "b.json"))
    assert out.returncode == 0, out.stderr
    assert json.loads((tmp_path / "b.json").read_text())["rows"] and "| student.onnx-fp32 |" in out.stdout
    assert "deprecated" in out.stderr and f"-o {tmp_path / 'b.json'}" in out.stderr


def test_calibrate_takes_data_and_the_old_source_name(tmp_path):
    for i, option in enumerate(("--data", "--source")):
        out = run("calibrate", option, "synthetic", "--count", "2", "--frames", "10", "-o", str(tmp_path / f"c{i}"),
                  "--json")
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["clips"] == 2
    out = run("calibrate", "--data", "synthetic", "--data", "synthetic", "--count", "3", "--frames", "10", "-o",
              str(tmp_path / "mix"), "--json")  # repeated --data mixes sources (test_sets covers a real folder)
    assert out.returncode == 0, out.stderr
    parts = json.loads((tmp_path / "mix" / "manifest.json").read_text())["source"]["parts"]
    assert json.loads(out.stdout)["clips"] == 3 and [p["count"] for p in parts] == [2, 1]


# --- an artifact this OS cannot run: skipped in parity and bench, one exit-code rule ---------------------------
@pytest.fixture()
def coreml_artifact(tmp_path):
    """The bundled artifact labelled as CoreML: no backend predicts it off macOS."""
    return edited_copy(tmp_path / "student.coreml-fp32", lambda m: m.update(target="coreml"))


@pytest.mark.skipif(sys.platform == "darwin", reason="CoreML runs on macOS")
@pytest.mark.parametrize("command", [("parity", "--data", "none", "--lengths", "25"),
                                     ("bench", "--quick", "--no-baselines")])
def test_an_artifact_this_os_cannot_run_is_skipped_not_failed(tmp_path, coreml_artifact, command):
    name, *opts = command
    out = run(name, str(coreml_artifact), *opts, "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    rows = data["results"] if name == "parity" else data["rows"]
    assert {r["status"] for r in rows} == {"skipped"}
    assert all("macOS only" in (r.get("skipped") or r.get("detail")) for r in rows)
    table = run(name, str(coreml_artifact), *opts)
    assert "skipped" in table.stdout and "macOS only" in table.stdout
    # the same rule in both: an artifact that cannot be read fails the run; the skipped one does not
    failing = run(name, str(coreml_artifact), str(tmp_path / "missing.onnx-fp32"), *opts)
    lines = failing.stderr.strip().splitlines()
    assert failing.returncode == 1 and "missing.onnx-fp32" in lines[-1] and "coreml" not in lines[-1]


# --- device footprint: runtime extras carry nothing export-only; info says which extra is for what --------------
EXPORT_ONLY = {"torch", "onnx", "onnxscript", "nncf", "litert-torch", "ai-edge-quantizer", "transformers"}


def requirement_names(extra: str, extras: dict[str, list[str]]) -> set[str]:
    names = set()
    for req in extras[extra]:
        name = re.split(r"[<>=\[;! ]", req, maxsplit=1)[0]
        names |= (set().union(*(requirement_names(e, extras) for e in re.search(r"\[(.*)\]", req).group(1).split(",")))
                  if name == "edge-sync" else {name})
    return names


def pyproject() -> dict:
    import tomllib

    return tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())


def test_runtime_extras_carry_nothing_export_only():
    from edge_sync.runtimes.registry import BACKENDS

    project = pyproject()["project"]
    extras = project["optional-dependencies"]
    assert not EXPORT_ONLY & {re.split(r"[<>=\[;! ]", r)[0] for r in project["dependencies"]}
    for backend in BACKENDS.values():
        assert not EXPORT_ONLY & requirement_names(backend.extra, extras), backend.extra
    assert "nncf" in requirement_names("export", extras)  # OpenVINO INT8 export: [export,openvino]


def test_the_wheel_carries_the_runtime_artifacts_not_the_torch_checkpoints():
    from edge_sync._paths import BUNDLED_ARTIFACTS, WEIGHTS_DIR

    globs = pyproject()["tool"]["setuptools"]["package-data"]["edge_sync"]
    root = Path(__file__).parents[1] / "edge_sync"
    shipped = {f for g in globs for f in root.glob(g) if f.is_file()}
    assert BUNDLED_ARTIFACT / "manifest.json" in shipped and BUNDLED_ARTIFACT / "model.onnx" in shipped
    for folder in BUNDLED_ARTIFACTS.values():  # every artifact `--artifact NAME` offers
        assert WEIGHTS_DIR / folder / "manifest.json" in shipped and WEIGHTS_DIR / folder / "model.onnx" in shipped
    assert not [f for f in shipped if f.suffix == ".pt"]


def test_info_recommends_runtime_extras_to_run_and_export_extras_to_export():
    data = json.loads(run("info", "--json").stdout)
    assert data["backends"]["nncf"]["extra"] == "export" and data["backends"]["nncf"]["for"] == "export"
    assert {data["backends"][d]["for"] for d in ("onnxruntime", "openvino", "ai-edge-litert")} == {"run"}
    assert data["bundled_artifact"]["installed"]
    text = run("info").stdout
    assert "to run artifacts (a device): pip install 'edge-sync[onnxruntime]'" in text
    assert "to export: pip install 'edge-sync[export]'" in text and "openvino [export,openvino]" in text


def test_train_stops_on_its_time_budget_and_the_same_command_resumes(tmp_path):
    """--stop-after-seconds: the call keeps the step that ends past it, says so (no checkpoint yet), and the same
    command, run again, ends the schedule."""
    from tests.training.tiny_configs import TINY_STUDENT

    config = tmp_path / "tiny.json"
    config.write_text(json.dumps({"model_config": TINY_STUDENT, "speech_bank": 4, "warmup_steps": 1}))
    command = [sys.executable, "-m", "edge_sync.cli", "train", "--model", "student", "--config", str(config),
               "--steps", "3", "--batch-size", "2", "--frames", "12", "--workers", "0", "--device", "cpu",
               "--no-augment", "-o", str(tmp_path / "s.pt"), "--json"]

    def run(*extra: str) -> dict:
        done = subprocess.run(command + list(extra), capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        return json.loads(done.stdout.strip().splitlines()[-1])

    stopped = run("--stop-after-seconds", "0")
    assert (stopped["steps"], stopped["written"]) == (1, False) and not (tmp_path / "s.pt").exists()
    ended = run()
    assert (ended["steps"], ended["written"]) == (3, True) and io.load(tmp_path / "s.pt").checkpoint_meta["steps"] == 3


def test_pretrain_prints_what_it_wrote(tmp_path):
    """edge-sync pretrain --json reports its checkpoint the way train does (pre-training has no time budget, so it is
    always written): the call does not fail after the work is done."""
    from tests.training.tiny_configs import TINY_TEACHER

    config = tmp_path / "tiny.json"
    config.write_text(json.dumps({"model_config": TINY_TEACHER, "speech_bank": 4}))
    done = subprocess.run([sys.executable, "-m", "edge_sync.cli", "pretrain", "--config", str(config), "--steps", "1",
                           "--batch-size", "2", "--frames", "12", "--workers", "0", "--device", "cpu",
                           "--objective", "infonce", "-o", str(tmp_path / "p.pt"), "--json"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    printed = json.loads(done.stdout.strip().splitlines()[-1])
    assert (printed["steps"], printed["written"]) == (1, True) and (tmp_path / "p.pt").exists()
