"""Reshaping a trained student: centre taps kept, new motion blocks start as the identity, exact where it can be."""
from __future__ import annotations

import pytest
import torch

from edge_sync.models.student import StudentConfig, X3DStudent
from edge_sync.training.reshape import reshape_student
from tests.models.helpers import randomise_batchnorm


def _inputs(frames: int = 12):
    g = torch.Generator().manual_seed(0)
    return torch.randn(2, 1, 13, 4 * frames, generator=g), torch.randn(2, 3, frames, 112, 112, generator=g)


@pytest.fixture(scope="module")
def k3_student():
    return randomise_batchnorm(X3DStudent(StudentConfig(video_trunk_kwargs={"temporal_kernel": 3},
                                                        audio_trunk_kwargs={"temporal_kernel": 3})))


def test_a_longer_kernel_and_new_motion_blocks_compute_the_same_function(k3_student):
    grown = reshape_student(k3_student, temporal_kernel=5, motion_stages=(1, 2))
    assert grown.config.video_trunk_kwargs["temporal_kernel"] == 5 and sorted(grown.video_encoder.motion) == ["3", "5"]
    with torch.inference_mode():
        assert torch.allclose(grown(*_inputs())[1], k3_student(*_inputs())[1], atol=1e-5)


def test_a_shorter_kernel_keeps_the_centre_taps(k3_student):
    short = reshape_student(k3_student, temporal_kernel=1)
    for name, weight in short.state_dict().items():
        source = k3_student.state_dict()[name]
        if weight.shape != source.shape:
            assert weight.shape[-1] == 1 and torch.equal(weight[..., 0], source[..., 1])
        else:
            assert torch.equal(weight, source)
    assert short.config.audio_trunk_kwargs["temporal_kernel"] == 1


def test_reshaping_changes_only_what_it_is_asked(k3_student):
    same = reshape_student(k3_student)
    assert same.config == k3_student.config
    assert all(torch.equal(v, k3_student.state_dict()[k]) for k, v in same.state_dict().items())


def test_only_a_student_is_reshaped():
    from edge_sync.models.teacher import SyncNetFCN

    with pytest.raises(ValueError, match="only a student"):
        reshape_student(SyncNetFCN(), temporal_kernel=3)
