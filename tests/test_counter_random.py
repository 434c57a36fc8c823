"""The counter-based random bits behind the SAC family's dropout masks."""

import math

import numpy as np
import pytest
import torch

from maxent.training.counter_random import _mul32, draw_key, keep_mask, uniform_bits


def test_split_multiply_is_exact_mod_2_32():
    rng = np.random.default_rng(0)
    xs = [0, 1, 2**16 - 1, 2**16, 2**31, 2**32 - 1, *rng.integers(0, 2**32, 200).tolist()]
    for c in (0x7FEB352D, 0x846CA68B, 2**32 - 1):
        got = _mul32(torch.tensor(xs, dtype=torch.int64), c).tolist()
        assert got == [(x * c) % 2**32 for x in xs]


def test_bits_are_uniform_and_cover_32_bits():
    key = draw_key(torch.Generator().manual_seed(0), "cpu")[0]
    bits = uniform_bits((1 << 18,), key)
    assert bits.min() >= 0 and bits.max() < 2**32 and bits.max() >= 2**31
    # Top byte: chi-square over 256 cells, 255 degrees of freedom (mean 255, sd ~22.6).
    counts = torch.bincount(bits >> 24, minlength=256).double()
    expected = bits.numel() / 256
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 255 + 6 * math.sqrt(2 * 255)
    # Low byte too: a weak hash leaves the low bits of consecutive counters patterned.
    counts = torch.bincount(bits & 0xFF, minlength=256).double()
    assert float(((counts - expected) ** 2 / expected).sum()) < 255 + 6 * math.sqrt(2 * 255)


def test_neighbours_and_other_keys_are_uncorrelated():
    gen = torch.Generator().manual_seed(1)
    n = 1 << 18
    a = uniform_bits((n,), draw_key(gen, "cpu")[0]).double() / 2**32
    b = uniform_bits((n,), draw_key(gen, "cpu")[0]).double() / 2**32
    limit = 6 / math.sqrt(n)
    assert abs(float(torch.corrcoef(torch.stack([a[:-1], a[1:]]))[0, 1])) < limit
    assert abs(float(torch.corrcoef(torch.stack([a, b]))[0, 1])) < limit
    # Keys that differ in one bit of either half still give unrelated streams.
    key = draw_key(gen, "cpu")[0]
    for flipped in (key ^ torch.tensor([1, 0]), key ^ torch.tensor([0, 1 << 31])):
        c = uniform_bits((n,), key).double() / 2**32
        d = uniform_bits((n,), flipped).double() / 2**32
        assert abs(float(torch.corrcoef(torch.stack([c, d]))[0, 1])) < limit


@pytest.mark.parametrize("rate", [0.01, 0.2, 0.5])
def test_keep_mask_drops_at_the_rate_and_is_a_function_of_the_key(rate):
    gen = torch.Generator().manual_seed(2)
    key = draw_key(gen, "cpu")[0]
    shape = (2, 512, 256)
    mask = keep_mask(shape, key, rate)
    n = mask.numel()
    dropped = n - int(mask.sum())
    assert abs(dropped - rate * n) < 6 * math.sqrt(n * rate * (1 - rate))
    assert torch.equal(mask, keep_mask(shape, key.clone(), rate))
    assert not torch.equal(mask, keep_mask(shape, draw_key(gen, "cpu")[0], rate))
    # The two stacked critics get different masks from one key.
    assert not torch.equal(mask[0], mask[1])


def test_keys_come_from_the_generator_stream():
    a, b = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(draw_key(a, "cpu", 3), draw_key(b, "cpu", 3))
    keys = draw_key(a, "cpu", 4)
    assert keys.shape == (4, 2) and keys.dtype == torch.int64
    assert int(keys.min()) >= 0 and int(keys.max()) < 2**32


@pytest.mark.slow
def test_compiled_masks_equal_eager_masks():
    key = draw_key(torch.Generator().manual_seed(4), "cpu")[0]
    h = torch.randn(2, 64, 96)

    def apply(h, key):
        return h * keep_mask(h.shape, key, 0.1) / 0.9

    assert torch.equal(torch.compile(apply)(h, key), apply(h, key))
