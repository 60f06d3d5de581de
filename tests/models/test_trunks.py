"""Trunk registry and the modernisation trunks: r3d_18, vggish, wav2vec2, hubert.

Every trunk must keep the video frame rate exactly ([..., T] in, [B, C, T] out), load local weights only,
and fail with a CheckpointError a user can act on when a file does not fit.
"""
from __future__ import annotations

import importlib.util
import json

import pytest
import torch
from torch import nn

from edge_sync.errors import CheckpointError
from edge_sync.models.trunks import (AUDIO_TRUNKS, VIDEO_TRUNKS, UnknownTrunkError, build_audio_trunk,
                                     build_video_trunk, register_audio_trunk, register_video_trunk)
from edge_sync.models.trunks.hf_audio import conv_geometry, conv_output_length
from edge_sync.models.trunks.r3d import R3D18Trunk
from edge_sync.spec import SAMPLES_PER_FRAME
from tests.models.helpers import randomise_batchnorm

TINY_HF = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
           "conv_dim": [16] * 7, "num_conv_pos_embeddings": 16, "num_conv_pos_embedding_groups": 2}

# torchvision's r3d_18 documents num_params = 33,371,472 for its Kinetics-400 weights (400-way fc included).
TORCHVISION_R3D18_PARAMS = 33_371_472
R3D18_FC_PARAMS = 512 * 400 + 400


def _params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


# --- registry -----------------------------------------------------------------------------------
def test_builtin_trunks_are_registered():
    assert {"r3d_18", "syncnet_conv3d", "x3d_2plus1d"} <= set(VIDEO_TRUNKS)
    assert {"vggish", "wav2vec2", "hubert", "syncnet_mfcc", "x3d_mfcc"} <= set(AUDIO_TRUNKS)


def test_unknown_trunk_lists_known_names():
    with pytest.raises(UnknownTrunkError) as err:
        build_video_trunk("i3d_nope")
    msg = str(err.value)
    assert "i3d_nope" in msg and "r3d_18" in msg and "syncnet_conv3d" in msg
    assert isinstance(err.value, KeyError)  # callers that catch KeyError keep working
    with pytest.raises(UnknownTrunkError, match="vggish"):
        build_audio_trunk("mel_nope")
    with pytest.raises(UnknownTrunkError, match="r3d_18"):
        build_audio_trunk("r3d_18")  # a video trunk is not an audio trunk


def test_register_build_and_reject_duplicates():
    @register_audio_trunk("_test_tiny_audio")
    class Tiny(nn.Module):
        audio_input = "mfcc"

        def __init__(self, channels: int = 4) -> None:
            super().__init__()
            self.out_channels = channels
            self.conv = nn.Conv2d(1, channels, (13, 4), stride=(1, 4))

        def forward(self, x):
            return self.conv(x)[:, :, 0]

    try:
        trunk = build_audio_trunk("_test_tiny_audio", channels=6)
        assert trunk(torch.zeros(2, 1, 13, 20)).shape == (2, 6, 5)
        with pytest.raises(ValueError, match="already registered"):
            register_audio_trunk("_test_tiny_audio")(lambda: Tiny())
    finally:
        del AUDIO_TRUNKS["_test_tiny_audio"]


def test_builders_must_honour_the_contract():
    @register_video_trunk("_test_no_channels")
    def no_channels():
        return nn.Identity()

    @register_audio_trunk("_test_bad_input")
    def bad_input():
        m = nn.Identity()
        m.out_channels, m.audio_input = 3, "spectrogram"
        return m

    try:
        with pytest.raises(TypeError, match="out_channels"):
            build_video_trunk("_test_no_channels")
        with pytest.raises(TypeError, match="audio_input"):
            build_audio_trunk("_test_bad_input")
    finally:
        del VIDEO_TRUNKS["_test_no_channels"], AUDIO_TRUNKS["_test_bad_input"]


# --- r3d_18 -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def r3d() -> R3D18Trunk:
    torch.manual_seed(0)
    return randomise_batchnorm(build_video_trunk("r3d_18"), seed=3)


