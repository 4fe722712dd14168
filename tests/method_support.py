"""Helpers for the method and loss tests: tiny logits, exact comparison, a built method."""

from __future__ import annotations

import math
import statistics
from typing import Any

import torch

from ckd_tune.config import TrainConfig
from ckd_tune.methods import Method, total

Z_S = [[1.0, 2.0, 3.0], [1.0, 0.0, 0.0]]
Z_T = [[0.5, 2.5, 1.0], [3.0, -1.0, 0.0]]
Y = [2, 0]


def t64(rows: list, requires_grad: bool = False) -> torch.Tensor:
    """A float64 tensor of ``rows``."""
    return torch.tensor(rows, dtype=torch.float64, requires_grad=requires_grad)


def y64(labels: list[int]) -> torch.Tensor:
    """Class-index labels."""
    return torch.tensor(labels, dtype=torch.long)


def softmax(row: list[float], temp: float = 1.0) -> list[float]:
    """Softmax of ``row / temp`` with plain ``math`` (hand-computed expectations)."""
    exps = [math.exp(v / temp) for v in row]
    total = sum(exps)
    return [e / total for e in exps]


def ce(rows: list[list[float]], labels: list[int]) -> float:
    """Batch-mean cross-entropy with plain ``math``."""
    return sum(-math.log(softmax(r)[y]) for r, y in zip(rows, labels, strict=True)) / len(rows)


def kl(p: list[float], q: list[float]) -> float:
    """KL(p || q) = sum_k p_k log(p_k / q_k)."""
    return sum(pk * math.log(pk / qk) for pk, qk in zip(p, q, strict=True))


def zscore(rows: list[list[float]]) -> list[list[float]]:
    """Each row standardized with plain ``statistics``: ``(z - mean) / (sample std + 1e-7)``."""
    return [[(v - statistics.fmean(r)) / (statistics.stdev(r) + 1e-7) for v in r] for r in rows]


def close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """``torch.testing.assert_close`` without its slow first import: same shape, same values."""
    assert actual.shape == expected.shape
    assert torch.allclose(actual, expected, rtol=1e-9, atol=1e-12), (actual, expected)


def logits(
    seed: int = 0, batch: int = 4, num_logits: int = 3
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Float64 student logits (with grad), teacher logits (with grad, to catch leaks), labels."""
    gen = torch.Generator().manual_seed(seed)
    z_s = torch.randn(batch, num_logits, generator=gen, dtype=torch.float64, requires_grad=True)
    z_t = 2 * torch.randn(batch, num_logits, generator=gen, dtype=torch.float64)
    z_t.requires_grad_(True)
    if num_logits == 1:
        y = torch.randn(batch, generator=gen, dtype=torch.float64)
    else:
        y = torch.randint(0, num_logits, (batch,), generator=gen)
    return z_s, z_t, y


def method(name: str, epochs: int = 4, **params: Any) -> Method:
    """Method ``name`` built from a config with ``epochs`` and flat ``params``."""
    return TrainConfig.from_flat({"method": name, "epochs": epochs, **params}).build_method()


def loss(
    m: Method,
    z_s: torch.Tensor,
    z_t: torch.Tensor | None,
    y: torch.Tensor,
    progress: float,
) -> torch.Tensor:
    """The batch loss the loop would compute at ``progress``: the method's weighted terms."""
    return total(m.loss_terms(z_s, z_t, y, m.schedule(progress)))
