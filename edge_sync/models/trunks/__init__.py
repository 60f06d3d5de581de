"""Trunk registry: the encoders a sync model can be built from, by name.

A *trunk* turns one modality into per-frame features that the model then projects, correlates and
scores. Teacher and student configs name their trunks (``video_trunk="r3d_18"``,
``audio_trunk="vggish"``...), so adding a trunk never touches the model code.

Contract of every trunk
-----------------------
* It is an ``nn.Module`` with an int attribute ``out_channels``.
* Video trunks map ``[B, 3, T, H, W]`` (H = W = 112 for the mouth crops of :data:`edge_sync.spec.MOUTH`)
  to ``[B, out_channels, T]`` and keep T *exactly*: no temporal stride, 'same' temporal padding, so
  output frame t is the feature of input frame t and any T >= 1 works.
* Audio trunks have a str attribute ``audio_input``, a key of :data:`edge_sync.spec.AUDIO_INPUTS`
  (``"mfcc"`` [B,1,13,4T], ``"logmel"`` [B,1,64,4T], ``"waveform"`` [B,1,640T]), and map that input to
  ``[B, out_channels, T]`` where T is the number of video frames.
* No projection to the embedding size: the model adds its own 1x1 conv on top.
* Builders take keyword arguments only, and those kwargs are stored in model configs and checkpoints,
  so keep them JSON-friendly (numbers, strings, lists, dicts). Pretrained weights come only from a local
  path (``weights=PATH`` / ``pretrained=DIR``); nothing is ever downloaded at run time.

An unknown name raises :class:`UnknownTrunkError` (a ``KeyError``) listing the registered names.
:func:`load_local_weights` is the one strict loader trunks use for ``weights=PATH``: it ignores the
classifier keys a trunk does not have and raises :class:`~edge_sync.errors.CheckpointError` for anything else
that does not fit.

Built-in trunks: video ``syncnet_conv3d`` (teacher default), ``x3d_2plus1d`` (student), ``r3d_18``, ``i3d``,
``slowfast``, ``light_asd_visual`` (real-face pretrained);
audio ``syncnet_mfcc``, ``x3d_mfcc``, ``light_asd_mfcc``, ``vggish`` (log-mel), ``wav2vec2`` / ``hubert``
(waveform).

Adding a trunk (I3D, SlowFast, ...) = one new module that decorates its class or factory with
:func:`register_video_trunk` / :func:`register_audio_trunk`, plus its name in ``_BUILTIN_MODULES`` below
(or an import of the module before building, for trunks that live outside this package).
"""
from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any, Callable, Iterable, TypeVar

import torch
from torch import nn

from edge_sync.errors import CheckpointError, EdgeSyncError
from edge_sync.spec import AUDIO_INPUTS

Builder = Callable[..., nn.Module]
B = TypeVar("B", bound=Builder)

VIDEO_TRUNKS: dict[str, Builder] = {}
AUDIO_TRUNKS: dict[str, Builder] = {}


def _register(registry: dict[str, Builder], kind: str, name: str) -> Callable[[B], B]:
    if not isinstance(name, str) or not name:
        raise ValueError(f"a {kind} trunk name must be a non-empty string, got {name!r}")

    def decorator(builder: B) -> B:
        existing = registry.get(name)
        if existing is not None and existing is not builder:
            # Re-importing the same module (e.g. importlib.reload) may re-register an equal builder;
            # two different builders under one name is a bug that would silently change models.
            same = (getattr(existing, "__module__", None), getattr(existing, "__qualname__", None)) == (
                getattr(builder, "__module__", None), getattr(builder, "__qualname__", None))
            if not same:
                raise ValueError(f"{kind} trunk {name!r} is already registered by "
                                 f"{existing.__module__}.{existing.__qualname__}")
        registry[name] = builder
        return builder

    return decorator


def register_video_trunk(name: str) -> Callable[[B], B]:
    """Class/function decorator: ``@register_video_trunk("r3d_18")``."""
    return _register(VIDEO_TRUNKS, "video", name)


def register_audio_trunk(name: str) -> Callable[[B], B]:
    """Class/function decorator: ``@register_audio_trunk("vggish")``; the module needs ``audio_input``."""
    return _register(AUDIO_TRUNKS, "audio", name)


class UnknownTrunkError(EdgeSyncError, KeyError):
    """A config names a trunk that no module registered (typo, or its module was never imported)."""

    def __str__(self) -> str:  # KeyError would print the message quoted
        return str(self.args[0]) if self.args else ""


def _lookup(registry: dict[str, Builder], kind: str, name: str) -> Builder:
    try:
        return registry[name]
    except (KeyError, TypeError):
        known = ", ".join(sorted(registry)) or "(none)"
        raise UnknownTrunkError(f"unknown {kind} trunk {name!r}; known {kind} trunks: {known}") from None


