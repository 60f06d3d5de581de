"""The manifest's contract against the model's real tensor shapes: a manifest that promises another audio kind,
crop size or number of offsets than its model has is refused at load, naming the field (here on onnxruntime;
tests/runtimes/test_openvino_backend.py and test_tflite_backend.py do the same on their backends)."""
from __future__ import annotations

import pytest

pytest.importorskip("onnxruntime", reason="pip install 'edge-sync[onnxruntime]'")

import edge_sync  # noqa: E402
from edge_sync.artifact import ArtifactError  # noqa: E402
from edge_sync.runtimes.contract_check import check_tensor  # noqa: E402
from edge_sync.spec import ModelContract, TensorSpec  # noqa: E402
from tests.artifact_helpers import edited_copy, set_contract  # noqa: E402

MISMATCHES = {
    "audio_input the model does not take": (set_contract("audio_input", "logmel"), "contract.audio_input = 'logmel'"),
    "waveform audio for an MFCC model": (set_contract("audio_input", "waveform"), "contract.audio_input"),
    "max_offset against the 31 outputs": (set_contract("max_offset", 10), "contract.max_offset = 10"),
    "crop size the model does not take": (
        lambda m: m["contract"]["video_preprocessing"].update(name="legacy_face224"),
        "contract.video_preprocessing.name"),
}


@pytest.mark.parametrize("case", MISMATCHES, ids=list(MISMATCHES))
def test_a_contract_the_model_does_not_have_is_refused(tmp_path, case):
    change, field = MISMATCHES[case]
    with pytest.raises(ArtifactError) as info:
        edge_sync.load(edited_copy(tmp_path / "a", change))
    message = str(info.value)
    assert field in message and "the model's" in message and "\n" not in message, message


def test_the_bundled_model_matches_its_contract():
    shapes = edge_sync.load()._session.io_shapes()
    assert shapes["sync_probs"] == (None, 31, None) and shapes["audio"] == (None, 1, 13, None)


def test_missing_tensors_and_dynamic_dims():
    spec = TensorSpec("sync_probs", "float32", ("B", "31", "T"))
    check_tensor(spec, {"sync_probs": (None, None, None)}, ModelContract(), "x")  # dynamic: nothing to compare
    check_tensor(spec, {"sync_probs": None}, ModelContract(), "x")  # dynamic rank: nothing to compare
    with pytest.raises(ArtifactError, match="has no tensor 'sync_probs' \\(it has probs\\)"):
        check_tensor(spec, {"probs": (1, 31, 5)}, ModelContract(), "x")
    with pytest.raises(ArtifactError, match=r"is \[1, 31\]"):
        check_tensor(spec, {"sync_probs": (1, 31)}, ModelContract(), "x")


def test_embedding_outputs_are_checked_only_where_the_manifest_declares_them(tmp_path):
    """contract.embeddings adds audio_emb and video_emb to the outputs checked at load; a manifest that declares
    them for a model without them is refused naming the field, and one that leaves them out loads without them."""
    from edge_sync.runtimes.contract_check import check_model_io

    class TwoOutputs:  # a model exported before the embedding outputs
        def io_shapes(self):
            return {"audio": (None, 1, 13, None), "video": (None, 3, None, 112, 112),
                    "sync_probs": (None, 31, None), "correlation": (None, 31, None)}

    check_model_io(ModelContract(), TwoOutputs(), "x")
    with pytest.raises(ArtifactError, match="has no tensor 'audio_emb'"):
        check_model_io(ModelContract(embeddings=True), TwoOutputs(), "x")
    with pytest.raises(ArtifactError, match="contract.embeddings = True"):
        check_tensor(TensorSpec("video_emb", "float32", ("B", "D", "T")), {"video_emb": (1, 64)},
                     ModelContract(embeddings=True), "x")
    plain = edge_sync.load(edited_copy(tmp_path / "a", lambda m: m["contract"].pop("embeddings")))
    assert not plain.embeddings and plain.output_names == ("sync_probs", "correlation")
    assert edge_sync.load().embeddings
