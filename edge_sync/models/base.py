"""The shared shape of every sync model: two encoders -> optional options -> correlation -> sync head.

Teacher and student differ only in their trunks and sizes, so parity, export and training treat them alike.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from edge_sync.models.correlation import shifted_correlation, window_correlation
from edge_sync.models.head import SyncHead
from edge_sync.models.options import CrossModalAttention, TemporalPyramid, TemporalTransformer
from edge_sync.models.trunks import build_audio_trunk, build_video_trunk
from edge_sync.spec import MAX_OFFSET, MOUTH, ModelContract, num_offsets


@dataclass
class SyncModelConfig:
    """Everything needed to rebuild a model; stored in checkpoints and manifests."""

    video_trunk: str
    audio_trunk: str
    video_trunk_kwargs: dict[str, Any] = field(default_factory=dict)
    audio_trunk_kwargs: dict[str, Any] = field(default_factory=dict)
    embed_dim: int = 128
    max_offset: int = MAX_OFFSET
    head_hidden: int = 64
    head_dilations: tuple[int, ...] = (1, 2, 4, 8)
    attention: bool = False
    attention_heads: int = 4
    transformer_layers: int = 0
    transformer_heads: int = 4
    pyramid: bool = False

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["head_dilations"] = list(self.head_dilations)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SyncModelConfig":
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown {cls.__name__} fields: {sorted(unknown)}")
        d = dict(data)
        if "head_dilations" in d:
            d["head_dilations"] = tuple(d["head_dilations"])
        return cls(**d)


def contract_forward(model: nn.Module, audio: torch.Tensor, video: torch.Tensor, features: bool = False,
                     windows: tuple[torch.Tensor, torch.Tensor] | None = None):
    """The ``forward`` every trainable sync model shares: (sync_probs, correlation) from ``forward_features``, or
    that dict itself with ``features=True`` (plus ``window_scores`` of ``windows`` for the window loss, and the
    windows' embeddings where the model has ``window_features``)."""
    out = model.forward_features(audio, video)
    if features:
        if windows is not None:
            window_features = getattr(model, "window_features", None)
            out.update(window_features(*windows) if callable(window_features)
                       else {"window_scores": model.window_scores(*windows)})
        return out
    return torch.softmax(out["logits"], dim=1), out["correlation"]


class SyncModel(nn.Module):
    """forward(audio [B,1,13,4T], video [B,3,T,112,112]) -> (sync_probs, correlation), both [B,2K+1,T]."""

    kind = "sync"

    def __init__(self, config: SyncModelConfig) -> None:
        super().__init__()
        self.config = config
        self.video_encoder = build_video_trunk(config.video_trunk, **config.video_trunk_kwargs)
        self.audio_encoder = build_audio_trunk(config.audio_trunk, **config.audio_trunk_kwargs)
        d = config.embed_dim
        self.video_proj = nn.Conv1d(self.video_encoder.out_channels, d, 1)
        self.audio_proj = nn.Conv1d(self.audio_encoder.out_channels, d, 1)
        self.attention = CrossModalAttention(d, config.attention_heads) if config.attention else None
        self.video_temporal = self.audio_temporal = None
        if config.transformer_layers:
            self.video_temporal = TemporalTransformer(d, config.transformer_layers, config.transformer_heads)
            self.audio_temporal = TemporalTransformer(d, config.transformer_layers, config.transformer_heads)
        self.video_pyramid = TemporalPyramid(d) if config.pyramid else None
        self.audio_pyramid = TemporalPyramid(d) if config.pyramid else None
        self.head = SyncHead(num_offsets(config.max_offset), config.head_hidden, tuple(config.head_dilations))

    @property
    def contract(self) -> ModelContract:
        return ModelContract(audio_input=self.audio_encoder.audio_input, video=MOUTH,
                             max_offset=self.config.max_offset, min_frames=1)

    def embed(self, audio: torch.Tensor, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """L2-normalised per-frame embeddings (audio [B,D,Ta], video [B,D,T]; Ta = T but for windows)."""
        return self.embed_trunk_features(self.audio_encoder(audio), self.video_encoder(video))

    def embed_trunk_features(self, audio: torch.Tensor, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`embed` from the trunks' outputs ([B,C,T] each): what training on cached trunk features runs."""
        v = self.video_proj(video)
        a = self.audio_proj(audio)
        if self.video_temporal is not None:
            v, a = self.video_temporal(v), self.audio_temporal(a)
        if self.video_pyramid is not None:
            v, a = self.video_pyramid(v), self.audio_pyramid(a)
        if self.attention is not None:
            v, a = self.attention(v, a)
        return F.normalize(a, dim=1, eps=1e-6), F.normalize(v, dim=1, eps=1e-6)

    def forward_features(self, audio: torch.Tensor, video: torch.Tensor) -> dict[str, torch.Tensor]:
        """Everything training needs: embeddings, correlation and head logits."""
        return self.forward_trunk_features(self.audio_encoder(audio), self.video_encoder(video))

    def forward_trunk_features(self, audio: torch.Tensor, video: torch.Tensor) -> dict[str, torch.Tensor]:
        """:meth:`forward_features` from the trunks' outputs (audio, video [B,C,T])."""
        a, v = self.embed_trunk_features(audio, video)
        correlation = shifted_correlation(v, a, self.config.max_offset)
        return {"audio_emb": a, "video_emb": v, "correlation": correlation, "logits": self.head(correlation)}

    def window_scores(self, audio: torch.Tensor, video: torch.Tensor) -> torch.Tensor:
        """Offset evidence [B,2K+1] for a window that the model sees alone: video [B,3,c,H,W] holds only the
        window's c frames, audio [B,1,13,4(c+2K)] the audio from K frames before it to K frames after it.

        Why: the published context protocol gives the model only the c-frame window; the per-frame
        ``correlation`` of a whole clip lets the encoders see neighbouring frames too.
        """
        return self.window_features(audio, video)["window_scores"]

    def window_features(self, audio: torch.Tensor, video: torch.Tensor) -> dict[str, torch.Tensor]:
        """:meth:`window_scores` with the window's own embeddings (``window_audio_emb`` [B,D,c+2K],
        ``window_video_emb`` [B,D,c]): what the window-context loss compares with the whole clip's."""
        a, v = self.embed(audio, video)
        return {"window_scores": window_correlation(v, a, self.config.max_offset), "window_audio_emb": a,
                "window_video_emb": v}

    def forward(self, audio: torch.Tensor, video: torch.Tensor, features: bool = False,
                windows: tuple[torch.Tensor, torch.Tensor] | None = None):
        """(sync_probs, correlation) per the contract; ``features=True`` returns forward_features' dict
        (training through DistributedDataParallel must go through forward), plus ``window_scores`` of
        ``windows`` = (window audio, window video) when given (the window loss)."""
        return contract_forward(self, audio, video, features, windows)

    def config_dict(self) -> dict[str, Any]:
        """The config to store in a checkpoint: trunk kwargs that point at external weight files are
        replaced by ones that rebuild the same architecture, since the checkpoint carries the weights."""
        d = self.config.to_dict()
        for key, trunk in (("video_trunk_kwargs", self.video_encoder), ("audio_trunk_kwargs", self.audio_encoder)):
            rebuild = getattr(trunk, "rebuild_kwargs", None)
            d[key] = rebuild() if callable(rebuild) else {k: v for k, v in d[key].items() if k != "weights"}
        return d