def _check(trunk: Any, kind: str, name: str) -> nn.Module:
    if not isinstance(trunk, nn.Module):
        raise TypeError(f"{kind} trunk {name!r} built a {type(trunk).__name__}, not an nn.Module")
    if not isinstance(getattr(trunk, "out_channels", None), int):
        raise TypeError(f"{kind} trunk {name!r} has no int attribute 'out_channels'")
    if kind == "audio" and getattr(trunk, "audio_input", None) not in AUDIO_INPUTS:
        raise TypeError(f"audio trunk {name!r} must set 'audio_input' to one of {sorted(AUDIO_INPUTS)}, "
                        f"got {getattr(trunk, 'audio_input', None)!r}")
    return trunk


def build_video_trunk(name: str, **kwargs: Any) -> nn.Module:
    """Build the registered video trunk ``name``: [B,3,T,H,W] -> [B,out_channels,T]."""
    return _check(_lookup(VIDEO_TRUNKS, "video", name)(**kwargs), "video", name)


def build_audio_trunk(name: str, **kwargs: Any) -> nn.Module:
    """Build the registered audio trunk ``name``: its ``audio_input`` -> [B,out_channels,T]."""
    return _check(_lookup(AUDIO_TRUNKS, "audio", name)(**kwargs), "audio", name)


def load_local_weights(module: nn.Module, path: str | os.PathLike[str], *, ignore_prefixes: Iterable[str] = (),
                       select_prefix: str = "", what: str = "trunk") -> None:
    """Load a local ``state_dict`` file into ``module`` strictly, with errors a user can act on.

    Accepts a bare state_dict or one wrapped as ``{"state_dict": ...}`` / ``{"model": ...}`` /
    ``{"model_state": ...}`` (PySlowFast and PyTorchVideo ``.pyth`` files), and strips a
    ``module.`` prefix (DataParallel). Keys under ``ignore_prefixes`` (a classifier head the trunk does not
    have) are dropped; with ``select_prefix`` only keys under it are kept, without it (one encoder out of a
    whole model's checkpoint); any other missing, unexpected or mis-shaped key raises :class:`CheckpointError`.
    Only local files: URLs and hub names are refused, since nothing is downloaded at run time.
    """
    text = os.fspath(path)
    if "://" in text:
        raise CheckpointError(f"{what} weights must be a local file path, got URL {text!r}; download it "
                              f"yourself and pass the file path (edge-sync never downloads weights)")
    file = Path(text).expanduser()
    if not file.is_file():
        raise CheckpointError(f"{what} weights file {str(file)!r} does not exist (or is not a file); pass the path "
                              f"of a local state_dict saved with torch.save(model.state_dict(), path)")
    try:
        obj = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors, truncated zip, not a torch file...
        raise CheckpointError(f"cannot read {what} weights from {str(file)!r}: {exc}") from exc
    for wrapper in ("state_dict", "model", "model_state"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{str(file)!r} is not a state_dict (a dict of name -> tensor); save the "
                              f"weights with torch.save(model.state_dict(), path)")
    state = {(k[len("module."):] if k.startswith("module.") else k): v for k, v in obj.items()}
    if select_prefix:
        state = {k[len(select_prefix):]: v for k, v in state.items() if k.startswith(select_prefix)}
    prefixes = tuple(ignore_prefixes)
    state = {k: v for k, v in state.items() if not (prefixes and k.startswith(prefixes))}
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
                    for k in set(own) & set(state) if tuple(state[k].shape) != tuple(own[k].shape))
    if missing or unexpected or shapes:
        def few(items: list[str]) -> str:
            return ", ".join(items[:6]) + (f" (+{len(items) - 6} more)" if len(items) > 6 else "")
        parts = []
        if missing:
            parts.append(f"missing keys: {few(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {few(unexpected)}")
        if shapes:
            parts.append(f"shape mismatches: {few(shapes)}")
        raise CheckpointError(f"{str(file)!r} does not fit the {what}: " + "; ".join(parts)
                              + ". Check that the file is this architecture (and width) before loading it.")
    module.load_state_dict(state, strict=True)


def he_init_3d(module: nn.Module) -> None:
    """He (fan-out) init on every Conv3d and unit/zero BatchNorm3d affine: how torchvision and PyTorchVideo start
    their 3D networks from scratch, and the start every 3D trunk trained here from scratch shares."""
    for m in module.modules():
        if isinstance(m, nn.Conv3d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm3d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


# Built-in trunks register themselves on import. They import torch only (transformers is imported lazily
# inside hf_audio's builders), so importing this package stays cheap.
_BUILTIN_MODULES = ("syncnet", "x3d", "r3d", "i3d", "slowfast", "vggish", "hf_audio", "light_asd", "stacked")

for _module in _BUILTIN_MODULES:
    importlib.import_module(f"{__name__}.{_module}")
del _module

__all__ = ["AUDIO_TRUNKS", "VIDEO_TRUNKS", "UnknownTrunkError", "build_audio_trunk", "build_video_trunk",
           "he_init_3d", "load_local_weights", "register_audio_trunk", "register_video_trunk"]
