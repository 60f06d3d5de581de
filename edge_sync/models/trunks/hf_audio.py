"""Self-supervised speech trunks from transformers: wav2vec 2.0 ("wav2vec2") and HuBERT ("hubert").

Input is the raw waveform [B, 1, 640 T] (16 kHz, 25 fps). Both models start with a stack of unpadded 1D convs
(the default config: kernels 10,3,3,3,3,2,2 and strides 5,2,2,2,2,2,2, i.e. total stride S = 320 samples and
receptive field R = 400 samples), then a transformer. S and R are computed from the config, never assumed:
the waveform is zero-padded by R - S samples, split evenly front and back, so the convs emit exactly
640 / S hidden frames per video frame (2 T for the default), hidden frame j centred on the middle of its own
S-sample hop; groups of 640 / S frames are averaged -> [B, hidden_size, T].

Weights only from a local directory written by ``save_pretrained`` (``pretrained=DIR``, loaded with
``local_files_only=True``): hub names and URLs are refused, nothing is downloaded at run time. Tests and
from-scratch training build from a config dict instead (``config={"hidden_size": 32, ...}``).

No projection is part of the trunk; the sync model adds its own. The transformer is global in time (every
output frame sees the whole clip), so unlike the conv trunks its output at frame t depends on distant audio,
and streaming over chunks is only approximately equal to offline use.

transformers is imported lazily (``pip install 'edge-sync[trunks]'``).
"""
from __future__ import annotations

import importlib.util
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from edge_sync._deps import require
from edge_sync.errors import CheckpointError, MissingExtraError
from edge_sync.models.trunks import register_audio_trunk
from edge_sync.spec import SAMPLES_PER_FRAME

log = logging.getLogger(__name__)


def _block_broken_torchvision() -> None:
    """Keep a torchvision that cannot import from breaking transformers' audio models.

    transformers 5 imports torchvision (via image_utils) while loading *any* model module whenever the
    torchvision and Pillow packages are present, even for speech models. A torchvision wheel built for
    another torch raises at import ("operator torchvision::nms does not exist"), which would make
    Wav2Vec2Model unusable. A torchvision that cannot import is useless anyway, so mark it absent
    (``sys.modules["torchvision"] = None``) and clear transformers' cached availability checks.
    """
    if "torchvision" in sys.modules or importlib.util.find_spec("torchvision") is None:
        return
    try:
        importlib.import_module("torchvision")
    except Exception as exc:  # RuntimeError from a torch/torchvision mismatch, ImportError, ...
        for name in [m for m in sys.modules if m.startswith("torchvision.")]:
            del sys.modules[name]
        sys.modules["torchvision"] = None  # type: ignore[assignment]  # import now fails with ImportError
        utils = sys.modules.get("transformers.utils.import_utils")
        for attr in dir(utils) if utils is not None else ():
            fn = getattr(utils, attr)
            if "torchvision" in attr and hasattr(fn, "cache_clear"):
                fn.cache_clear()
        log.warning("torchvision is installed but does not import (%s: %s); treating it as absent so "
                    "transformers' speech models load. Reinstall a torchvision matching torch to use it.",
                    type(exc).__name__, exc)


def _transformers_class(name: str, purpose: str) -> Any:
    _block_broken_torchvision()
    transformers = require("transformers", "trunks", purpose)
    try:
        return getattr(transformers, name)
    except Exception as exc:  # transformers raises ModuleNotFoundError/RuntimeError for broken optional deps
        cause = exc.__cause__ or exc
        raise MissingExtraError("transformers", "trunks",
                                f"{purpose}; transformers.{name} failed to import: {cause}") from exc


def conv_geometry(kernels: list[int] | tuple[int, ...], strides: list[int] | tuple[int, ...]) -> tuple[int, int]:
    """(total stride, receptive field) in samples of a stack of unpadded 1D convs."""
    if len(kernels) != len(strides) or not kernels:
        raise ValueError(f"conv kernels {kernels} and strides {strides} must be equal-length and non-empty")
    stride, field = 1, 1
    for k, s in zip(kernels, strides):
        field += (int(k) - 1) * stride
        stride *= int(s)
    return stride, field


def conv_output_length(n: int, kernels: list[int] | tuple[int, ...], strides: list[int] | tuple[int, ...]) -> int:
    """Frames an unpadded conv stack emits for n samples (0 if too short)."""
    for k, s in zip(kernels, strides):
        if n < k:
            return 0
        n = (n - int(k)) // int(s) + 1
    return n