EXPECTED_R3D_KEYS = {  # torchvision.models.video.r3d_18().state_dict(), written out by hand
    "stem.0.weight": (64, 3, 3, 7, 7),
    "stem.1.weight": (64,),
    "stem.1.running_var": (64,),
    "stem.1.num_batches_tracked": (),
    "layer1.0.conv1.0.weight": (64, 64, 3, 3, 3),
    "layer1.0.conv1.1.bias": (64,),
    "layer1.1.conv2.0.weight": (64, 64, 3, 3, 3),
    "layer2.0.conv1.0.weight": (128, 64, 3, 3, 3),
    "layer2.0.conv2.0.weight": (128, 128, 3, 3, 3),
    "layer2.0.downsample.0.weight": (128, 64, 1, 1, 1),
    "layer2.0.downsample.1.running_mean": (128,),
    "layer3.0.downsample.0.weight": (256, 128, 1, 1, 1),
    "layer4.0.conv1.0.weight": (512, 256, 3, 3, 3),
    "layer4.0.downsample.1.weight": (512,),
    "layer4.1.conv2.1.running_var": (512,),
}


def test_r3d_state_dict_layout_is_torchvisions(r3d):
    shapes = {k: tuple(v.shape) for k, v in r3d.state_dict().items()}
    for key, shape in EXPECTED_R3D_KEYS.items():
        assert shapes.get(key) == shape, key
    # stem 1 conv + 1 BN (5 tensors), 8 blocks x (2 convs + 2 BNs), 3 shortcuts x (conv + BN); no fc
    assert len(shapes) == 6 + 8 * 12 + 3 * 6
    assert not any(k.startswith(("fc.", "layer1.0.downsample", "norm_")) for k in shapes)
    assert _params(r3d) == TORCHVISION_R3D18_PARAMS - R3D18_FC_PARAMS == 33_166_272


def _torchvision_r3d18():
    try:
        from torchvision.models.video import r3d_18
    except Exception as exc:  # not installed, or a wheel built for another torch (RuntimeError on import)
        pytest.skip(f"torchvision is not importable here ({type(exc).__name__}: {exc}); the key layout is "
                    f"checked against a hand-written list instead")
    return r3d_18()


def test_r3d_matches_torchvision_when_available(r3d, tmp_path):
    tv = _torchvision_r3d18().eval()
    tv_shapes = {k: tuple(v.shape) for k, v in tv.state_dict().items() if not k.startswith("fc.")}
    assert tv_shapes == {k: tuple(v.shape) for k, v in r3d.state_dict().items()}
    assert _params(tv) == TORCHVISION_R3D18_PARAMS
    randomise_batchnorm(tv, seed=5)
    path = tmp_path / "tv_r3d18.pt"
    torch.save(tv.state_dict(), path)  # includes fc.*, as a Kinetics checkpoint does
    ours = R3D18Trunk(weights=str(path)).eval()
    # At T=1 torchvision's temporal stride 2 (kernel 3, padding 1) still reads only the centre tap,
    # so its features equal ours exactly there.
    x = torch.randn(1, 3, 1, 64, 64)
    with torch.no_grad():
        feats = tv.layer4(tv.layer3(tv.layer2(tv.layer1(tv.stem(x))))).mean(dim=(3, 4))
        assert torch.allclose(ours(x), feats, atol=1e-4)


# each r3d forward costs ~1 s on a 2-core CPU whatever the size, so few and small ones
@pytest.mark.parametrize("frames,size", [(1, 112), (5, 32), (12, 16)])
def test_r3d_keeps_time(r3d, frames, size):
    with torch.no_grad():
        out = r3d(torch.randn(2, 3, frames, size, size))
    assert out.shape == (2, 512, frames) and r3d.out_channels == 512
    assert torch.isfinite(out).all()


def test_r3d_is_local_in_time(r3d):
    """Receptive field 35 frames (+-17): a change at frame 35 reaches outputs 18..35 only."""
    x = torch.randn(1, 3, 36, 16, 16)
    y = x.clone()
    y[:, :, 35] += 3.0
    with torch.no_grad():
        ox, oy = r3d(x), r3d(y)
    assert torch.allclose(ox[..., :18], oy[..., :18], atol=1e-5)
    assert not torch.allclose(ox[..., 30], oy[..., 30], atol=1e-3)
    assert not torch.allclose(ox[..., 35], oy[..., 35], atol=1e-3)


def test_r3d_weights_round_trip(r3d, tmp_path):
    path = tmp_path / "r3d.pt"
    state = dict(r3d.state_dict())
    state["fc.weight"], state["fc.bias"] = torch.zeros(400, 512), torch.zeros(400)  # a classifier to ignore
    torch.save(state, path)
    loaded = build_video_trunk("r3d_18", weights=str(path)).eval()
    x = torch.randn(2, 3, 2, 16, 16)
    with torch.no_grad():
        assert torch.equal(loaded(x), r3d(x))

    small = tmp_path / "other.pt"
    torch.save({"layer1.0.conv1.0.weight": torch.zeros(64, 64, 3, 3, 3), "layer5.0.conv1.0.weight": torch.zeros(1)},
               small)
    with pytest.raises(CheckpointError, match="unexpected keys: layer5.0.conv1.0.weight") as err:
        R3D18Trunk(weights=small)
    assert "missing keys: layer1.0.conv1.1.bias" in str(err.value)


