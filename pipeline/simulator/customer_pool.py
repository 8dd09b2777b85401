"""Customers from a learned P^c, generated in large pools so that a reset is an index.

Paper, Algorithm 2 line 5 (s ~ P^c) and T^c ("leave: s' ~ P^c"): every new session draws a
customer from the GAN-SD generator. One generator forward pass per `size` customers keeps
resets out of the per-step cost of the batched environments.
"""

from __future__ import annotations

import numpy as np
import torch

from pipeline.simulator.customers import CustomerCodec, Customers


class CustomerPool:
    def __init__(
        self,
        generator_net: torch.nn.Module,
        codec: CustomerCodec,
        size: int,
        generator: torch.Generator,
    ):
        if size < 1:
            raise ValueError("customer pool size must be positive")
        self.net, self.codec, self.size, self.generator = generator_net, codec, size, generator
        self._customers: Customers | None = None
        self._next = size

    def _refill(self) -> None:
        vectors = self.net.sample_vectors(self.size, self.generator).cpu().numpy()
        self._customers = self.codec.decode(vectors)
        self._next = 0

    def draw(self, n: int) -> Customers:
        """The next `n` customers (refilling the pool as often as needed)."""
        parts = []
        while n > 0:
            if self._next >= self.size:
                self._refill()
            take = min(n, self.size - self._next)
            parts.append(self._customers.take(np.arange(self._next, self._next + take)))
            self._next += take
            n -= take
        if len(parts) == 1:
            return parts[0]
        return Customers(
            *(np.concatenate(x) for x in zip(*(_fields(p) for p in parts), strict=True))
        )


def _fields(c: Customers) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return c.attrs, c.query, c.dense
