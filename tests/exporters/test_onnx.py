"""ONNX export: dynamic time really works, files are hashed, writes are atomic, bad requests are refused."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime", reason="pip install 'edge-sync[onnxruntime]'")
pytest.importorskip("onnxscript", reason="pip install 'edge-sync[export]'")

from edge_sync.artifact import ArtifactError, read_artifact  # noqa: E402
from edge_sync.errors import EdgeSyncError  # noqa: E402
from edge_sync.exporters.api import export  # noqa: E402
from edge_sync.models.io import save_checkpoint  # noqa: E402
from edge_sync.models.student import X3DStudent  # noqa: E402
from edge_sync.models.teacher import SyncNetFCN, TeacherConfig  # noqa: E402
from tests.models.helpers import randomise_batchnorm  # noqa: E402


@pytest.fixture(scope="module")
def student_ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "student.pt"
    save_checkpoint(randomise_batchnorm(X3DStudent()), path)
    return path


@pytest.fixture(scope="module")
def fp32_artifact(student_ckpt, tmp_path_factory):
    return export(student_ckpt, "onnx", "fp32", tmp_path_factory.mktemp("art"))[0]


def test_artifact_layout_and_manifest(fp32_artifact, student_ckpt):
    assert fp32_artifact.name == "student.onnx-fp32"
    art = read_artifact(fp32_artifact)
    m = art.manifest
    assert m["target"] == "onnx" and m["precision"] == "fp32" and m["opset"] >= 17
    assert m["contract"]["inputs"][0]["name"] == "audio" and m["contract"]["max_offset"] == 15
    assert m["source"]["checkpoint_sha256"] and m["tools"]["torch"].startswith("2.13")
    assert set(m["files"]) == {"model.onnx"}


def test_the_manifest_names_its_checkpoint_by_a_path_that_holds_from_any_directory(student_ckpt, tmp_path,
                                                                                     monkeypatch):
    monkeypatch.chdir(student_ckpt.parent)
    art = read_artifact(export("student.pt", "onnx", "fp32", tmp_path)[0])
    assert art.manifest["source"]["model"] == str(student_ckpt.resolve())


@pytest.mark.parametrize("frames", [25, 100, 250])
def test_fp32_matches_pytorch_at_lengths_other_than_the_export_sample(fp32_artifact, student_ckpt, frames):
    import onnxruntime as ort

    from edge_sync.exporters.onnx import sample_inputs
    from edge_sync.models.io import load

    model = load(student_ckpt)
    audio, video = sample_inputs(model, frames, batch=2, seed=frames)
    sess = ort.InferenceSession(str(fp32_artifact / "model.onnx"), providers=["CPUExecutionProvider"])
    out = sess.run(None, {"audio": audio.numpy(), "video": video.numpy()})
    with torch.inference_mode():
        ref = model(audio, video)
    assert out[0].shape == (2, 31, frames)
    assert np.abs(out[0] - ref[0].numpy()).max() <= 1e-4
    assert np.abs(out[1] - ref[1].numpy()).max() <= 1e-4


def test_a_separable_model_exports_its_embeddings_and_the_runtime_reads_them(fp32_artifact, student_ckpt):
    """The student's unit embeddings are two more outputs, declared in the manifest and equal to PyTorch's; the
    runtime returns them (what sync_file reads its evidence null from)."""
    import edge_sync
    from edge_sync.exporters.onnx import sample_inputs
    from edge_sync.models.io import load

    contract = read_artifact(fp32_artifact).manifest["contract"]
    assert contract["embeddings"] is True
    assert [t["name"] for t in contract["outputs"]] == ["sync_probs", "correlation", "audio_emb", "video_emb"]
    model = load(student_ckpt)
    audio, video = sample_inputs(model, 60, seed=4)
    engine = edge_sync.load(fp32_artifact)
    out = engine.run_outputs(audio.numpy(), video.numpy())
    with torch.inference_mode():
        ref_a, ref_v = model.embed(audio, video)
    assert engine.embeddings and out["audio_emb"].shape == (model.config.embed_dim, 60)
    assert np.abs(out["audio_emb"] - ref_a[0].numpy()).max() <= 1e-4
    assert np.abs(out["video_emb"] - ref_v[0].numpy()).max() <= 1e-4


def test_a_model_with_cross_modal_attention_exports_without_embeddings(tmp_path):
    """Attention mixes audio into the video embedding (and back): rolling one stream's embeddings would not be
    the null, so the artifact keeps the two contract outputs and the runtime streams its null."""
    import edge_sync

    ckpt = tmp_path / "teacher.pt"
    save_checkpoint(SyncNetFCN(TeacherConfig(video_trunk_kwargs={"width": 0.25}, audio_trunk_kwargs={"width": 0.25},
                                             attention=True)).eval(), ckpt)
    path = export(ckpt, "onnx", "fp32", tmp_path / "out")[0]
    contract = read_artifact(path).manifest["contract"]
    assert "embeddings" not in contract and len(contract["outputs"]) == 2
    assert not edge_sync.load(path).embeddings


def test_fp16_keeps_float32_io_and_agrees(student_ckpt, fp32_artifact, tmp_path):
    import onnx

    path = export(student_ckpt, "onnx", "fp16", tmp_path)[0]
    art = read_artifact(path)
    assert art.manifest["parity_quick"]["frame_offset_agreement"] >= 0.95
    assert (path / "model.onnx").stat().st_size < 0.7 * (fp32_artifact / "model.onnx").stat().st_size
    graph = onnx.load(str(path / "model.onnx")).graph
    assert all(i.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for i in graph.input)


def test_teacher_exports_with_its_correlation_loop(tmp_path):
    ckpt = tmp_path / "teacher.pt"
    save_checkpoint(SyncNetFCN(TeacherConfig(video_trunk_kwargs={"width": 0.25},
                                             audio_trunk_kwargs={"width": 0.25})).eval(), ckpt)
    art = read_artifact(export(ckpt, "onnx", "fp32", tmp_path / "out")[0])
    assert art.manifest["parity_quick"]["max_abs_err"]["sync_probs"] <= 1e-4


def test_unsupported_precision_and_target_are_refused(student_ckpt, tmp_path):
    with pytest.raises(EdgeSyncError, match="supports precisions fp32, fp16, int8"):
        export(student_ckpt, "onnx", "int4", tmp_path)
    with pytest.raises(EdgeSyncError, match="unknown export target"):
        export(student_ckpt, "coreml2", "fp32", tmp_path)
    assert not any(tmp_path.iterdir())  # nothing half-written


def test_tampering_is_detected(fp32_artifact, tmp_path):
    import shutil

    copy = tmp_path / fp32_artifact.name
    shutil.copytree(fp32_artifact, copy)
    with open(copy / "model.onnx", "r+b") as f:
        f.seek(100)
        f.write(b"\x00\x01\x02")
    with pytest.raises(ArtifactError, match="sha256"):
        read_artifact(copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["spec_version"] = 99
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="contract v99"):
        read_artifact(copy)
    (copy / "manifest.json").unlink()
    with pytest.raises(ArtifactError, match="no manifest.json"):
        read_artifact(copy)


def test_shared_exports_run_torch_onnx_once_per_model(student_ckpt, fp32_artifact, tmp_path):
    from edge_sync.exporters import onnx as onnx_exporter
    from edge_sync.models.embeddings import with_embeddings
    from edge_sync.models.io import load

    model, shared = with_embeddings(load(student_ckpt)), tmp_path / "shared"  # as export_onnx exports it
    shared.mkdir()
    with onnx_exporter.shared_exports(shared):
        onnx_exporter.export_onnx_file(model, tmp_path / "a.onnx")  # exported, and kept in the shared folder
        kept = list(shared.iterdir())
        stamp = kept[0].stat().st_mtime_ns
        onnx_exporter.export_onnx_file(model, tmp_path / "b.onnx")  # copied from it
    assert len(kept) == 1 and kept[0].suffix == ".onnx" and kept[0].stat().st_mtime_ns == stamp
    assert (tmp_path / "a.onnx").read_bytes() == (tmp_path / "b.onnx").read_bytes() == kept[0].read_bytes()
    # the artifact exported outside the block has the same graph
    assert (fp32_artifact / "model.onnx").read_bytes() == kept[0].read_bytes()
    other = X3DStudent()
    with onnx_exporter.shared_exports(shared):
        onnx_exporter.export_onnx_file(other.eval(), tmp_path / "c.onnx")  # other weights: a graph of its own
        onnx_exporter.export_onnx_file(load(student_ckpt), tmp_path / "d.onnx")  # other outputs: one of its own
    assert len(list(shared.iterdir())) == 3


def test_a_student_with_motion_blocks_exports_with_dynamic_time(tmp_path):
    """FrameMotion2d reshapes frames back into clips: the exported graph must not bake in the sample's length."""
    import onnxruntime as ort

    from edge_sync.exporters.onnx import sample_inputs
    from edge_sync.models.student import StudentConfig

    model = randomise_batchnorm(X3DStudent(StudentConfig(video_trunk_kwargs={"motion_stages": [1, 2],
                                                                             "temporal_kernel": 3})))
    save_checkpoint(model, tmp_path / "motion.pt")
    path = export(tmp_path / "motion.pt", "onnx", "fp32", tmp_path / "art")[0]
    sess = ort.InferenceSession(str(path / "model.onnx"), providers=["CPUExecutionProvider"])
    for frames in (7, 60):
        audio, video = sample_inputs(model, frames, batch=2, seed=frames)
        out = sess.run(None, {"audio": audio.numpy(), "video": video.numpy()})
        with torch.inference_mode():
            ref = model(audio, video)
        assert np.abs(out[1] - ref[1].numpy()).max() <= 1e-4