def test_r3d_kinetics_input_norm(r3d):
    with pytest.raises(ValueError, match="input_norm"):
        R3D18Trunk(input_norm="imagenet")
    assert "norm_mean" not in r3d.state_dict()


# --- vggish -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def vggish():
    torch.manual_seed(0)
    return build_audio_trunk("vggish", width=0.125).eval()


@pytest.mark.parametrize("frames", [1, 5, 12])
def test_vggish_shapes(vggish, frames):
    assert vggish.audio_input == "logmel" and vggish.out_channels == 64
    with torch.no_grad():
        out = vggish(torch.randn(2, 1, 64, 4 * frames))
    assert out.shape == (2, 64, frames)


def test_vggish_full_width_matches_vggish():
    full = build_audio_trunk("vggish")
    assert full.out_channels == 512
    assert _params(full) == 4_499_712  # VGGish's six conv layers (its fc head is not part of the trunk)
    assert [k for k in full.state_dict() if k.endswith("weight")] == [
        f"features.{i}.weight" for i in (0, 3, 6, 8, 11, 13)]


def test_vggish_rejects_bad_input(vggish):
    with pytest.raises(ValueError, match="64"):
        vggish(torch.randn(1, 1, 13, 8))
    with pytest.raises(ValueError, match="multiple of 4"):
        vggish(torch.randn(1, 1, 64, 10))


def test_vggish_is_local_in_time(vggish):
    x = torch.randn(1, 1, 64, 48)
    y = x.clone()
    y[..., 44:] += 5.0  # the last frame's 4 steps
    with torch.no_grad():
        ox, oy = vggish(x), vggish(y)
    assert torch.allclose(ox[..., :5], oy[..., :5], atol=1e-6)
    assert not torch.allclose(ox[..., 11], oy[..., 11])


def test_vggish_weights_round_trip_and_errors(vggish, tmp_path):
    path = tmp_path / "vggish.pt"
    state = {f"module.{k}": v for k, v in vggish.state_dict().items()}  # DataParallel-style prefix
    state["module.embeddings.0.weight"] = torch.zeros(3, 3)  # VGGish's fc head: ignored
    torch.save({"state_dict": state}, path)
    loaded = build_audio_trunk("vggish", width=0.125, weights=str(path)).eval()
    x = torch.randn(2, 1, 64, 20)
    with torch.no_grad():
        assert torch.equal(loaded(x), vggish(x))

    torch.save({**vggish.state_dict(), "classifier.weight": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match="unexpected keys: classifier.weight"):
        build_audio_trunk("vggish", width=0.125, weights=path)
    torch.save(vggish.state_dict(), path)
    with pytest.raises(CheckpointError, match="shape mismatches"):
        build_audio_trunk("vggish", width=0.25, weights=path)
    partial = dict(vggish.state_dict())
    del partial["features.13.bias"]
    torch.save(partial, path)
    with pytest.raises(CheckpointError, match="missing keys: features.13.bias"):
        build_audio_trunk("vggish", width=0.125, weights=path)
    with pytest.raises(CheckpointError, match="does not exist"):
        build_audio_trunk("vggish", weights=str(tmp_path / "nope.pt"))
    with pytest.raises(CheckpointError, match="local file"):
        build_audio_trunk("vggish", weights="https://example.com/vggish.pth")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="cannot read"):
        build_audio_trunk("vggish", weights=tmp_path / "junk.pt")


# --- wav2vec2 / hubert --------------------------------------------------------------------------
requires_transformers = pytest.mark.skipif(importlib.util.find_spec("transformers") is None,
                                           reason="transformers is not installed (the [trunks] extra)")


@pytest.fixture(scope="module", params=["wav2vec2", "hubert"])
def hf(request):
    torch.manual_seed(0)
    return build_audio_trunk(request.param, config=TINY_HF).eval()


def test_conv_geometry_of_the_default_feature_encoder():
    kernels, strides = (10, 3, 3, 3, 3, 2, 2), (5, 2, 2, 2, 2, 2, 2)
    assert conv_geometry(kernels, strides) == (320, 400)
    for t in (1, 3, 10):
        assert conv_output_length(640 * t + 80, kernels, strides) == 2 * t
        assert conv_output_length(640 * t, kernels, strides) == 2 * t - 1  # why the padding is needed


