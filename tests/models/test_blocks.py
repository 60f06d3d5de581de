"""FrameMotion2d: mixes neighbouring frames at every spatial position, starts as the identity, keeps frames apart
across clips of a batch."""
from __future__ import annotations

import pytest
import torch

from edge_sync.models.blocks import FrameMotion2d, frames_to_grid, grid_to_frames
from edge_sync.models.student import StudentConfig, X3DStudent
from edge_sync.models.trunks.x3d import X3DVideoTrunk
from tests.models.helpers import randomise_batchnorm


def test_a_new_motion_block_is_the_identity():
    grid = torch.randn(2, 8, 6, 25)
    assert torch.equal(FrameMotion2d(8).eval()(grid), grid)


def test_motion_mixes_only_neighbouring_frames_of_the_same_clip_at_the_same_place():
    block = randomise_batchnorm(FrameMotion2d(4, kernel=3))
    x = torch.zeros(2 * 7, 4, 3, 3)
    def run(frames):
        return grid_to_frames(block(frames_to_grid(frames, 2)), 3, 3)

    base = run(x)
    x[3, :, 1, 2] = 1.0  # clip 0, frame 3, one spatial position
    changed = (run(x) - base).abs().sum(dim=1)  # [B*T, H, W]
    frames, rows, cols = torch.nonzero(changed > 1e-6, as_tuple=True)
    assert set(frames.tolist()) == {2, 3, 4}  # its neighbours in clip 0; clip 1 (frames 7..13) untouched
    assert set(rows.tolist()) == {1} and set(cols.tolist()) == {2}


def test_grid_round_trip():
    x = torch.randn(3 * 4, 5, 2, 3)
    grid = frames_to_grid(x, 3)
    assert grid.shape == (3, 5, 4, 6) and torch.equal(grid[1, :, 2].reshape(5, 2, 3), x[1 * 4 + 2])
    assert torch.equal(grid_to_frames(grid, 2, 3), x)


def test_motion_stages_give_a_trunk_frames_that_see_their_neighbours_before_pooling():
    trunk = randomise_batchnorm(X3DVideoTrunk(motion_stages=(1, 2), temporal_blocks=0, act="relu", se=False))
    assert sorted(trunk.motion) == ["3", "5"]  # after the last block of stages 1 and 2
    plain = randomise_batchnorm(X3DVideoTrunk(temporal_blocks=0, act="relu", se=False))
    video = torch.randn(1, 3, 6, 112, 112)
    nudged = video.clone()
    nudged[:, :, 0] += 5.0
    moved = (trunk(nudged) - trunk(video)).abs().amax(dim=1)[0]
    assert moved[2] > 1e-5 and torch.all(moved[3:] == 0)  # two kernel-3 blocks reach 2 frames, no further
    assert torch.all(plain(nudged)[..., 1:] == plain(video)[..., 1:])  # per frame without them


def test_motion_stages_outside_the_trunk_are_refused():
    with pytest.raises(ValueError, match="motion_stages"):
        X3DVideoTrunk(motion_stages=(3,))


def test_a_student_with_motion_stages_keeps_the_contract_at_any_length():
    model = randomise_batchnorm(X3DStudent(StudentConfig(video_trunk_kwargs={"motion_stages": [1, 2],
                                                                             "temporal_kernel": 3})))
    for frames in (1, 9):
        probs, corr = model(torch.randn(2, 1, 13, 4 * frames), torch.randn(2, 3, frames, 112, 112))
        assert probs.shape == corr.shape == (2, 31, frames)
