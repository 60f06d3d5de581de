"""Model configs small enough for a training step in a unit test (a second each on CPU); one place, so a change to
the model configs' keys is mended once."""
from __future__ import annotations

# a student of the bundled shape at a fraction of its width: what test_train and test_trunk_features train
TINY_STUDENT = {"video_trunk_kwargs": {"width": 0.5, "depth": 0.5}, "audio_trunk_kwargs": {"width": 0.5},
                "embed_dim": 32, "head_hidden": 16, "head_dilations": [1, 2]}
# smaller still, for the ablation runner (several runs per test)
TINIER_STUDENT = {**TINY_STUDENT, "embed_dim": 16, "head_hidden": 8}
TINY_TEACHER = {"video_trunk_kwargs": {"width": 0.25}, "audio_trunk_kwargs": {"width": 0.25}, "embed_dim": 16,
                "head_hidden": 8, "head_dilations": [1, 2]}
