"""One checkpoint format for every model kind: round trip, hash check, clear errors."""
from __future__ import annotations

import pytest
import torch

from edge_sync.errors import CheckpointError
from edge_sync.models import io
from edge_sync.models.legacy import LegacySyncNetFCN, SyncNetS
from edge_sync.models.student import X3DStudent
from edge_sync.models.teacher import SyncNetFCN, TeacherConfig
from tests.models.helpers import randomise_batchnorm


def _same_outputs(a, b, frames=6):
    audio, video = torch.randn(1, 1, 13, 4 * frames), torch.randn(1, 3, frames, 112, 112)
    with torch.no_grad():
        for x, y in zip(a(audio, video), b(audio, video)):
            torch.testing.assert_close(x, y)


@pytest.mark.parametrize("model", [
    X3DStudent(),
    SyncNetFCN(TeacherConfig(video_trunk_kwargs={"width": 0.25}, audio_trunk_kwargs={"width": 0.25}, pyramid=True)),
])
def test_round_trip(tmp_path, model):
    model = randomise_batchnorm(model)
    digest = io.save_checkpoint(model, tmp_path / "m.pt", meta={"note": "test"})
    loaded = io.load(tmp_path / "m.pt")
    assert type(loaded) is type(model) and loaded.checkpoint_sha256 == digest
    assert loaded.checkpoint_meta == {"note": "test"}
    _same_outputs(model, loaded)


def test_half_storage_is_smaller_and_close(tmp_path):
    model = randomise_batchnorm(X3DStudent())
    io.save_checkpoint(model, tmp_path / "full.pt")
    io.save_checkpoint(model, tmp_path / "half.pt", half=True)
    assert (tmp_path / "half.pt").stat().st_size < 0.7 * (tmp_path / "full.pt").stat().st_size
    loaded = io.load(tmp_path / "half.pt")
    assert all(p.dtype == torch.float32 for p in loaded.parameters())


def test_legacy_round_trip_and_public_format(tmp_path):
    original = randomise_batchnorm(SyncNetS())
    torch.save(original.state_dict(), tmp_path / "syncnet_v2.model")
    from_public = io.load(tmp_path / "syncnet_v2.model")  # public format is recognised directly
    assert isinstance(from_public, LegacySyncNetFCN)
    io.save_checkpoint(from_public, tmp_path / "legacy.pt")
    again = io.load(tmp_path / "legacy.pt")
    mfcc, frames = torch.randn(1, 1, 13, 24), torch.rand(1, 3, 6, 224, 224) * 255
    with torch.no_grad():
        torch.testing.assert_close(again.embed_video(frames), from_public.embed_video(frames))
        torch.testing.assert_close(again.embed_audio(mfcc), from_public.embed_audio(mfcc))


def test_tampered_weights_are_caught(tmp_path):
    io.save_checkpoint(X3DStudent(), tmp_path / "m.pt")
    payload = torch.load(tmp_path / "m.pt", weights_only=True)
    key = next(k for k in payload["state_dict"] if k.endswith("weight"))
    payload["state_dict"][key] += 1
    torch.save(payload, tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match="corrupted"):
        io.load(tmp_path / "m.pt")


def test_clear_errors(tmp_path, monkeypatch):
    with pytest.raises(CheckpointError, match="not found"):
        io.load(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"\x00" * 10)
    with pytest.raises(CheckpointError, match="not a readable"):
        io.load(tmp_path / "junk.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not an edge-sync checkpoint"):
        io.load(tmp_path / "other.pt")
    import edge_sync._paths as paths

    monkeypatch.setattr(paths, "WEIGHTS_DIR", tmp_path / "empty")
    with pytest.raises(CheckpointError, match="no bundled 'teacher' weights"):
        io.load("teacher")
    with pytest.raises(CheckpointError, match="legacy weights are not bundled"):
        io.load("legacy")


def test_save_is_atomic(tmp_path):
    """A save that fails midway leaves neither a partial checkpoint nor a temp file behind."""
    model = X3DStudent()
    io.save_checkpoint(model, tmp_path / "ok.pt")
    with pytest.raises(Exception):
        io.save_checkpoint(model, tmp_path / "broken.pt", meta={"unpicklable": lambda: None})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok.pt"]


def test_checkpoint_does_not_depend_on_trunk_weight_files(tmp_path):
    """A teacher built from local pretrained trunk files reloads after those files are gone."""
    pytest.importorskip("transformers", reason="pip install 'edge-sync[trunks]'")
    from edge_sync.models.trunks.vggish import VGGishTrunk

    trunk_file = tmp_path / "vggish_trunk_weights.pt"
    torch.save(VGGishTrunk(width=0.125).state_dict(), trunk_file)
    tiny_hf = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64,
               "conv_dim": [16] * 7, "num_conv_pos_embeddings": 8, "num_conv_pos_embedding_groups": 2}
    hf_dir = tmp_path / "hf"
    from edge_sync.models.trunks.hf_audio import HFAudioTrunk  # noqa: F401  (registers wav2vec2)
    from edge_sync.models.trunks import build_audio_trunk
    build_audio_trunk("wav2vec2", config=tiny_hf).model.save_pretrained(hf_dir)
    for audio_trunk, kwargs in (("vggish", {"width": 0.125, "weights": str(trunk_file)}),
                                ("wav2vec2", {"pretrained": str(hf_dir)})):
        model = SyncNetFCN(TeacherConfig(audio_trunk=audio_trunk, audio_trunk_kwargs=kwargs,
                                         video_trunk_kwargs={"width": 0.25})).eval()
        io.save_checkpoint(model, tmp_path / f"{audio_trunk}.pt")
    trunk_file.unlink()
    import shutil
    shutil.rmtree(hf_dir)
    for audio_trunk in ("vggish", "wav2vec2"):
        loaded = io.load(tmp_path / f"{audio_trunk}.pt")
        assert loaded.audio_encoder.audio_input in ("logmel", "waveform")


def test_bundled_names_resolve_to_their_files(monkeypatch, tmp_path):
    """'teacher-real' (the real-footage teacher) is a bundled name besides the model kinds; a missing bundled file is
    one clear error, not a file-not-found deep in torch."""
    import edge_sync._paths as paths

    assert io.bundled_path("teacher-real").name == "teacher_real.pt"
    assert io.bundled_path("student").name == "student.pt"
    monkeypatch.setattr(paths, "WEIGHTS_DIR", tmp_path)
    with pytest.raises(CheckpointError, match="no bundled 'teacher-real' weights"):
        io.load("teacher-real")
    torch.manual_seed(0)
    io.save_checkpoint(X3DStudent().eval(), tmp_path / "teacher_real.pt")
    assert isinstance(io.load("teacher-real"), X3DStudent)
