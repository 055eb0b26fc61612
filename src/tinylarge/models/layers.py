"""Custom layers of the zoo's models (plain PyTorch modules)."""

from __future__ import annotations

import torch
from torch import nn


class Unsqueeze(nn.Module):
    """Insert a dimension of size 1 (tabular ``(N, F)`` -> ``(N, 1, F)``)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.unsqueeze(self.dim)


class BasicBlock(nn.Module):
    """Two 3x3 conv + BN with an identity (or 1x1 conv) skip connection."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = (
            nn.Identity()
            if stride == 1 and cin == cout
            else nn.Conv2d(cin, cout, 1, stride=stride, bias=True)
        )
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        out = out + self.shortcut(x)
        result: torch.Tensor = self.relu2(out)
        return result
