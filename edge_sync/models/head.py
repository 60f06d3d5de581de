"""Sync head: dilated 1D convs over the correlation volume -> per-frame logits over offsets."""
from __future__ import annotations

import torch
from torch import nn

from edge_sync.models.blocks import DilatedResidual1d, conv_bn_act


class SyncHead(nn.Module):
    """Turns [B,2K+1,T] correlations into [B,2K+1,T] logits.

    The correlation itself is a strong per-frame cue; the dilated convs add temporal evidence
    (receptive field 1 + 2*sum(dilations) frames) and learn the calibration. A learnable scale on the
    raw correlation is kept as a skip path so an untrained head already points at the best offset.
    """

    def __init__(self, num_offsets: int, hidden: int = 64, dilations: tuple[int, ...] = (1, 2, 4, 8),
                 init_scale: float = 10.0) -> None:
        super().__init__()
        self.inp = conv_bn_act(1, num_offsets, hidden, 1, act="relu")
        self.blocks = nn.Sequential(*[DilatedResidual1d(hidden, d) for d in dilations])
        self.out = nn.Conv1d(hidden, num_offsets, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.scale = nn.Parameter(torch.tensor(float(init_scale)))
        self.receptive_field = 1 + 2 * sum(dilations)

    def forward(self, correlation: torch.Tensor) -> torch.Tensor:
        return self.scale * correlation + self.out(self.blocks(self.inp(correlation)))
