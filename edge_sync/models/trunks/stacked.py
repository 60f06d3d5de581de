"""Stacked trunks: several trunks side by side on the same input, their per-frame features concatenated.

Why: one teacher for real people and for the synthetic protocol. Light-ASD's encoders (trained on real faces, see
:mod:`.light_asd`) read real mouths and not the synthetic ones; the bundled teacher's trunks (trained on synthetic
mouths) the other way round. Stacked, one projection and sync head learn to use both, while each trunk keeps the
weights it came with (frozen, with ``trunk_features``).

Config (JSON-friendly, as every trunk's)::

    {"video_trunk": "stacked", "video_trunk_kwargs": {"trunks": [
        {"name": "syncnet_conv3d", "weights": "edge_sync/weights/teacher.pt", "select_prefix": "video_encoder."},
        {"name": "light_asd_visual", "kwargs": {"weights": "finetuning_TalkSet.model"}}]}}

``weights`` + ``select_prefix`` load one trunk out of any local state_dict file (an edge-sync checkpoint included,
see :func:`load_local_weights`); a trunk's own ``kwargs`` may name its weights as that trunk documents. Checkpoints
store only what rebuilds the architecture (they carry the weights).
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from edge_sync.models.trunks import (build_audio_trunk, build_video_trunk, load_local_weights, register_audio_trunk,
                                     register_video_trunk)

SPEC_KEYS = {"name", "kwargs", "weights", "select_prefix"}


class StackedTrunk(nn.Module):
    """Runs every trunk on the input and concatenates their [B, C_i, T] outputs along C."""

    def __init__(self, trunks: list[nn.Module], specs: list[dict[str, Any]]) -> None:
        super().__init__()
        self.trunks = nn.ModuleList(trunks)
        self.specs = specs
        self.out_channels = sum(int(t.out_channels) for t in trunks)
        inputs = {getattr(t, "audio_input", None) for t in trunks}
        if len(inputs) > 1:
            raise ValueError(f"stacked audio trunks must take the same input, got {sorted(map(str, inputs))}")
        if inputs != {None}:
            self.audio_input = inputs.pop()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([trunk(x) for trunk in self.trunks], dim=1)

    def rebuild_kwargs(self) -> dict[str, Any]:
        """Builder kwargs without external weight files (a checkpoint carries the weights)."""
        out = []
        for spec, trunk in zip(self.specs, self.trunks):
            rebuild = getattr(trunk, "rebuild_kwargs", None)
            kwargs = rebuild() if callable(rebuild) else {k: v for k, v in spec.get("kwargs", {}).items()
                                                          if k != "weights"}
            out.append({"name": spec["name"], "kwargs": kwargs})
        return {"trunks": out}


def _stacked(build: Callable[..., nn.Module], kind: str, trunks: list[dict[str, Any]]) -> StackedTrunk:
    if not isinstance(trunks, list) or not trunks:
        raise ValueError(f"a stacked {kind} trunk needs trunks=[{{'name': ..., 'kwargs': {{...}}}}, ...], "
                         f"got {trunks!r}")
    built, specs = [], []
    for spec in trunks:
        if not isinstance(spec, dict) or "name" not in spec or set(spec) - SPEC_KEYS:
            raise ValueError(f"each stacked {kind} trunk is a dict with 'name' and optional "
                             f"{sorted(SPEC_KEYS - {'name'})}, got {spec!r}")
        trunk = build(spec["name"], **dict(spec.get("kwargs", {})))
        if spec.get("weights"):
            load_local_weights(trunk, spec["weights"], select_prefix=spec.get("select_prefix", ""),
                               what=f"{kind} trunk {spec['name']!r}")
        built.append(trunk)
        specs.append(dict(spec))
    return StackedTrunk(built, specs)


@register_video_trunk("stacked")
def stacked_video(trunks: list[dict[str, Any]]) -> StackedTrunk:
    """Video trunks side by side (see the module docstring)."""
    return _stacked(build_video_trunk, "video", trunks)


@register_audio_trunk("stacked")
def stacked_audio(trunks: list[dict[str, Any]]) -> StackedTrunk:
    """Audio trunks side by side; they must take the same audio input."""
    return _stacked(build_audio_trunk, "audio", trunks)
