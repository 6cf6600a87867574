"""A model over integer token ids, for the ``data=file`` tests: embedding, mean over positions, linear."""

from __future__ import annotations

import torch
from torch import nn


class TokenBag(nn.Module):
    """Embeds each token id, averages over the sequence, scores the classes.

    ``vocab_size`` and ``num_classes`` come from the data module (the largest id and label
    plus one) unless the config sets them.
    """

    def __init__(self, vocab_size: int, num_classes: int, dim: int = 16) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(tokens).mean(dim=1))
