"""Small composable projection heads (lightly style): Linear [-BatchNorm] [-activation] blocks."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn


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