class HFAudioTrunk(nn.Module):
    """A transformers speech encoder as a trunk: waveform [B, 1, 640T] -> [B, hidden_size, T].

    Args:
        pretrained: an existing local directory saved with ``save_pretrained`` (no hub names).
        config: a dict of config fields for a randomly initialised model (``{}`` = the default base size).
            Exactly one of ``pretrained`` / ``config``.
        layer: which hidden state to return (``None`` = last; intermediate layers often carry more
            phonetic, less semantic information).
        normalize: zero-mean unit-variance per clip, as the model's feature extractor does when
            ``do_normalize`` is set; ``None`` reads ``preprocessor_config.json`` of ``pretrained``
            (False without one). Per-clip statistics make outputs depend on the whole clip.
        spec_augment: keep the model's SpecAugment time/feature masking in training mode (off by default:
            it needs sequences longer than ``mask_time_length`` and would corrupt per-frame targets).
        freeze_feature_encoder: stop gradients into the conv feature encoder (common when fine-tuning).
        attn_implementation: passed to transformers (e.g. ``"eager"`` for exporters that dislike SDPA).
    """

    audio_input = "waveform"
    family = ""  # "wav2vec2" or "hubert" in subclasses
    _model_class = ""
    _config_class = ""

    def __init__(self, pretrained: str | os.PathLike[str] | None = None, config: dict[str, Any] | None = None,
                 layer: int | None = None, normalize: bool | None = None, spec_augment: bool = False,
                 freeze_feature_encoder: bool = False, attn_implementation: str | None = None) -> None:
        super().__init__()
        if (pretrained is None) == (config is None):
            raise ValueError(f"{self.family} trunk needs exactly one of pretrained=LOCAL_DIR (a folder written by "
                             f"save_pretrained) or config={{...}} (random init), got "
                             f"pretrained={pretrained!r}, config={'given' if config is not None else None}")
        purpose = f"the {self.family} audio trunk"
        model_cls = _transformers_class(self._model_class, purpose)
        config_cls = _transformers_class(self._config_class, purpose)
        extra = {"attn_implementation": attn_implementation} if attn_implementation else {}
        if pretrained is not None:
            folder = self._local_dir(pretrained)
            self.model = self._from_pretrained(model_cls, config_cls, folder, extra)
            if normalize is None:
                normalize = self._do_normalize(folder)
        else:
            if not isinstance(config, dict):
                raise TypeError(f"config must be a dict of {self._config_class} fields, got {type(config).__name__}")
            cfg = config_cls(**config)
            if attn_implementation:
                cfg._attn_implementation = attn_implementation
            self.model = model_cls(cfg)
        cfg = self.model.config
        cfg.apply_spec_augment = bool(spec_augment)
        self.layer = layer
        if layer is not None and not -cfg.num_hidden_layers - 1 <= layer <= cfg.num_hidden_layers:
            raise ValueError(f"layer {layer} out of range for {cfg.num_hidden_layers} transformer layers "
                             f"(hidden states 0..{cfg.num_hidden_layers})")
        self.normalize = bool(normalize)
        if freeze_feature_encoder:
            for p in self.model.feature_extractor.parameters():
                p.requires_grad_(False)
        self.kernels = tuple(int(k) for k in cfg.conv_kernel)
        self.strides = tuple(int(s) for s in cfg.conv_stride)
        stride, field = conv_geometry(self.kernels, self.strides)
        if SAMPLES_PER_FRAME % stride:
            raise ValueError(f"{self.family} config has total conv stride {stride} samples, which does not divide "
                             f"the {SAMPLES_PER_FRAME} samples of a video frame; use strides whose product divides it")
        self.hop, self.receptive_field = stride, field
        self.steps_per_frame = SAMPLES_PER_FRAME // stride
        pad = field - stride  # (n*S - S + R) samples give exactly n frames
        self.pad_front = pad // 2 if pad >= 0 else -((-pad) // 2)
        self.pad_back = pad - self.pad_front
        for t in (1, 2, 7):  # the arithmetic above, checked against the conv formula
            got = conv_output_length(t * SAMPLES_PER_FRAME + pad, self.kernels, self.strides)
            if got != t * self.steps_per_frame:
                raise AssertionError(f"framing bug: {got} hidden frames for T={t}, expected {t * self.steps_per_frame}")
        self.out_channels = int(cfg.hidden_size)
        self._rebuild = {"layer": layer, "normalize": self.normalize, "spec_augment": bool(spec_augment),
                         "freeze_feature_encoder": bool(freeze_feature_encoder)}

    def rebuild_kwargs(self) -> dict[str, Any]:
        """Kwargs that rebuild this architecture without the pretrained folder (stored in checkpoints,
        whose own state_dict then restores the weights)."""
        config = {k: v for k, v in self.model.config.to_dict().items()
                  if k not in ("architectures", "transformers_version", "_name_or_path", "torch_dtype", "dtype")}
        return {"config": config, **self._rebuild}

    # --- loading ---------------------------------------------------------------------------------
    def _local_dir(self, pretrained: str | os.PathLike[str]) -> Path:
        if not isinstance(pretrained, (str, os.PathLike)):
            raise TypeError(f"pretrained must be a local directory path, got {type(pretrained).__name__}")
        text = os.fspath(pretrained)
        folder = Path(text).expanduser()
        if "://" in text or not folder.is_dir():
            raise CheckpointError(
                f"{self.family} pretrained={text!r} is not an existing local directory. Hub downloads are not "
                f"allowed: fetch the model once elsewhere, save it with model.save_pretrained(DIR) (or copy the "
                f"hub snapshot folder), and pass pretrained=DIR")
        return folder

    def _from_pretrained(self, model_cls: Any, config_cls: Any, folder: Path, extra: dict[str, Any]) -> nn.Module:
        try:
            cfg = config_cls.from_pretrained(str(folder), local_files_only=True)
        except Exception as exc:
            raise CheckpointError(f"cannot read a {self.family} config from {str(folder)!r}: {exc}") from exc
        expected = getattr(config_cls, "model_type", "")
        if expected and getattr(cfg, "model_type", expected) != expected:
            raise CheckpointError(f"{str(folder)!r} holds a {cfg.model_type!r} model, not {expected!r}; "
                                  f"use the matching trunk name")
        try:
            model = model_cls.from_pretrained(str(folder), local_files_only=True, **extra)
        except Exception as exc:
            raise CheckpointError(f"cannot load {self.family} weights from {str(folder)!r}: {exc}") from exc
        return model.float()

    @staticmethod
    def _do_normalize(folder: Path) -> bool:
        path = folder / "preprocessor_config.json"
        if not path.is_file():
            return False
        try:
            return bool(json.loads(path.read_text()).get("do_normalize", False))
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"unreadable {path}: {exc}") from exc

    # --- forward ---------------------------------------------------------------------------------
    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        if waveform.ndim != 3 or waveform.shape[1] != 1:
            raise ValueError(f"{self.family} expects waveform [B, 1, 640T], got {list(waveform.shape)}")
        x = waveform[:, 0]
        if self.normalize:  # as transformers' Wav2Vec2FeatureExtractor(do_normalize=True)
            x = (x - x.mean(dim=1, keepdim=True)) / torch.sqrt(x.var(dim=1, keepdim=True, unbiased=False) + 1e-7)
        frames = x.shape[1] // SAMPLES_PER_FRAME
        x = F.pad(x, (self.pad_front, self.pad_back))
        if self.layer is None:
            hidden = self.model(x).last_hidden_state
        else:
            hidden = self.model(x, output_hidden_states=True).hidden_states[self.layer]
        b, n, c = hidden.shape
        if not torch.compiler.is_compiling() and n != frames * self.steps_per_frame:
            raise ValueError(f"waveform of {waveform.shape[-1]} samples is not a whole number of video frames "
                             f"({SAMPLES_PER_FRAME} samples each); trim it to 640*T samples")
        return hidden.transpose(1, 2).reshape(b, c, frames, self.steps_per_frame).mean(dim=3)

    def extra_repr(self) -> str:
        return (f"out_channels={self.out_channels}, hop={self.hop}, receptive_field={self.receptive_field}, "
                f"pad=({self.pad_front}, {self.pad_back}), layer={self.layer}, normalize={self.normalize}")


@register_audio_trunk("wav2vec2")
class Wav2Vec2Trunk(HFAudioTrunk):
    """wav2vec 2.0 (transformers.Wav2Vec2Model) over the waveform."""

    family = "wav2vec2"
    _model_class = "Wav2Vec2Model"
    _config_class = "Wav2Vec2Config"


@register_audio_trunk("hubert")
class HubertTrunk(HFAudioTrunk):
    """HuBERT (transformers.HubertModel) over the waveform."""

    family = "hubert"
    _model_class = "HubertModel"
    _config_class = "HubertConfig"


__all__ = ["HFAudioTrunk", "HubertTrunk", "Wav2Vec2Trunk", "conv_geometry", "conv_output_length"]
