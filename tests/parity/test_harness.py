"""Parity harness: passes the bundled artifact, catches a wrong model, reports errors instead of raising."""
from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("onnxruntime", reason="pip install 'edge-sync[onnxruntime]'")

from edge_sync._paths import BUNDLED_ARTIFACT  # noqa: E402
from edge_sync.cli import main  # noqa: E402
from edge_sync.parity import TOLERANCES, run_parity  # noqa: E402
from edge_sync.errors import EdgeSyncError  # noqa: E402
from edge_sync.parity.harness import failing_fraction  # noqa: E402


def test_an_element_fails_only_beyond_both_tolerances():
    tol = TOLERANCES["fp32"]  # atol 1e-4, rtol 1e-3
    ref = np.array([0.0, 1.0, 10.0, 100.0])
    out = ref + np.array([5e-5, 5e-4, 5e-3, 5e-2])  # below atol; above atol but below rtol*|ref| for the rest
    assert failing_fraction(out, ref, tol) == 0.0
    out = ref + np.array([2e-4, 2e-3, 0.0, 0.0])  # both beyond atol and rtol*|ref|
    assert failing_fraction(out, ref, tol) == 0.5


def test_bundled_artifact_passes_against_its_source_model():
    (res,) = run_parity([BUNDLED_ARTIFACT], count=4, lengths=(25, 137), teacher=None, progress=False)
    assert res.passed, res.failures()
    assert set(res.numeric) == {"random T=25", "random T=137", "synthetic"}
    assert res.numeric["random T=137"]["sync_probs_max_abs"] <= 1e-4
    assert res.task["clips"] == 4 and res.task["delta"] == 0.0
    names = {c.name for c in res.checks}
    assert {"sync_probs failing elements", "frame offset agreement", "accuracy drop (points)"} <= names


def test_a_different_model_fails_and_says_by_how_much():
    (res,) = run_parity([BUNDLED_ARTIFACT], reference="teacher", count=3, lengths=(25,), teacher=None,
                        progress=False)
    assert not res.passed and res.status == "fail"
    failure = " ".join(res.failures())
    assert "sync_probs failing elements" in failure and "limit 0" in failure


def test_student_artifacts_are_also_scored_against_the_teacher():
    (res,) = run_parity([BUNDLED_ARTIFACT], count=3, lengths=(25,), progress=False)
    assert {"teacher_accuracy", "delta_to_teacher"} <= set(res.task)


def test_unloadable_artifact_is_reported_not_raised(tmp_path):
    (res,) = run_parity([tmp_path / "missing.onnx-fp32"], count=1, lengths=(25,), progress=False)
    assert res.status == "error" and "not an artifact directory" in res.error


def test_cli_writes_reports_and_exits_non_zero_on_failure(tmp_path, capsys):
    ok_json, ok_md = tmp_path / "ok.json", tmp_path / "ok.md"
    main(["parity", str(BUNDLED_ARTIFACT), "--count", "2", "--lengths", "25", "--json", str(ok_json),
          "--report", str(ok_md)])
    data = json.loads(ok_json.read_text())
    assert data["results"][0]["status"] == "pass" and "fp32" in data["tolerances"]
    assert "| student.onnx-fp32 | onnxruntime |" in ok_md.read_text()
    with pytest.raises(SystemExit) as exc:
        main(["parity", str(BUNDLED_ARTIFACT), "--reference", "teacher", "--data", "none", "--lengths", "25"])
    assert exc.value.code == 1
    assert "sync_probs failing elements" in capsys.readouterr().err


def test_the_reference_of_an_artifact_is_found_by_its_weights_hash_and_checked_against_it(tmp_path):
    """A manifest records the exporting machine's checkpoint path; the bundled checkpoint with the manifest's weights
    hash is the reference wherever that path points, a recorded file that now holds other weights is refused, and
    an unknown one asks for --reference instead of failing on a missing file."""
    import json
    from types import SimpleNamespace

    from edge_sync._paths import WEIGHTS_DIR
    from edge_sync.parity.harness import _check_reference, _reference_for

    manifest = json.loads((WEIGHTS_DIR / "student.onnx-int8" / "manifest.json").read_text())
    sha = manifest["source"]["checkpoint_sha256"]
    (tmp_path / "student.pt").write_bytes(b"another checkpoint at the recorded path")
    for recorded in ("/another/machine/edge_sync/weights/student.pt", str(tmp_path / "student.pt")):
        manifest["source"]["model"] = recorded
        assert _reference_for(manifest, None) == "student"
    assert _reference_for(manifest, "teacher") == "teacher"  # --reference wins
    manifest["source"]["checkpoint_sha256"] = "0" * 64
    assert _reference_for(manifest, None) == str(tmp_path / "student.pt")  # not bundled: the recorded file
    with pytest.raises(EdgeSyncError, match="now holds other weights"):
        _check_reference(manifest, None, SimpleNamespace(checkpoint_sha256=sha))
    _check_reference(manifest, "my.pt", SimpleNamespace(checkpoint_sha256=sha))  # asked for: the user's choice
    manifest["source"]["model"] = "/another/machine/student.pt"
    with pytest.raises(EdgeSyncError, match="is not here.*--reference"):
        _reference_for(manifest, None)
    manifest["source"] = {}
    with pytest.raises(EdgeSyncError, match="names no source model"):
        _reference_for(manifest, None)
