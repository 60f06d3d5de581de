"""Teacher and student: tensor contract for any T, options as real modules, student's size and op set."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from edge_sync.models.io import parameter_count
from edge_sync.models.student import StudentConfig, X3DStudent
from edge_sync.models.teacher import SyncNetFCN, TeacherConfig
from edge_sync.models.trunks import VIDEO_TRUNKS, register_video_trunk

torch.manual_seed(0)


def _inputs(frames: int, batch: int = 2):
    return torch.randn(batch, 1, 13, 4 * frames) * 10, torch.randn(batch, 3, frames, 112, 112)


@pytest.fixture(scope="module")
def teacher() -> SyncNetFCN:
    return SyncNetFCN().eval()


@pytest.fixture(scope="module")
def student() -> X3DStudent:
    return X3DStudent().eval()


@pytest.mark.parametrize("frames", [1, 2, 7, 30])
@pytest.mark.parametrize("which", ["teacher", "student"])
def test_outputs_follow_the_contract(request, which, frames):
    model = request.getfixturevalue(which)
    with torch.no_grad():
        probs, corr = model(*_inputs(frames))
    assert probs.shape == corr.shape == (2, 31, frames)
    torch.testing.assert_close(probs.sum(1), torch.ones(2, frames))
    assert (probs >= 0).all() and corr.abs().max() <= 1 + 1e-5


@pytest.mark.parametrize("which", ["teacher", "student"])
def test_correlation_is_cosine_of_the_embeddings(request, which):
    model = request.getfixturevalue(which)
    audio, video = _inputs(9, batch=1)
    with torch.no_grad():
        out = model.forward_features(audio, video)
    a, v = out["audio_emb"][0], out["video_emb"][0]
    torch.testing.assert_close(a.norm(dim=0), torch.ones(9))
    for k in (-3, 0, 2):
        t = 4
        assert out["correlation"][0, 15 + k, t].item() == pytest.approx((v[:, t] * a[:, t + k]).sum().item(), abs=1e-5)
    assert out["correlation"][0, 15 + 10, 0].item() == 0.0  # audio frame 10 is outside a 9-frame clip


def test_window_features_are_the_windows_own_embeddings_and_scores():
    """forward(features=True, windows=...) adds the window's scores and the embeddings they are made of: the
    window seen alone (c video frames, c + 2K audio frames), not a slice of the clip's (the bundled student: an
    untrained one embeds noise frames alike)."""
    from edge_sync.models.io import load

    student = load("student").eval()
    audio, video = _inputs(40)
    window_audio, window_video = audio[..., 4 * 3:4 * 38], video[:, :, 18:23]  # c = 5, K = 15
    with torch.no_grad():
        out = student(audio, video, features=True, windows=(window_audio, window_video))
        a, v = student.embed(window_audio, window_video)
    d = student.config.embed_dim
    assert out["window_video_emb"].shape == (2, d, 5) and out["window_audio_emb"].shape == (2, d, 35)
    torch.testing.assert_close(out["window_video_emb"], v)
    torch.testing.assert_close(out["window_audio_emb"], a)
    torch.testing.assert_close(out["window_scores"], student.window_scores(window_audio, window_video))
    truth_k = 3  # candidate k of window frame j is window audio frame j + K + k
    by_hand = (v * a[:, :, 15 + truth_k:15 + truth_k + 5]).sum(dim=(1, 2))
    torch.testing.assert_close(out["window_scores"][:, 15 + truth_k], by_hand, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(out["window_video_emb"], out["video_emb"][:, :, 18:23], atol=1e-3)


def test_clips_in_a_batch_do_not_mix(student):
    audio, video = _inputs(6)
    with torch.no_grad():
        both, _ = student(audio, video)
        first, _ = student(audio[:1], video[:1])
    torch.testing.assert_close(both[:1], first, atol=1e-5, rtol=1e-4)


def test_student_is_at_most_a_tenth_of_the_teacher(teacher, student):
    assert parameter_count(student) * 10 <= parameter_count(teacher)


def test_student_uses_only_portable_ops(student):
    """No Conv3d (no INT8 CONV_3D in LiteRT...), no attention, and never a temporal stride."""
    allowed = (nn.Conv1d, nn.Conv2d, nn.BatchNorm1d, nn.BatchNorm2d, nn.Hardswish, nn.Hardsigmoid, nn.ReLU,
               nn.Sequential, nn.ModuleList, nn.ModuleDict, nn.Identity)
    for name, module in student.named_modules():
        if name == "" or type(module).__module__.startswith("edge_sync"):
            continue
        assert isinstance(module, allowed), f"{name}: {type(module).__name__} is not in the portable op set"
        if isinstance(module, nn.Conv1d):
            assert module.stride == (1,), f"{name} strides time"


def test_gradients_reach_both_encoders(student):
    model = X3DStudent().train()
    audio, video = _inputs(5)
    out = model.forward_features(audio, video)
    out["logits"].logsumexp(1).mean().backward()
    assert model.video_encoder.spatial[0][0].weight.grad.abs().sum() > 0
    assert model.audio_encoder.features[0][0].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("options", [
    {"attention": True},
    {"transformer_layers": 2},
    {"pyramid": True},
    {"attention": True, "transformer_layers": 1, "pyramid": True},
])
def test_modernisation_options_are_real_modules(options):
    base = SyncNetFCN(TeacherConfig(video_trunk_kwargs={"width": 0.25}, audio_trunk_kwargs={"width": 0.25}))
    model = SyncNetFCN(TeacherConfig(video_trunk_kwargs={"width": 0.25}, audio_trunk_kwargs={"width": 0.25},
                                     **options)).train()
    assert parameter_count(model) > parameter_count(base)
    audio, video = _inputs(11)
    out = model.forward_features(audio, video)
    assert out["logits"].shape == (2, 31, 11)
    out["logits"].logsumexp(1).mean().backward()
    option_params = [p for n, p in model.named_parameters()
                     if n.split(".")[0] in ("attention", "video_temporal", "audio_temporal", "video_pyramid",
                                            "audio_pyramid")]
    assert option_params and all(p.grad is not None for p in option_params)


def test_transformer_option_works_for_lengths_it_never_saw():
    model = SyncNetFCN(TeacherConfig(video_trunk_kwargs={"width": 0.25}, audio_trunk_kwargs={"width": 0.25},
                                     transformer_layers=1)).eval()
    with torch.no_grad():
        for frames in (3, 64):
            assert model(*_inputs(frames, batch=1))[0].shape == (1, 31, frames)


def test_a_new_trunk_is_one_registered_module():
    name = "test_tiny_video"
    if name not in VIDEO_TRUNKS:
        @register_video_trunk(name)
        class TinyVideo(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.conv = nn.Conv3d(3, 16, (3, 8, 8), stride=(1, 8, 8), padding=(1, 0, 0))
                self.out_channels = 16

            def forward(self, video):
                return self.conv(video).mean(dim=(3, 4))

    model = SyncNetFCN(TeacherConfig(video_trunk=name, audio_trunk_kwargs={"width": 0.25})).eval()
    with torch.no_grad():
        assert model(*_inputs(4))[0].shape == (2, 31, 4)


def test_unknown_trunk_is_a_clear_error():
    with pytest.raises((KeyError, ValueError), match="no_such_trunk"):
        SyncNetFCN(TeacherConfig(video_trunk="no_such_trunk"))


def test_student_width_and_depth_multipliers_scale_it():
    small = X3DStudent(StudentConfig(video_trunk_kwargs={"width": 0.5, "depth": 0.5}))
    big = X3DStudent(StudentConfig(video_trunk_kwargs={"width": 1.5, "depth": 2.0}))
    assert parameter_count(small) < parameter_count(X3DStudent()) < parameter_count(big)


def test_int8_friendly_student_has_relu_and_no_squeeze_excite(tmp_path):
    from edge_sync.models.io import load, save_checkpoint

    config = StudentConfig(video_trunk_kwargs={"act": "relu", "se": False}, audio_trunk_kwargs={"act": "relu"})
    model = X3DStudent(config).eval()
    kinds = {type(m).__name__ for m in model.modules()}
    assert "Hardswish" not in kinds and "SqueezeExcite2d" not in kinds and "ReLU" in kinds
    assert parameter_count(model) < parameter_count(X3DStudent())
    save_checkpoint(model, tmp_path / "s.pt")
    again = load(tmp_path / "s.pt")
    assert {type(m).__name__ for m in again.modules()} == kinds  # the options travel in the checkpoint
    audio, video = torch.randn(1, 1, 13, 40), torch.rand(1, 3, 10, 112, 112) * 2 - 1
    with torch.inference_mode():
        torch.testing.assert_close(again(audio, video)[0], model(audio, video)[0])
