"""Stacked trunks: outputs are the trunks' own, concatenated; each trunk loads its weights out of any checkpoint;
a model on them saves without the weight files and loads back the same."""
from __future__ import annotations

import pytest
import torch

from edge_sync.errors import CheckpointError
from edge_sync.models import io
from edge_sync.models.teacher import SyncNetFCN, TeacherConfig
from edge_sync.models.trunks import build_audio_trunk, build_video_trunk
from tests.models.helpers import randomise_batchnorm

SMALL_X3D = {"width": 0.5, "depth": 0.5}


def _donor(tmp_path):
    """An edge-sync checkpoint whose trunks the stacked ones take by prefix."""
    torch.manual_seed(1)
    donor = SyncNetFCN(TeacherConfig(video_trunk="x3d_2plus1d", video_trunk_kwargs=SMALL_X3D, audio_trunk="x3d_mfcc",
                                     audio_trunk_kwargs={"width": 0.5}, embed_dim=16, head_hidden=8,
                                     head_dilations=[1, 2]))
    randomise_batchnorm(donor)
    io.save_checkpoint(donor.eval(), tmp_path / "donor.pt")
    return donor


def _stacked_config(tmp_path) -> TeacherConfig:
    video = {"trunks": [{"name": "x3d_2plus1d", "kwargs": SMALL_X3D, "weights": str(tmp_path / "donor.pt"),
                         "select_prefix": "video_encoder."}, {"name": "light_asd_visual"}]}
    audio = {"trunks": [{"name": "x3d_mfcc", "kwargs": {"width": 0.5}, "weights": str(tmp_path / "donor.pt"),
                         "select_prefix": "audio_encoder."}, {"name": "light_asd_mfcc"}]}
    return TeacherConfig(video_trunk="stacked", video_trunk_kwargs=video, audio_trunk="stacked",
                         audio_trunk_kwargs=audio, embed_dim=16, head_hidden=8, head_dilations=[1, 2])


def test_stacked_trunks_concatenate_their_trunks_outputs_and_load_weights_by_prefix(tmp_path):
    donor = _donor(tmp_path)
    model = SyncNetFCN(_stacked_config(tmp_path)).eval()
    video, audio = model.video_encoder, model.audio_encoder
    assert video.out_channels == donor.video_encoder.out_channels + 128 and audio.audio_input == "mfcc"
    x, a = torch.randn(1, 3, 9, 112, 112), torch.randn(1, 1, 13, 36)
    with torch.no_grad():
        out_v, out_a = video(x), audio(a)
        c = donor.video_encoder.out_channels
        assert out_v.shape == (1, video.out_channels, 9) and out_a.shape[-1] == 9
        assert torch.allclose(out_v[:, :c], donor.video_encoder(x), atol=1e-5)  # the donor's weights, loaded
        assert torch.allclose(out_v[:, c:], video.trunks[1](x))
        assert torch.allclose(out_a[:, :donor.audio_encoder.out_channels], donor.audio_encoder(a), atol=1e-5)


def test_a_model_on_stacked_trunks_saves_without_the_weight_files(tmp_path):
    _donor(tmp_path)
    model = SyncNetFCN(_stacked_config(tmp_path)).eval()
    io.save_checkpoint(model, tmp_path / "stacked.pt")
    (tmp_path / "donor.pt").unlink()  # the checkpoint carries the weights: the donor file is not needed again
    loaded = io.load(tmp_path / "stacked.pt").eval()
    assert "weights" not in str(loaded.config_dict()["video_trunk_kwargs"])
    x, a = torch.randn(1, 3, 9, 112, 112), torch.randn(1, 1, 13, 36)
    with torch.no_grad():
        assert torch.allclose(loaded(a, x)[0], model(a, x)[0], atol=1e-6)


def test_bad_stacks_are_refused(tmp_path):
    with pytest.raises(ValueError, match="same input"):
        build_audio_trunk("stacked", trunks=[{"name": "x3d_mfcc"}, {"name": "vggish"}])
    with pytest.raises(ValueError, match="needs trunks"):
        build_video_trunk("stacked", trunks=[])
    with pytest.raises(ValueError, match="optional"):
        build_video_trunk("stacked", trunks=[{"name": "x3d_2plus1d", "weight": "typo.pt"}])
    _donor(tmp_path)
    with pytest.raises(CheckpointError, match="missing keys"):
        build_video_trunk("stacked", trunks=[{"name": "x3d_2plus1d", "kwargs": SMALL_X3D,
                                              "weights": str(tmp_path / "donor.pt"), "select_prefix": "audio_encoder."}])
