"""A small sequence model over token ids: embed each position, concatenate, an MLP on top."""

from __future__ import annotations

import torch
from torch import nn


class TokenMLP(nn.Module):
    """Embeds each token, concatenates the positions, scores the classes with an MLP.

    On modular addition it memorises the training pairs at once; it generalises to the
    held-out pairs only under strong weight decay (AdamW, weight_decay near 1).

    Args:
        vocab_size: Token ids run 0 .. vocab_size - 1 (given by ``data=file``).
        num_classes: Classes (given by ``data=file``).
        input_shape: ``(sequence length,)`` (given by ``data=file``).
        dim: Embedding width.
        hidden: Width of the hidden layer.
    """

    def __init__(
        self, vocab_size: int, num_classes: int, input_shape: tuple[int, ...], dim: int = 32, hidden: int = 128
    ) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, dim)
        self.mlp = nn.Sequential(
            nn.Flatten(), nn.Linear(dim * input_shape[0], hidden), nn.ReLU(), nn.Linear(hidden, num_classes)
        )

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.embed(tokens))
