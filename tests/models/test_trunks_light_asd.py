"""Light-ASD trunks: the public checkpoint's key names load, time is kept, the input conversion is Light-ASD's,
and a sync model built on them exports to ONNX with the same outputs."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from edge_sync.errors import CheckpointError
from edge_sync.models.teacher import SyncNetFCN, TeacherConfig
from edge_sync.models.trunks import build_audio_trunk, build_video_trunk
from edge_sync.models.trunks.light_asd import LightASDVideoTrunk
from tests.models.helpers import randomise_batchnorm

# Light-ASD's paper counts 1.0 M parameters: these two encoders plus its GRU and two classifiers
VISUAL_PARAMS, AUDIO_PARAMS = 545_024, 277_952


def _public_checkpoint(path: Path, video: torch.nn.Module, audio: torch.nn.Module) -> None:
    """A file laid out as Light-ASD's ``*.model`` files are: one state_dict of the whole detector."""
    state = {f"model.visualEncoder.{k}": v for k, v in video.encoder.state_dict().items()}
    state |= {f"model.audioEncoder.{k}": v for k, v in audio.encoder.state_dict().items()}
    state["model.GRU.gru.weight_ih_l0"] = torch.zeros(384, 128)  # parts the trunks do not have
    state["lossAV.FC.weight"] = torch.zeros(2, 128)
    torch.save(state, path)


@pytest.fixture(scope="module")
def trunks():
    torch.manual_seed(0)
    video, audio = build_video_trunk("light_asd_visual"), build_audio_trunk("light_asd_mfcc")
    for m in (video, audio):
        randomise_batchnorm(m)
    return video.eval(), audio.eval()


def test_sizes_and_public_key_names(trunks):
    video, audio = trunks
    assert sum(p.numel() for p in video.parameters()) == VISUAL_PARAMS
    assert sum(p.numel() for p in audio.parameters()) == AUDIO_PARAMS
    keys = set(video.encoder.state_dict())
    assert {"block1.s_3.weight", "block1.bn_t_5.running_var", "block3.last.weight"} <= keys
    assert {"block2.m_5.weight", "block3.bn_last.bias"} <= set(audio.encoder.state_dict())


@pytest.mark.parametrize("frames", [1, 5, 12])
def test_time_is_kept(trunks, frames):
    video, audio = trunks
    with torch.no_grad():
        v = video(torch.rand(2, 3, frames, 112, 112) * 2 - 1)
        a = audio(torch.randn(2, 1, 13, 4 * frames))
    assert v.shape == (2, 128, frames) and a.shape == (2, 128, frames)


def test_video_is_local_in_time(trunks):
    """Three blocks of temporal kernel 5: frame t sees t-6..t+6 and nothing else."""
    video, _ = trunks
    x = torch.rand(1, 3, 20, 32, 32) * 2 - 1
    y = x.clone()
    y[:, :, 19] = -x[:, :, 19]
    with torch.no_grad():
        ox, oy = video(x), video(y)
    assert torch.allclose(ox[..., :13], oy[..., :13], atol=1e-5)
    assert not torch.allclose(ox[..., 13], oy[..., 13], atol=1e-4)


def test_video_sees_grey_as_light_asd_does(trunks):
    """Colour enters only through BT.601 luma: two crops with the same grey image give the same features."""
    video, _ = trunks
    grey = torch.rand(1, 1, 3, 32, 32)
    luma = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1, 1)
    tint = torch.tensor([0.2, -0.1, 0.0]).view(1, 3, 1, 1, 1)
    tint = tint - (tint * luma).sum() * torch.ones_like(tint)  # remove the tint's own luma
    plain, tinted = grey.expand(1, 3, 3, 32, 32) * 2 - 1, (grey.expand(1, 3, 3, 32, 32) + tint) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(video(plain), video(tinted), atol=1e-4)
        assert not torch.allclose(video(plain), video(plain * 0.5), atol=1e-3)


def test_public_checkpoint_loads_and_bad_files_are_refused(trunks, tmp_path):
    video, audio = trunks
    path = tmp_path / "finetuning_TalkSet.model"
    _public_checkpoint(path, video, audio)
    v2 = build_video_trunk("light_asd_visual", weights=str(path)).eval()
    a2 = build_audio_trunk("light_asd_mfcc", weights=str(path)).eval()
    x, m = torch.rand(1, 3, 4, 64, 64) * 2 - 1, torch.randn(1, 1, 13, 16)
    with torch.no_grad():
        assert torch.equal(v2(x), video(x)) and torch.equal(a2(m), audio(m))
    other = tmp_path / "other.model"
    torch.save({"model.visualEncoder.block1.s_3.weight": torch.zeros(1)}, other)
    with pytest.raises(CheckpointError, match="visualEncoder"):
        LightASDVideoTrunk(weights=str(other))


def test_checkpoint_of_a_model_on_these_trunks_rebuilds_without_the_file(trunks, tmp_path):
    video, audio = trunks
    path = tmp_path / "light_asd.model"
    _public_checkpoint(path, video, audio)
    cfg = TeacherConfig(video_trunk="light_asd_visual", audio_trunk="light_asd_mfcc", embed_dim=32,
                        video_trunk_kwargs={"weights": str(path)}, audio_trunk_kwargs={"weights": str(path)})
    model = SyncNetFCN(cfg)
    d = model.config_dict()
    assert d["video_trunk_kwargs"] == {} and d["audio_trunk_kwargs"] == {}  # the checkpoint carries the weights


def test_sync_model_on_light_asd_exports_to_onnx(tmp_path):
    pytest.importorskip("onnxscript")
    pytest.importorskip("onnxruntime")
    from edge_sync.exporters.onnx import export_onnx_file, onnx_parity

    torch.manual_seed(1)
    model = SyncNetFCN(TeacherConfig(video_trunk="light_asd_visual", audio_trunk="light_asd_mfcc",
                                     embed_dim=32, head_hidden=16)).eval()
    randomise_batchnorm(model)
    path = tmp_path / "model.onnx"
    export_onnx_file(model, path, frames=9)
    errors = onnx_parity(model, path, frames=(5, 13))
    assert max(errors["max_abs_err"].values()) < 1e-4, errors


@pytest.mark.skipif(not os.environ.get("EDGE_SYNC_LIGHT_ASD"),
                    reason="set EDGE_SYNC_LIGHT_ASD to a Light-ASD checkpoint (weight/finetuning_TalkSet.model)")
def test_real_light_asd_checkpoint_loads():
    path = os.environ["EDGE_SYNC_LIGHT_ASD"]
    video = build_video_trunk("light_asd_visual", weights=path).eval()
    audio = build_audio_trunk("light_asd_mfcc", weights=path).eval()
    with torch.no_grad():
        assert torch.isfinite(video(torch.zeros(1, 3, 3, 112, 112))).all()
        assert torch.isfinite(audio(torch.zeros(1, 1, 13, 12))).all()