@requires_transformers
@pytest.mark.parametrize("frames", [1, 5, 12])
def test_hf_shapes(hf, frames):
    assert hf.audio_input == "waveform" and hf.out_channels == 32
    assert (hf.hop, hf.receptive_field, hf.pad_front, hf.pad_back, hf.steps_per_frame) == (320, 400, 40, 40, 2)
    with torch.no_grad():
        out = hf(torch.randn(2, 1, SAMPLES_PER_FRAME * frames))
    assert out.shape == (2, 32, frames) and torch.isfinite(out).all()


@requires_transformers
def test_hf_averages_pairs_of_hidden_frames(hf):
    x = torch.randn(1, 1, 640 * 3)
    with torch.no_grad():
        hidden = hf.model(torch.nn.functional.pad(x[:, 0], (40, 40))).last_hidden_state  # [1, 6, 32]
        assert hidden.shape == (1, 6, 32)
        expected = hidden.transpose(1, 2).reshape(1, 32, 3, 2).mean(-1)
        assert torch.allclose(hf(x), expected, atol=1e-6)


@requires_transformers
def test_hf_other_conv_strides_and_options():
    cfg = {**TINY_HF, "conv_dim": [8, 8, 8], "conv_kernel": [10, 3, 3], "conv_stride": [5, 4, 4]}
    trunk = build_audio_trunk("wav2vec2", config=cfg, layer=1).eval()  # stride 80, field 60: 8 per frame
    assert (trunk.hop, trunk.receptive_field, trunk.steps_per_frame) == (80, 60, 8)
    with torch.no_grad():
        assert trunk(torch.randn(2, 1, 640 * 4)).shape == (2, 32, 4)
    with pytest.raises(ValueError, match="does not divide"):
        build_audio_trunk("hubert", config={**cfg, "conv_stride": [3, 3, 3]})
    with pytest.raises(ValueError, match="layer"):
        build_audio_trunk("hubert", config=TINY_HF, layer=7)


@requires_transformers
def test_hf_trains_on_one_frame():
    """SpecAugment is off by default: a 2-frame sequence would be shorter than its mask length."""
    trunk = build_audio_trunk("wav2vec2", config={**TINY_HF, "mask_time_prob": 0.5}, freeze_feature_encoder=True)
    trunk.train()
    out = trunk(torch.randn(2, 1, 640))
    out.sum().backward()
    assert out.shape == (2, 32, 1)
    assert all(p.grad is None for p in trunk.model.feature_extractor.parameters())


@requires_transformers
def test_hf_needs_exactly_one_source():
    with pytest.raises(ValueError, match="exactly one"):
        build_audio_trunk("wav2vec2")
    with pytest.raises(ValueError, match="exactly one"):
        build_audio_trunk("wav2vec2", pretrained="x", config=TINY_HF)


@requires_transformers
@pytest.mark.parametrize("where", ["facebook/wav2vec2-base", "https://huggingface.co/facebook/hubert-base-ls960",
                                   "/nonexistent/model_dir"])
def test_hf_refuses_anything_but_a_local_dir(where):
    with pytest.raises(CheckpointError, match="Hub downloads are not allowed"):
        build_audio_trunk("hubert", pretrained=where)


@requires_transformers
def test_hf_refuses_a_file(tmp_path):
    f = tmp_path / "model.bin"
    f.write_bytes(b"")
    with pytest.raises(CheckpointError, match="not an existing local directory"):
        build_audio_trunk("wav2vec2", pretrained=f)


@requires_transformers
def test_hf_loads_from_a_local_folder(hf, tmp_path):
    folder = tmp_path / hf.family
    hf.model.save_pretrained(folder)
    loaded = build_audio_trunk(hf.family, pretrained=str(folder)).eval()
    assert not loaded.normalize
    x = torch.randn(2, 1, 640 * 5)
    with torch.no_grad():
        assert torch.allclose(loaded(x), hf(x), atol=1e-6)

    (folder / "preprocessor_config.json").write_text(json.dumps({"do_normalize": True}))
    normalising = build_audio_trunk(hf.family, pretrained=folder).eval()
    assert normalising.normalize
    with torch.no_grad():  # normalisation makes the output invariant to the input's gain and offset
        assert torch.allclose(normalising(x * 3 + 0.5), normalising(x), atol=1e-4)

    other = "hubert" if hf.family == "wav2vec2" else "wav2vec2"
    with pytest.raises(CheckpointError, match="use the matching trunk"):
        build_audio_trunk(other, pretrained=folder)
