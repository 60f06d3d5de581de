"""The original SyncNet S (syncnet_python) and its exact fully convolutional form.

``SyncNetS`` is the sliding-window model as published: 5-frame 224x224 BGR windows and 13x20 MFCC windows,
each mapped to one 1024-d embedding. ``LegacySyncNetFCN`` holds the same weights but keeps time:

* video: the lip Conv3d stack has time kernel 5 and no time padding, every later layer time kernel 1,
  so running it over N+4 frames gives exactly the N window embeddings;
* audio: every conv zero-pads time *inside* each 20-step window, so a plain FCN over the whole MFCC
  would differ (~21% of the range, measured); the audio trunk therefore runs on the unfolded 13x20
  windows (cheap) and only the FC layers become 1x1 convs;
* FC 512->512->1024 become Conv1d(kernel 1) over time, BatchNorm1d carries over unchanged.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from edge_sync.errors import CheckpointError
from edge_sync.models._files import load_torch_file
from edge_sync.models.correlation import shifted_correlation, shifted_distance
from edge_sync.scoring import LegacyOffsets, syncnet_offsets
from edge_sync.spec import LEGACY_FACE, LEGACY_VSHIFT, MAX_OFFSET, ModelContract

AUDIO_WINDOW = 20  # MFCC steps per legacy window (0.2 s)
VIDEO_WINDOW = 5  # frames per legacy window
EMBED_DIM = 1024


def _audio_cnn() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 64, (3, 3), stride=(1, 1), padding=(1, 1)), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
        nn.MaxPool2d((1, 1), stride=(1, 1)),
        nn.Conv2d(64, 192, (3, 3), stride=(1, 1), padding=(1, 1)), nn.BatchNorm2d(192), nn.ReLU(inplace=True),
        nn.MaxPool2d((3, 3), stride=(1, 2)),
        nn.Conv2d(192, 384, (3, 3), padding=(1, 1)), nn.BatchNorm2d(384), nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, (3, 3), padding=(1, 1)), nn.BatchNorm2d(256), nn.ReLU(inplace=True),
        nn.Conv2d(256, 256, (3, 3), padding=(1, 1)), nn.BatchNorm2d(256), nn.ReLU(inplace=True),
        nn.MaxPool2d((3, 3), stride=(2, 2)),
        nn.Conv2d(256, 512, (5, 4), padding=(0, 0)), nn.BatchNorm2d(512), nn.ReLU(),
    )


def _lip_cnn() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv3d(3, 96, (5, 7, 7), stride=(1, 2, 2), padding=0), nn.BatchNorm3d(96), nn.ReLU(inplace=True),
        nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2)),
        nn.Conv3d(96, 256, (1, 5, 5), stride=(1, 2, 2), padding=(0, 1, 1)), nn.BatchNorm3d(256),
        nn.ReLU(inplace=True),
        nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
        nn.Conv3d(256, 256, (1, 3, 3), padding=(0, 1, 1)), nn.BatchNorm3d(256), nn.ReLU(inplace=True),
        nn.Conv3d(256, 256, (1, 3, 3), padding=(0, 1, 1)), nn.BatchNorm3d(256), nn.ReLU(inplace=True),
        nn.Conv3d(256, 256, (1, 3, 3), padding=(0, 1, 1)), nn.BatchNorm3d(256), nn.ReLU(inplace=True),
        nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2)),
        nn.Conv3d(256, 512, (1, 6, 6), padding=0), nn.BatchNorm3d(512), nn.ReLU(inplace=True),
    )


def _fc(linear: bool) -> nn.Sequential:
    """The 512->512->1024 head, as Linear layers (original) or kernel-1 Conv1d over time (FCN)."""
    layer = (lambda i, o: nn.Linear(i, o)) if linear else (lambda i, o: nn.Conv1d(i, o, 1))
    return nn.Sequential(layer(512, 512), nn.BatchNorm1d(512), nn.ReLU(), layer(512, EMBED_DIM))


class SyncNetS(nn.Module):
    """The original sliding-window SyncNet S, with the public checkpoint's parameter names.

    Kept as the reference the FCN is proven against and as the baseline row in benchmarks.
    """

    def __init__(self) -> None:
        super().__init__()
        self.netcnnaud = _audio_cnn()
        self.netfcaud = _fc(linear=True)
        self.netfclip = _fc(linear=True)
        self.netcnnlip = _lip_cnn()

    def forward_aud(self, mfcc_window: torch.Tensor) -> torch.Tensor:
        """[N,1,13,20] -> [N,1024]."""
        return self.netfcaud(self.netcnnaud(mfcc_window).flatten(1))

    def forward_lip(self, frames_window: torch.Tensor) -> torch.Tensor:
        """[N,3,5,224,224] -> [N,1024]."""
        return self.netfclip(self.netcnnlip(frames_window).flatten(1))

    def sliding_embeddings(self, mfcc: torch.Tensor, frames: torch.Tensor,
                           batch_size: int = 20) -> tuple[torch.Tensor, torch.Tensor]:
        """syncnet_python's evaluation loop: window i = frames i..i+4 and MFCC steps 4i..4i+19,
        stacked ``batch_size`` windows at a time as that script does.

        Takes one clip (mfcc [1,1,13,4N+16], frames [1,3,N+4,224,224]) -> (audio [N,1024], video [N,1024]).
        """
        n = frames.shape[2] - VIDEO_WINDOW + 1
        vid, aud = [], []
        for start in range(0, n, batch_size):
            idx = range(start, min(n, start + batch_size))
            vid.append(self.forward_lip(torch.cat([frames[:, :, i:i + VIDEO_WINDOW] for i in idx])))
            aud.append(self.forward_aud(torch.cat([mfcc[..., 4 * i:4 * i + AUDIO_WINDOW] for i in idx])))
        return torch.cat(aud), torch.cat(vid)


@functools.cache
def _checkpoint_layout() -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in SyncNetS().state_dict().items()}


class LegacySyncNetFCN(nn.Module):
    """SyncNet S in fully convolutional form, plus the tensor-contract forward used for export.

    forward(audio [B,1,13,4T], video [B,3,T,224,224] BGR 0..255) -> (sync_probs, correlation) [B,31,T]:
    the clip is edge-padded by 2 frames (8 MFCC steps) each side so output t is the window centred on t;
    sync_probs is a softmax over -distance / ``temperature`` (the legacy model has no sync head).
    """

    kind = "legacy"

    def __init__(self, max_offset: int = MAX_OFFSET, temperature: float = 1.0) -> None:
        super().__init__()
        self.netcnnaud = _audio_cnn()
        self.netfcaud = _fc(linear=False)
        self.netfclip = _fc(linear=False)
        self.netcnnlip = _lip_cnn()
        self.max_offset = max_offset
        self.temperature = temperature

    # --- construction -------------------------------------------------------------------------
    @classmethod
    def from_sliding(cls, model: SyncNetS, **kwargs: Any) -> "LegacySyncNetFCN":
        fcn = cls(**kwargs)
        fcn.load_legacy_state_dict(model.state_dict())
        return fcn

    @classmethod
    def from_checkpoint(cls, path: str | Path, **kwargs: Any) -> "LegacySyncNetFCN":
        """Load syncnet_python's public checkpoint (a torch-saved state_dict: netcnnaud.*, netfcaud.*,
        netcnnlip.*, netfclip.*)."""
        return cls.from_state_dict(load_torch_file(path, "legacy checkpoint"), source=str(path), **kwargs)

    @classmethod
    def from_state_dict(cls, state: Any, source: str = "state_dict", **kwargs: Any) -> "LegacySyncNetFCN":
        """Build from an already loaded public-format state_dict (optionally wrapped as {"state_dict": ...})."""
        if isinstance(state, dict) and "state_dict" in state and "netcnnaud.0.weight" not in state:
            state = state["state_dict"]
        if not isinstance(state, dict):
            raise CheckpointError(f"{source} does not hold a state_dict (got {type(state).__name__})")
        fcn = cls(**kwargs)
        fcn.load_legacy_state_dict(state, source=source)
        return fcn

    def load_legacy_state_dict(self, state: dict[str, torch.Tensor], source: str = "state_dict") -> None:
        """Copy public-format weights in, reshaping Linear [out,in] to Conv1d [out,in,1]."""
        layout = _checkpoint_layout()
        state = {k.removeprefix("module.").removeprefix("__S__."): v for k, v in state.items()}
        optional = {k for k in layout if k.endswith("num_batches_tracked")}
        unknown = sorted(set(state) - set(layout))
        missing = sorted(set(layout) - set(state) - optional)
        if unknown or missing:
            parts = []
            if unknown:
                parts.append(f"unknown keys {unknown[:5]}{' ...' if len(unknown) > 5 else ''}")
            if missing:
                parts.append(f"missing keys {missing[:5]}{' ...' if len(missing) > 5 else ''}")
            raise CheckpointError(f"{source} is not a SyncNet S checkpoint: {'; '.join(parts)}")
        own = self.state_dict()
        for key, value in state.items():
            if not torch.is_tensor(value):
                raise CheckpointError(f"{source}: {key} is not a tensor")
            if tuple(value.shape) != layout[key]:
                raise CheckpointError(f"{source}: {key} has shape {tuple(value.shape)}, expected {layout[key]}")
            own[key].copy_(value.reshape(own[key].shape))

    # --- embeddings ---------------------------------------------------------------------------
    def embed_audio(self, mfcc: torch.Tensor) -> torch.Tensor:
        """MFCC [B,1,13,4N+16] -> [B,1024,N], one embedding per 20-step window at stride 4."""
        if mfcc.ndim != 4 or mfcc.shape[1:3] != (1, 13) or mfcc.shape[3] < AUDIO_WINDOW or mfcc.shape[3] % 4:
            raise ValueError(f"legacy audio must be [B,1,13,4N+16] with N >= 1, got {list(mfcc.shape)}")
        b = mfcc.shape[0]
        windows = mfcc.unfold(3, AUDIO_WINDOW, 4)  # [B,1,13,N,20]
        n = windows.shape[3]
        flat = windows.permute(0, 3, 1, 2, 4).reshape(b * n, 1, 13, AUDIO_WINDOW)
        mid = self.netcnnaud(flat).reshape(b, n, 512).transpose(1, 2)
        return self.netfcaud(mid)

    def embed_video(self, frames: torch.Tensor) -> torch.Tensor:
        """Frames [B,3,N+4,224,224] -> [B,1024,N], exact as a plain FCN."""
        if frames.ndim != 5 or frames.shape[1] != 3 or frames.shape[3:] != (224, 224) or frames.shape[2] < 5:
            raise ValueError(f"legacy video must be [B,3,N+4,224,224] with N >= 1, got {list(frames.shape)}")
        return self.netfclip(self.netcnnlip(frames).flatten(2))

    def offsets(self, mfcc: torch.Tensor, frames: torch.Tensor, vshift: int = LEGACY_VSHIFT) -> LegacyOffsets:
        """syncnet_python's AV offset / min dist / confidence for one clip."""
        with torch.no_grad():
            a = self.embed_audio(mfcc)[0].T.numpy()
            v = self.embed_video(frames)[0].T.numpy()
        return syncnet_offsets(v, a, vshift)

    # --- tensor contract ----------------------------------------------------------------------
    @property
    def contract(self) -> ModelContract:
        return ModelContract(audio_input="mfcc", video=LEGACY_FACE, max_offset=self.max_offset, min_frames=1)

    def forward(self, audio: torch.Tensor, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        half = VIDEO_WINDOW // 2  # edge-pad so output t is the window centred on frame t
        video = F.pad(video, (0, 0, 0, 0, half, half), mode="replicate")
        audio = F.pad(audio, (4 * half, 4 * half, 0, 0), mode="replicate")
        a = self.embed_audio(audio)
        v = self.embed_video(video)
        dist = shifted_distance(v, a, self.max_offset)
        correlation = shifted_correlation(F.normalize(v, dim=1, eps=1e-6), F.normalize(a, dim=1, eps=1e-6),
                                          self.max_offset)
        return torch.softmax(-dist / self.temperature, dim=1), correlation

    def config_dict(self) -> dict[str, Any]:
        return {"max_offset": self.max_offset, "temperature": self.temperature}
