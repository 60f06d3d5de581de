"""SlowFast video trunk: keeps T exactly, per-frame fast features, PyTorchVideo's key layout and numerics.

Most checks use the light variant (depth 18, width 0.25: 0.7M parameters) on small crops, since a depth-50
forward costs seconds on a 2-core CPU; the layout and parameter count are checked at depth 50 too.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from edge_sync.errors import CheckpointError
from edge_sync.models.trunks import VIDEO_TRUNKS, build_video_trunk
from edge_sync.models.trunks.slowfast import SlowFastTrunk
from tests.models.helpers import randomise_batchnorm

LIGHT = {"model_depth": 18, "width": 0.25}
ALPHA = 4
# Temporal receptive field of the light variant around the centre frame c = s*alpha of slow step s (output
# frame t uses step t // alpha): slow res4+res5 (kernel 3) reach +-2 steps = +-8 frames, the lateral conv
# into res4 +-3 more, the fast pathway up to res3 (stem 5, two kernel-3 convs) +-4 more: +-15.
LIGHT_SLOW_FIELD = 15


def _params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.fixture(scope="module")
def light() -> SlowFastTrunk:
    torch.manual_seed(0)
    return randomise_batchnorm(build_video_trunk("slowfast", **LIGHT), seed=3)


@pytest.fixture(scope="module")
def full() -> SlowFastTrunk:
    torch.manual_seed(0)
    return build_video_trunk("slowfast")


def _run(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return m(x)


# --- shapes and time ----------------------------------------------------------------------------
def test_registered_with_reference_sizes(full, light):
    assert "slowfast" in VIDEO_TRUNKS
    assert full.out_channels == 2048 + 256 and light.out_channels == 512 + 64
    # slowfast_r50's 34,566,488 minus its 2304 x 400 + 400 classifier
    assert _params(full) == 34_566_488 - 922_000 == 33_644_488
    assert _params(build_video_trunk("slowfast", model_depth=18)) == 10_977_224
    assert _params(light) == 693_194


@pytest.mark.parametrize("frames", [1, 2, 5, 7, 8, 13, 16])
def test_keeps_time_exactly(light, frames):
    out = _run(light, torch.randn(2, 3, frames, 64, 64))
    assert out.shape == (2, 576, frames) and torch.isfinite(out).all()


def test_full_model_at_mouth_crop_size(full):
    """At 112x112 the last stage is 4x4 (stem /4, res3..res5 /2); slow runs at ceil(T/alpha) steps."""
    full.eval()
    x = torch.randn(1, 3, 6, 112, 112)
    with torch.no_grad():
        slow, fast = full.pathways(x)
        out = full(x)
    assert slow.shape == (1, 2048, 2, 4, 4) and fast.shape == (1, 256, 6, 4, 4)
    assert out.shape == (1, 2304, 6)
    # frame t carries slow step t // alpha and its own fast features
    assert torch.equal(out[:, :2048], slow.mean(dim=(3, 4))[:, :, [0, 0, 0, 0, 1, 1]])
    assert torch.equal(out[:, 2048:], fast.mean(dim=(3, 4)))


def test_keep_time_false_returns_native_rates():
    m = randomise_batchnorm(SlowFastTrunk(**LIGHT, keep_time=False), seed=3)
    slow, fast = _run(m, torch.randn(1, 3, 9, 64, 64))
    assert slow.shape == (1, 512, 3, 2, 2) and fast.shape == (1, 64, 9, 2, 2)


def test_shift_by_alpha_frames_shifts_the_output(light):
    """Equivariant to shifts by multiples of alpha (away from the clip edges' zero padding), not by 1."""
    x = torch.randn(1, 3, 48, 32, 32)
    ox = _run(light, x)
    oy = _run(light, x[:, :, ALPHA:])  # frame t of y is frame t + alpha of x
    inner = slice(LIGHT_SLOW_FIELD + ALPHA - 1, 44 - LIGHT_SLOW_FIELD)  # fields inside both clips
    assert inner.stop - inner.start >= 8
    assert torch.allclose(oy[..., inner], ox[..., inner.start + ALPHA:inner.stop + ALPHA], atol=1e-5)
    # a one-frame shift moves the slow sampling to other frames: the slow features change
    o1 = _run(light, x[:, :, 1:])
    assert not torch.allclose(o1[:, :512, inner], ox[:, :512, inner.start + 1:inner.stop + 1], atol=1e-3)


def test_output_is_local_in_time(light):
    """A change at the last frame (47) cannot reach outputs whose field ends before it."""
    x = torch.randn(1, 3, 48, 32, 32)
    y = x.clone()
    y[:, :, 47] += 3.0
    ox, oy = _run(light, x), _run(light, y)
    last_unaffected = 47 - LIGHT_SLOW_FIELD - 1 - ALPHA  # 27: its slow step's centre 24 reaches frame 39 < 47
    assert torch.allclose(ox[..., :last_unaffected + 1], oy[..., :last_unaffected + 1], atol=1e-6)
    assert not torch.allclose(ox[..., 47], oy[..., 47], atol=1e-3)


def test_fast_pathway_carries_each_frame(light):
    """Frame 5 is not a slow frame (5 % alpha != 0): changing it changes output frame 5's fast features, and
    frames sharing one slow step still get different features."""
    x = torch.randn(1, 3, 16, 32, 32)
    y = x.clone()
    y[:, :, 5] = torch.randn(3, 32, 32)
    ox, oy = _run(light, x), _run(light, y)
    assert not torch.allclose(ox[:, 512:, 5], oy[:, 512:, 5], atol=1e-3)
    assert torch.allclose(ox[:, 512:, 12:], oy[:, 512:, 12:], atol=1e-6)  # fast field: stem 5, 4 x kernel 3
    assert torch.equal(ox[:, :512, 4], ox[:, :512, 7])  # one slow step for frames 4..7
    assert not torch.allclose(ox[:, 512:, 4], ox[:, 512:, 7], atol=1e-3)


# --- export -------------------------------------------------------------------------------------
def test_onnx_export_matches_pytorch_at_other_t(light, tmp_path):
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    path = tmp_path / "slowfast.onnx"
    dims = {"video": {0: torch.export.Dim("B", min=1, max=64), 2: torch.export.Dim("T", min=1, max=10_000)}}
    torch.onnx.export(light.eval(), (torch.randn(2, 3, 9, 32, 32),), str(path), input_names=["video"],
                      output_names=["features"], dynamic_shapes=dims, dynamo=True, external_data=False,
                      verbose=False)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for frames in (1, 6, 13):  # not the traced 9, and not multiples of alpha
        x = torch.randn(1 + frames % 2, 3, frames, 32, 32)
        (got,) = session.run(None, {"video": x.numpy()})
        assert got.shape == (x.shape[0], 576, frames)
        assert float(abs(got - _run(light, x).numpy()).max()) < 1e-4


# --- weights ------------------------------------------------------------------------------------
EXPECTED_KEYS = {  # PyTorchVideo slowfast_r50().state_dict(), by hand (depth 50, alpha 4, beta 1/8)
    "blocks.0.multipathway_blocks.0.conv.weight": (64, 3, 1, 7, 7),
    "blocks.0.multipathway_blocks.1.conv.weight": (8, 3, 5, 7, 7),
    "blocks.0.multipathway_blocks.1.norm.num_batches_tracked": (),
    "blocks.0.multipathway_fusion.conv_fast_to_slow.weight": (16, 8, 7, 1, 1),
    "blocks.0.multipathway_fusion.norm.running_var": (16,),
    "blocks.1.multipathway_blocks.0.res_blocks.0.branch1_conv.weight": (256, 80, 1, 1, 1),
    "blocks.1.multipathway_blocks.0.res_blocks.0.branch2.conv_a.weight": (64, 80, 1, 1, 1),
    "blocks.1.multipathway_blocks.1.res_blocks.0.branch2.conv_a.weight": (8, 8, 3, 1, 1),
    "blocks.1.multipathway_blocks.1.res_blocks.2.branch2.norm_c.bias": (32,),
    "blocks.1.multipathway_fusion.conv_fast_to_slow.weight": (64, 32, 7, 1, 1),
    "blocks.2.multipathway_blocks.0.res_blocks.0.branch2.conv_b.weight": (128, 128, 1, 3, 3),
    "blocks.3.multipathway_blocks.0.res_blocks.0.branch2.conv_a.weight": (256, 640, 3, 1, 1),
    "blocks.3.multipathway_blocks.0.res_blocks.5.branch2.conv_c.weight": (1024, 256, 1, 1, 1),
    "blocks.3.multipathway_fusion.conv_fast_to_slow.weight": (256, 128, 7, 1, 1),
    "blocks.4.multipathway_blocks.0.res_blocks.0.branch1_norm.weight": (2048,),
    "blocks.4.multipathway_blocks.0.res_blocks.2.branch2.conv_a.weight": (512, 2048, 3, 1, 1),
    "blocks.4.multipathway_blocks.1.res_blocks.2.branch2.conv_c.weight": (256, 64, 1, 1, 1),
}


def test_state_dict_layout_is_pytorchvideos(full, light):
    shapes = {k: tuple(v.shape) for k, v in full.state_dict().items()}
    for key, shape in EXPECTED_KEYS.items():
        assert shapes.get(key) == shape, key
    # slowfast_r50 has 662 entries, 2 of them its classifier blocks.6.proj.{weight,bias}
    assert len(shapes) == 660 and len(light.state_dict()) == 228
    assert not any(k.startswith(("blocks.4.multipathway_fusion", "blocks.5", "blocks.6", "norm_")) for k in shapes)
    assert not any(".branch1" in k for k in shapes if ".res_blocks.1." in k)  # identity shortcuts


def test_weights_round_trip_and_errors(light, tmp_path):
    path = tmp_path / "slowfast.pt"
    state = {f"module.{k}": v for k, v in light.state_dict().items()}
    state["module.blocks.6.proj.weight"], state["module.blocks.6.proj.bias"] = torch.zeros(400, 576), torch.zeros(400)
    torch.save({"state_dict": state}, path)
    loaded = build_video_trunk("slowfast", **LIGHT, weights=str(path)).eval()
    x = torch.randn(2, 3, 5, 32, 32)
    assert torch.equal(_run(loaded, x), _run(light, x))
    torch.save({"model_state": light.state_dict(), "epoch": 196}, path)  # the hub's .pyth layout
    assert torch.equal(_run(build_video_trunk("slowfast", **LIGHT, weights=str(path)).eval(), x), _run(light, x))

    torch.save(light.state_dict(), path)
    with pytest.raises(CheckpointError, match="shape mismatches: blocks.0"):
        SlowFastTrunk(model_depth=18, width=0.5, weights=path)  # same keys, wider
    with pytest.raises(CheckpointError, match="missing keys: blocks.1.multipathway_blocks.0.res_blocks.1"):
        SlowFastTrunk(model_depth=50, width=0.25, weights=path)
    with pytest.raises(CheckpointError, match="shape mismatches.*conv_fast_to_slow"):
        SlowFastTrunk(**LIGHT, fusion_kernel=5, weights=path)
    with pytest.raises(CheckpointError, match="local file"):
        SlowFastTrunk(weights="https://dl.fbaipublicfiles.com/pytorchvideo/model_zoo/kinetics/SLOWFAST_8x8_R50.pyth")


def test_options_are_validated(light):
    with pytest.raises(ValueError, match="input_norm"):
        SlowFastTrunk(**LIGHT, input_norm="imagenet")
    with pytest.raises(ValueError, match="model_depth"):
        SlowFastTrunk(model_depth=34)
    with pytest.raises(ValueError, match="odd"):
        SlowFastTrunk(**LIGHT, fusion_kernel=4)
    with pytest.raises(ValueError, match="multiple of beta_inv"):
        SlowFastTrunk(model_depth=18, width=0.1)
    with pytest.raises(ValueError, match="expects video"):
        light(torch.randn(1, 1, 4, 32, 32))


def test_kinetics_input_norm(light):
    m = SlowFastTrunk(**LIGHT, input_norm="kinetics")
    m.load_state_dict(light.state_dict())
    m.eval()
    x = torch.rand(1, 3, 4, 32, 32) * 2 - 1
    expected = _run(light, ((x + 1) / 2 - 0.45) / 0.225)
    assert torch.allclose(_run(m, x), expected, atol=1e-5)
    assert "norm_mean" not in m.state_dict()


def test_alpha_and_beta_options():
    m = randomise_batchnorm(SlowFastTrunk(model_depth=18, width=0.25, alpha=2, beta_inv=4), seed=1)
    assert m.out_channels == 512 + 128
    x = torch.randn(1, 3, 5, 32, 32)
    out = _run(m, x)
    assert out.shape == (1, 640, 5)
    assert torch.equal(out[:, :512, 2], out[:, :512, 3]) and not torch.equal(out[:, :512, 1], out[:, :512, 2])


# --- reference ----------------------------------------------------------------------------------
def _pytorchvideo():
    try:
        from pytorchvideo.models.slowfast import create_slowfast
    except Exception as exc:  # not installed, or its torchvision import fails on this torch build
        pytest.skip(f"pytorchvideo is not importable here ({type(exc).__name__}: {exc}); the layout is checked "
                    f"against a hand-written key list instead")
    return create_slowfast


@pytest.mark.parametrize("depth,frames", [(18, 13), (18, 1), (50, 8)])
def test_matches_pytorchvideo(depth, frames, tmp_path):
    """Same state_dict into create_slowfast and ours: equal final pathway features at native rates."""
    create_slowfast = _pytorchvideo()
    torch.manual_seed(0)
    ref = randomise_batchnorm(create_slowfast(model_depth=depth, slowfast_fusion_conv_kernel_size=(7, 1, 1)), seed=5)
    path = tmp_path / "slowfast_ref.pt"
    torch.save(ref.state_dict(), path)  # with its blocks.6.proj classifier
    native = SlowFastTrunk(model_depth=depth, keep_time=False, weights=path).eval()
    trunk = SlowFastTrunk(model_depth=depth, weights=path).eval()
    x = torch.randn(1, 3, frames, 64, 64)
    with torch.no_grad():
        feats = [x[:, :, ::ALPHA], x]
        for block in ref.blocks[:5]:  # blocks 5 and 6: clip pooling and classifier
            feats = block(feats)
        slow, fast = native(x)
        out = trunk(x)
    assert slow.shape == feats[0].shape and fast.shape == feats[1].shape
    assert (slow - feats[0]).abs().max() < 1e-5 and (fast - feats[1]).abs().max() < 1e-5
    pooled = feats[0].mean(dim=(3, 4)).repeat_interleave(ALPHA, dim=2)[:, :, :frames]
    assert torch.allclose(out, torch.cat([pooled, feats[1].mean(dim=(3, 4))], dim=1), atol=1e-5)
