"""The embeddings wrapper every exporter converts and the PyTorch scorer reads: which models qualify, and that the
wrapped model's outputs are the model's own."""
from __future__ import annotations

import pytest
import torch

from edge_sync.models.embeddings import separable, with_embeddings
from edge_sync.models.student import StudentConfig, X3DStudent
from edge_sync.models.teacher import SyncNetFCN, TeacherConfig
from edge_sync.spec import EMBEDDING_NAMES, OUTPUT_NAMES
from tests.models.helpers import randomise_batchnorm


def _inputs(frames: int, batch: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 1, 13, 4 * frames, generator=g), torch.randn(batch, 3, frames, 112, 112, generator=g)


def test_models_that_mix_the_streams_or_see_the_whole_window_are_not_separable():
    assert separable(X3DStudent()) and separable(SyncNetFCN())
    assert not separable(X3DStudent(StudentConfig(attention=True)))
    assert not separable(SyncNetFCN(TeacherConfig(transformer_layers=1)))
    assert not separable(torch.nn.Conv1d(1, 1, 1))  # no embed(): nothing to read the null from


def test_the_wrapped_model_gives_the_models_outputs_and_its_unit_embeddings():
    model = randomise_batchnorm(X3DStudent(), seed=3)
    wrapped = with_embeddings(model)
    assert wrapped.contract.embeddings and not model.contract.embeddings
    assert [t.name for t in wrapped.contract.outputs] == [*OUTPUT_NAMES, *EMBEDDING_NAMES]
    assert wrapped.config_dict()["outputs"] == [*OUTPUT_NAMES, *EMBEDDING_NAMES]  # its own ONNX graph cache key
    audio, video = _inputs(frames=9)
    with torch.inference_mode():
        probs, corr, audio_emb, video_emb = wrapped(audio, video)
        ref_probs, ref_corr = model(audio, video)
        ref_audio, ref_video = model.embed(audio, video)
    torch.testing.assert_close(probs, ref_probs)
    torch.testing.assert_close(corr, ref_corr)
    torch.testing.assert_close(audio_emb, ref_audio)
    torch.testing.assert_close(video_emb, ref_video)
    assert audio_emb.shape == video_emb.shape == (2, model.config.embed_dim, 9)
    assert torch.allclose(video_emb.norm(dim=1), torch.ones(2, 9), atol=1e-5)
    # the correlation is the embeddings' dot product at each offset; offset 0 is the middle row
    k = model.config.max_offset
    torch.testing.assert_close(corr[:, k], (audio_emb * video_emb).sum(dim=1), atol=1e-5, rtol=0)


def test_wrapping_is_idempotent_and_leaves_other_models_alone():
    wrapped = with_embeddings(X3DStudent())
    assert with_embeddings(wrapped) is wrapped
    mixed = X3DStudent(StudentConfig(attention=True))
    assert with_embeddings(mixed) is mixed and not mixed.contract.embeddings


@pytest.mark.parametrize("frames", [1, 30])
def test_any_length_the_model_takes(frames):
    wrapped = with_embeddings(SyncNetFCN().eval())
    with torch.inference_mode():
        outputs = wrapped(*_inputs(frames, batch=1, seed=frames))
    assert [tuple(o.shape[::2]) for o in outputs] == [(1, frames)] * 4
