"""scripts/real_train_dir.sh: the folder every real-footage stage of train_bundled.sh trains on (links + offsets)."""
from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HELD_OUT = "vr_4.mp4"  # in scripts/real_holdout.txt: never trained on


def _folder(path: Path, rows: list[tuple[str, ...]], header: str) -> Path:
    path.mkdir(parents=True)
    for row in rows:
        (path / row[0]).write_bytes(b"")
    (path / "MANIFEST.tsv").write_text(header + "\n" + "".join("\t".join(row) + "\n" for row in rows))
    return path


def _train_dir(real: Path, cwd: Path, **env: str) -> tuple[set[str], str]:
    done = subprocess.run(["bash", str(ROOT / "scripts" / "real_train_dir.sh"), str(real)], capture_output=True,
                          text=True, cwd=cwd, env={"PATH": "/usr/bin:/bin", **env}, timeout=60, check=True)
    out = Path(done.stdout.strip())
    manifest = (out / "MANIFEST.tsv").read_text() if (out / "MANIFEST.tsv").exists() else ""
    return {p.name for p in out.iterdir() if p.name != "MANIFEST.tsv"}, manifest


def test_training_clips_leave_out_the_hold_out_and_extra_clips_keep_their_offsets(tmp_path):
    real = _folder(tmp_path / "real", [("ed_tedlieu.mp4", "real"), (HELD_OUT, "real"), ("odd.mp4", "real-suspect")],
                   "file\tgroup")
    extra = _folder(tmp_path / "extra", [("late.mp4", "real", "3"), ("plain.mp4", "real", ""),
                                         ("skip.mp4", "real-suspect", "5")], "file\tgroup\toffset_frames")
    clips, manifest = _train_dir(real, tmp_path)
    assert clips == {"ed_tedlieu.mp4"} and manifest == ""
    # EXTRA given relative to the caller's folder; its `real` rows join, realigned by their offset_frames
    clips, manifest = _train_dir(real, tmp_path, EXTRA="extra")
    assert clips == {"ed_tedlieu.mp4", "late.mp4", "plain.mp4"}
    assert manifest.splitlines() == ["file\toffset_frames", "late.mp4\t3"]
    # EXTRA_PSEUDO=0: the rows with an offset (pseudo-labels) stay out, the clean ones join (the bundled student's set)
    clips, manifest = _train_dir(real, tmp_path, EXTRA="extra", EXTRA_PSEUDO="0")
    assert clips == {"ed_tedlieu.mp4", "plain.mp4"} and manifest == ""
    # with REALIGN the shared clips' published offsets come first, the extra ones after them
    clips, manifest = _train_dir(real, tmp_path, EXTRA=str(extra), REALIGN="1")
    rows = manifest.splitlines()
    assert rows[0] == "file\toffset_frames" and "ed_tedlieu.mp4\t2" in rows and rows[-1] == "late.mp4\t3"


def test_suspects_join_realigned_by_the_teachers_reading_and_a_missing_one_is_an_error(tmp_path):
    listed = [line.split("\t") for line in (ROOT / "scripts" / "real_suspect_offsets.tsv").read_text().splitlines()
              if line and not line.startswith("#")][1:]
    real = _folder(tmp_path / "real", [("ed_tedlieu.mp4", "real")] + [(f, "real-suspect") for f, _ in listed],
                   "file\tgroup")
    clips, manifest = _train_dir(real, tmp_path, SUSPECTS="1")
    assert clips == {"ed_tedlieu.mp4"} | {f for f, _ in listed}
    assert manifest.splitlines() == ["file\toffset_frames"] + [f"{f}\t{offset}" for f, offset in listed]
    assert dict(listed)["lp_d20.mp4"] == "7" and "w2ll_chaplin.mp4" not in dict(listed)
    (real / listed[0][0]).unlink()
    done = subprocess.run(["bash", str(ROOT / "scripts" / "real_train_dir.sh"), str(real)], capture_output=True,
                          text=True, env={"PATH": "/usr/bin:/bin", "SUSPECTS": "1"}, timeout=60)
    assert done.returncode != 0 and f"has no {listed[0][0]}" in done.stderr
