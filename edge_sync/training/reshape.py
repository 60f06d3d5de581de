"""A trained student carried over to a changed temporal architecture, so a new shape need not start from scratch.

Why: retraining the whole chain (synthetic distillation, then real footage) costs most of a GPU session. Shorter
temporal kernels keep their trained centre taps, and new :class:`~edge_sync.models.blocks.FrameMotion2d` blocks start
as the identity, so the reshaped student begins near the one it came from and fine-tuning only has to adapt.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from edge_sync.models.student import StudentConfig, X3DStudent


def reshaped_config(config: StudentConfig, temporal_kernel: int | None = None,
                    motion_stages: tuple[int, ...] | None = None) -> StudentConfig:
    """``config`` with both trunks' temporal kernel and/or the video trunk's motion stages replaced."""
    d: dict[str, Any] = config.to_dict()
    if temporal_kernel is not None:
        for key in ("video_trunk_kwargs", "audio_trunk_kwargs"):
            d[key] = dict(d[key], temporal_kernel=int(temporal_kernel))
    if motion_stages is not None:
        d["video_trunk_kwargs"] = dict(d["video_trunk_kwargs"], motion_stages=[int(s) for s in motion_stages])
    return StudentConfig.from_dict(d)


def _centre_taps(weight: torch.Tensor, taps: int) -> torch.Tensor:
    """The middle ``taps`` of a conv's last (time) axis; a longer target is zero-padded on both sides."""
    have = weight.shape[-1]
    if taps <= have:
        start = (have - taps) // 2
        return weight[..., start:start + taps].clone()
    pad = (taps - have) // 2
    return nn.functional.pad(weight, (pad, taps - have - pad))


def reshape_student(model: X3DStudent, temporal_kernel: int | None = None,
                    motion_stages: tuple[int, ...] | None = None) -> X3DStudent:
    """A new student of the changed shape holding ``model``'s weights: temporal convs keep their centre taps, new
    motion blocks start as the identity, anything else must match exactly (a clear error otherwise)."""
    if not isinstance(model, X3DStudent):
        raise ValueError(f"only a student can be reshaped, not a {type(model).__name__}")
    reshaped = X3DStudent(reshaped_config(model.config, temporal_kernel, motion_stages))
    old = model.state_dict()
    state = {}
    for name, target in reshaped.state_dict().items():
        if name not in old:
            if ".motion." not in name:
                raise ValueError(f"{name} is new in the reshaped student but is not a motion block")
            state[name] = target
            continue
        source = old[name]
        if source.shape != target.shape:
            if source.dim() != 3 or source.shape[:2] != target.shape[:2]:
                raise ValueError(f"{name}: {tuple(source.shape)} cannot become {tuple(target.shape)}")
            source = _centre_taps(source, target.shape[-1])
        state[name] = source
    reshaped.load_state_dict(state)
    return reshaped.eval()
