"""The legacy SyncNet S on the mouth crops every other model trains and is evaluated on.

The synthetic corpus (and the teacher/student contract) gives 112x112 RGB mouth crops in [-1, 1]; SyncNet S takes
224x224 BGR frames in 0..255 (``legacy_face224``). :class:`MouthLegacy` converts inside the module (bilinear x2,
RGB -> BGR, rescale), so the loader, augmentation, losses and metrics are exactly the teacher's, and gives the
legacy model what the trainer needs: ``logits = -distance / temperature`` over offsets -K..K (SyncNet S has no sync
head; its contract ``sync_probs`` are exactly ``softmax(logits)``), the cosine ``correlation`` and the embeddings.

Checkpoints hold the plain :class:`~edge_sync.models.legacy.LegacySyncNetFCN` (kind ``legacy``); a model trained
this way expects upscaled mouth crops, so wrap it again (:func:`as_trainable`) to feed it mouth112 input.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from edge_sync.models.base import contract_forward
from edge_sync.models.correlation import shifted_correlation, shifted_distance, window_correlation
from edge_sync.models.legacy import VIDEO_WINDOW, LegacySyncNetFCN
from edge_sync.spec import LEGACY_FACE, MOUTH, ModelContract

INPUT_NOTE = ("trained on mouth112 crops (RGB, [-1, 1]) upscaled x2 bilinear to 224x224 and converted to BGR 0..255 "
              "inside the model (edge_sync.training.legacy_adapter.MouthLegacy)")


def mouth_to_legacy_frames(video: torch.Tensor) -> torch.Tensor:
    """Mouth crops [B,3,T,112,112] RGB in [-1, 1] -> [B,3,T,224,224] BGR in 0..255 (the legacy input contract)."""
    if video.ndim != 5 or video.shape[1] != 3 or video.shape[3:] != (MOUTH.size, MOUTH.size):
        raise ValueError(f"mouth video must be [B,3,T,{MOUTH.size},{MOUTH.size}], got {list(video.shape)}")
    b, c, t, h, w = video.shape
    frames = video.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
    frames = F.interpolate(frames, size=(LEGACY_FACE.size, LEGACY_FACE.size), mode="bilinear", align_corners=False)
    frames = (frames.flip(1) + 1.0) * 127.5  # RGB -> BGR, [-1, 1] -> 0..255
    return frames.reshape(b, t, c, LEGACY_FACE.size, LEGACY_FACE.size).permute(0, 2, 1, 3, 4)


class MouthLegacy(nn.Module):
    """A LegacySyncNetFCN that takes the mouth112 contract and exposes ``forward_features`` for training.

    ``forward`` equals ``legacy(audio, mouth_to_legacy_frames(video))``.
    """

    kind = "legacy"
    checkpoint_note = INPUT_NOTE  # recorded in the checkpoint's meta as "input"

    def __init__(self, legacy: LegacySyncNetFCN) -> None:
        super().__init__()
        self.legacy = legacy

    @property
    def checkpoint_module(self) -> LegacySyncNetFCN:
        """What a checkpoint stores: the plain legacy model (a registered kind)."""
        return self.legacy

    @property
    def contract(self) -> ModelContract:
        return ModelContract(audio_input="mfcc", video=MOUTH, max_offset=self.legacy.max_offset, min_frames=1)

    def forward_features(self, audio: torch.Tensor, video: torch.Tensor) -> dict[str, torch.Tensor]:
        half = VIDEO_WINDOW // 2  # edge padding as LegacySyncNetFCN.forward: output t is the window centred on t
        frames = F.pad(mouth_to_legacy_frames(video), (0, 0, 0, 0, half, half), mode="replicate")
        audio = F.pad(audio, (4 * half, 4 * half, 0, 0), mode="replicate")
        a = self.legacy.embed_audio(audio)
        v = self.legacy.embed_video(frames)
        k = self.legacy.max_offset
        dist = shifted_distance(v, a, k)
        correlation = shifted_correlation(F.normalize(v, dim=1, eps=1e-6), F.normalize(a, dim=1, eps=1e-6), k)
        return {"audio_emb": a, "video_emb": v, "correlation": correlation, "logits": -dist / self.legacy.temperature}

    def window_scores(self, audio: torch.Tensor, video: torch.Tensor) -> torch.Tensor:
        """SyncModel.window_scores for SyncNet S, as syncnet_python evaluates: without padding, the c frames give
        c - 4 five-frame embeddings (centres 2..c-3) and the audio of the window +-K frames gives c - 4 + 2K
        (centres 2-K..c+K-3), so candidate k of embedding j is audio embedding j + K + k."""
        v = F.normalize(self.legacy.embed_video(mouth_to_legacy_frames(video)), dim=1, eps=1e-6)
        a = F.normalize(self.legacy.embed_audio(audio), dim=1, eps=1e-6)
        return window_correlation(v, a, self.legacy.max_offset)

    def forward(self, audio: torch.Tensor, video: torch.Tensor, features: bool = False,
                windows: tuple[torch.Tensor, torch.Tensor] | None = None):
        return contract_forward(self, audio, video, features, windows)

    def config_dict(self) -> dict[str, Any]:
        return self.legacy.config_dict()


def as_trainable(model: nn.Module) -> nn.Module:
    """A model the trainer and ``evaluate`` can use on mouth112 batches: legacy models get the adapter."""
    return MouthLegacy(model) if isinstance(model, LegacySyncNetFCN) else model


def as_scored(model: nn.Module) -> nn.Module:
    """The model on the input it was trained on: a legacy model trained here on mouth crops (its checkpoint says so)
    gets the adapter; an imported syncnet_python model keeps its own 224x224 face contract."""
    meta = getattr(model, "checkpoint_meta", None) or {}
    return MouthLegacy(model) if isinstance(model, LegacySyncNetFCN) and meta.get("input") == INPUT_NOTE else model
