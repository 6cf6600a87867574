"""Small classifiers for the built-in data sets.

Both take ``input_shape`` and ``num_classes``, which the framework fills in from the
data module; a user's model may take them too, or set its sizes itself.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn


class MLP(nn.Module):
    """A multi-layer perceptron on flattened inputs.

    Args:
        input_shape: Shape of one sample (flattened).
        num_classes: Number of output logits.
        hidden: Width of each hidden layer.
        dropout: Dropout after each hidden layer.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        *,
        hidden: Sequence[int] = (128, 128),
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(input_shape)
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU()]
            if dropout:
                layers.append(nn.Dropout(dropout))
            width = size
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class CNN1D(nn.Module):
    """A 1-D convolutional net for signals such as MNIST-1D.

    Args:
        input_shape: ``(length,)`` or ``(channels, length)``.
        num_classes: Number of output logits.
        channels: Output channels of each convolution.
        kernel_size: Kernel size of every convolution.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        *,
        channels: Sequence[int] = (25, 25, 25),
        kernel_size: int = 5,
    ) -> None:
        super().__init__()
        in_channels, length = (1, input_shape[0]) if len(input_shape) == 1 else input_shape
        in_channels0 = in_channels
        convs: list[nn.Module] = []
        for i, out in enumerate(channels):
            # The first convolution strides by 2: MNIST-1D signals are smooth.
            stride = 2 if i == 0 else 1
            convs += [nn.Conv1d(in_channels, out, kernel_size, stride, kernel_size // 2), nn.ReLU()]
            in_channels = out
        self.features = nn.Sequential(*convs)
        with torch.no_grad():
            flat = self.features(torch.zeros(1, in_channels0, length)).numel()
        self.head = nn.Linear(flat, num_classes)
        self._unsqueeze = len(input_shape) == 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._unsqueeze:
            x = x.unsqueeze(1)
        return self.head(self.features(x).flatten(1))


class TinyTransformer(nn.Module):
    """One pre-norm transformer block over a short sequence of tokens, read out at an appended
    ``=`` token: the classic model of delayed generalisation on modular arithmetic.

    Args:
        input_shape: ``(tokens, features)``, e.g. one-hot operands (``data=modadd``); a flat
            ``(length,)`` sample is cut into at most ``max_tokens`` patches (zero-padded).
        num_classes: Number of output logits.
        width: Model width ``d``.
        heads: Attention heads (must divide ``width``).
        max_tokens: Most tokens a flat sample is cut into (attention is quadratic in them).
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        *,
        width: int = 32,
        heads: int = 4,
        max_tokens: int = 16,
    ) -> None:
        super().__init__()
        if len(input_shape) == 1:
            self.patch = math.ceil(input_shape[0] / max_tokens)
            tokens, features = math.ceil(input_shape[0] / self.patch), self.patch
        else:
            self.patch = 0
            tokens, features = input_shape
        # A linear map of (normalised) one-hot rows is an embedding table plus a shift.
        self.embed = nn.Linear(features, width)
        self.equals = nn.Parameter(torch.randn(1, 1, width) * 0.02)
        self.position = nn.Parameter(torch.randn(1, tokens + 1, width) * 0.02)
        self.block = nn.TransformerEncoderLayer(
            width, heads, 4 * width, dropout=0.0, batch_first=True, norm_first=True
        )
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.patch:
            pad = (-x.shape[1]) % self.patch
            x = nn.functional.pad(x, (0, pad)).view(len(x), -1, self.patch)
        h = torch.cat([self.embed(x), self.equals.expand(len(x), 1, -1)], dim=1) + self.position
        return self.head(self.block(h)[:, -1])
