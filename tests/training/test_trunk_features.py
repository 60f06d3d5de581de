"""teach_synthetic: the synthetic clips of a real-face distillation get their own teacher's targets."""
from __future__ import annotations

import pytest
import torch

from edge_sync.training.train import TrainConfig, build_model
from edge_sync.training.trunk_features import teach_synthetic
from tests.training.tiny_configs import TINY_STUDENT


def _teacher(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(TrainConfig(model="student", model_config=TINY_STUDENT)).eval()


def _batch(mask: list[bool], frames: int = 12) -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    b = len(mask)
    return {"audio": torch.randn(b, 1, 13, 4 * frames), "video": torch.randn(b, 3, frames, 112, 112),
            "teacher_mask": torch.tensor(mask)}


def _folder_teacher_outputs(b: int, frames: int, offsets: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(2)
    return {"logits": torch.randn(b, frames, offsets), "correlation": torch.randn(b, frames, offsets),
            "video_emb": torch.randn(b, frames, 7)}


def test_untaught_rows_get_the_synthetic_teachers_outputs_and_taught_rows_keep_theirs():
    synthetic = _teacher()
    batch = _batch([True, False, False, True])
    with torch.no_grad():
        probe = synthetic.forward_features(batch["audio"][:1], batch["video"][:1])
    frames, offsets = probe["logits"].shape[1:]
    ours = _folder_teacher_outputs(4, frames, offsets)
    merged, taught = teach_synthetic(ours, batch, synthetic)
    with torch.no_grad():
        expected = synthetic.forward_features(batch["audio"][1:3], batch["video"][1:3])
    for key in ("logits", "correlation"):
        assert torch.allclose(merged[key][1:3], expected[key], atol=1e-5)
        assert torch.equal(merged[key][[0, 3]], ours[key][[0, 3]])
        assert not torch.equal(merged[key], ours[key])
    assert torch.equal(merged["video_emb"], ours["video_emb"])  # not read by distillation; left as it was
    assert bool(taught["teacher_mask"].all()) and not bool(batch["teacher_mask"].all())  # the caller's batch kept
    assert torch.equal(taught["relation_mask"], batch["teacher_mask"])  # embeddings: the folder teacher's rows only


def test_a_batch_the_folder_teacher_teaches_whole_is_left_alone():
    batch = _batch([True, True])
    ours = _folder_teacher_outputs(2, 12, 31)
    merged, taught = teach_synthetic(ours, batch, _teacher())
    assert merged is ours and taught is batch


def test_a_synthetic_teacher_of_another_offset_range_is_refused():
    batch = _batch([False, True])
    ours = _folder_teacher_outputs(2, 12, 7)  # a teacher of offsets -3..3
    with pytest.raises(ValueError, match="synthetic teacher's logits"):
        teach_synthetic(ours, batch, _teacher())
