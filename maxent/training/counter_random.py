"""Counter-based random bits: a hash of (key, element index), computed with ordinary integer
tensor ops.

A dropout mask drawn from a ``torch.Generator`` costs one generator call per element, which on
CPU made DroQ's masks (two critics x batch x width, two passes, 20 updates per env step) cost as
much as the update itself. Here the generator draws only a key per mask; the bits come from
hashing each element's index with it, which a compiled update fuses into the layer that applies
the mask. Eager and compiled code compute the same integers exactly, so both draw alike and a
resumed run draws what an uninterrupted one would (the key comes from the agent's checkpointed
generator).

The hash is Chris Wellons' ``lowbias32`` (an integer finaliser of the murmur3 kind with searched
constants), applied twice with the two 32-bit halves of a 64-bit key mixed in between, so that
two keys give unrelated streams rather than shifted copies of one. Arithmetic stays in int64
without overflow: 32-bit products are split into 16-bit halves.
"""

from __future__ import annotations

import torch

__all__ = ["draw_key", "keep_mask", "uniform_bits"]

_LOW32 = 0xFFFFFFFF
_LOW16 = 0xFFFF


def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    """``x * c mod 2**32`` for ``x`` in ``[0, 2**32)``, exact in int64 (no product reaches 2**49)."""
    return ((x & _LOW16) * c + (((x >> 16) * (c & _LOW16)) << 16)) & _LOW32


def _lowbias32(x: torch.Tensor) -> torch.Tensor:
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def draw_key(generator: torch.Generator | None, device: torch.device | str, n: int = 1) -> torch.Tensor:
    """``n`` keys (an ``(n, 2)`` int64 tensor of 32-bit halves) from ``generator``."""
    return torch.randint(0, 2**32, (n, 2), generator=generator, device=device, dtype=torch.int64)


def uniform_bits(shape: tuple[int, ...] | torch.Size, key: torch.Tensor) -> torch.Tensor:
    """Independent-looking 32-bit integers (int64 in ``[0, 2**32)``) of ``shape``, a function of
    ``key`` (one row of :func:`draw_key`) and each element's position only."""
    index = torch.arange(int(torch.Size(shape).numel()), device=key.device, dtype=torch.int64).view(shape)
    return _lowbias32(_lowbias32(index ^ key[0]) ^ key[1])


def keep_mask(shape: tuple[int, ...] | torch.Size, key: torch.Tensor, rate: float) -> torch.Tensor:
    """A dropout mask of ``shape``: each element ``False`` (dropped) with probability ``rate``
    (to within 2**-32)."""
    return uniform_bits(shape, key) >= round(rate * 2**32)
