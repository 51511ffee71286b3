"""Small composable projection heads (lightly style): Linear [-BatchNorm] [-activation] blocks,
and DINO's head."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.parametrizations import weight_norm


class ProjectionHead(nn.Sequential):
    """A stack of blocks, each ``(in_dim, out_dim, batch_norm, activation)``.

    ``batch_norm`` and ``activation`` are modules or ``None``; a linear layer followed by batch
    norm has no bias.
    """

    def __init__(self, blocks: Sequence[tuple[int, int, nn.Module | None, nn.Module | None]]):
        layers = []
        for in_dim, out_dim, batch_norm, activation in blocks:
            layers.append(nn.Linear(in_dim, out_dim, bias=batch_norm is None))
            layers += [m for m in (batch_norm, activation) if m is not None]
        super().__init__(*layers)


def mlp_head(input_dim: int, output_dim: int = 128, hidden_dim: int = 2048, *,
             num_layers: int = 2, batch_norm: bool = False,
             output_batch_norm: bool = False) -> ProjectionHead:
    """Linear-ReLU-...-Linear with ``num_layers`` linear layers.

    ``batch_norm`` adds BatchNorm1d after every hidden linear layer (SimCLR's head),
    ``output_batch_norm`` after the last one too (SimCLRv2's; the reference's last BatchNorm has
    a scale but no shift, this one has both). With the defaults this is the MoCo-v2 head and
    SEED's student head (Linear-ReLU-Linear, hidden 2048).
    """
    if num_layers < 1:
        raise ValueError("a projection head needs at least one layer")
    dims = [input_dim] + [hidden_dim] * (num_layers - 1) + [output_dim]
    blocks = [(dims[i], dims[i + 1], nn.BatchNorm1d(dims[i + 1]) if batch_norm else None, nn.ReLU())
              for i in range(num_layers - 1)]
    blocks.append((dims[-2], dims[-1], nn.BatchNorm1d(dims[-1]) if output_batch_norm else None,
                   None))
    return ProjectionHead(blocks)


class DinoHead(nn.Module):
    """DINO's projection head (Caron et al., 2021), also EsViT's: an MLP (``num_layers`` linear
    layers with GELU, hidden ``hidden_dim``, output ``bottleneck_dim``), L2 normalisation, then a
    weight-normalised linear layer without bias to ``output_dim`` (``last_layer``).

    ``norm_last_layer`` fixes the weight norm's magnitude at 1, so only directions are learnt
    (more stable; DINO's default). Linear weights start from a truncated normal (std 0.02).
    """

    def __init__(self, input_dim: int, output_dim: int, *, hidden_dim: int = 2048,
                 bottleneck_dim: int = 256, num_layers: int = 3, norm_last_layer: bool = True):
        super().__init__()
        if num_layers < 1:
            raise ValueError("a DINO head needs at least one layer before its last layer")
        dims = [input_dim] + [hidden_dim] * (num_layers - 1) + [bottleneck_dim]
        self.mlp = ProjectionHead([(dims[i], dims[i + 1], None,
                                    nn.GELU() if i < num_layers - 1 else None)
                                   for i in range(num_layers)])
        for layer in self.mlp:
            if isinstance(layer, nn.Linear):
                nn.init.trunc_normal_(layer.weight, std=0.02)
                nn.init.zeros_(layer.bias)
        self.last_layer = weight_norm(nn.Linear(bottleneck_dim, output_dim, bias=False))
        magnitude = self.last_layer.parametrizations.weight.original0
        with torch.no_grad():
            magnitude.fill_(1.0)
        magnitude.requires_grad_(not norm_last_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last_layer(F.normalize(self.mlp(x), dim=-1))
