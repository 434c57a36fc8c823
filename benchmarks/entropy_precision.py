"""Float32 accuracy and speed of the layer's categorical entropy against float64: the max-shifted
sum of non-negative terms (:func:`maxent.entropy.categorical_entropy`), the textbook
logsumexp(z) - sum softmax(z) z it replaced (reproduced inline), and torch's ``Categorical``;
then the same accuracy check for the layer's other entropies and log-probabilities.

    OMP_NUM_THREADS=1 python benchmarks/entropy_precision.py               # all three parts
    OMP_NUM_THREADS=1 python benchmarks/entropy_precision.py --skip-speed  # accuracy only
    OMP_NUM_THREADS=1 python benchmarks/entropy_precision.py --shape 2 512 49152 --rounds 5
    OMP_NUM_THREADS=1 python benchmarks/entropy_precision.py --skip-entropy-speed \\
        --log-prob-speed --shape 4 256 16384                            # the token log-prob

Errors: worst relative error over rows whose true entropy is >= 1e-6 nats, worst absolute error
over the rows below (target: <= 0.05 and <= 1e-7); the float64 reference is torch's own
float64 entropy, itself accurate to ~1e-12 absolutely at these scales. Speed: the methods
alternate round by round so that machine load hits all alike; medians, and the median of the
per-round ratios to the textbook form (or to log_softmax + gather).
"""

from __future__ import annotations

import argparse
import gc
import math
import statistics
import sys
import time
from collections.abc import Callable

import torch
from torch.distributions import Categorical

SCALES = (1.0, 5.0, 10.0, 50.0, 100.0)


def textbook_entropy(logits: torch.Tensor) -> torch.Tensor:
    """The replaced formula, as it was: logsumexp(z) - softmax(z) . z in float32."""
    z = logits.to(torch.promote_types(logits.dtype, torch.float32))
    z = z.clamp(min=torch.finfo(z.dtype).min)
    return torch.logsumexp(z, -1) - torch.linalg.vecdot(torch.softmax(z, -1), z)


def torch_entropy(logits: torch.Tensor) -> torch.Tensor:
    return Categorical(logits=logits.float()).entropy()


def error_table(rows: int, classes: int, seed: int) -> None:
    from maxent.entropy import categorical_entropy

    methods = {"maxent (new)": categorical_entropy, "textbook (old)": textbook_entropy,
               "torch Categorical f32": torch_entropy}
    print(f"categorical entropy, {rows} rows x {classes} logits per scale, float32 vs float64")
    print(f"{'logit scale':>22} " + " ".join(f"{s:>9g}" for s in SCALES))
    results = {name: ([], []) for name in methods}
    for scale in SCALES:
        g = torch.Generator().manual_seed(seed)
        z = torch.randn(rows, classes, generator=g) * scale
        ref = Categorical(logits=z.double()).entropy()
        big = ref >= 1e-6
        for name, fn in methods.items():
            err = (fn(z).double() - ref).abs()
            rel = (err[big] / ref[big]).max().item() if big.any() else float("nan")
            small = err[~big].max().item() if (~big).any() else float("nan")
            results[name][0].append(rel)
            results[name][1].append(small)
    for label, k in (("worst rel. err, H>=1e-6", 0), ("worst abs. err, H<1e-6", 1)):
        print(label)
        for name, vals in results.items():
            print(f"{name:>22} " + " ".join(f"{v:>9.2g}" for v in vals[k]))
    print()


def tanh_correction64(u: torch.Tensor) -> torch.Tensor:
    """log(1 - tanh(u)^2) = -2 log cosh u in float64, accurate at every |u|."""
    a = u.abs()
    small = -2 * torch.log1p(2 * torch.sinh(a.clamp(max=1) / 2) ** 2)
    return torch.where(a < 1, small, 2 * (math.log(2) - a - torch.log1p(torch.exp(-2 * a))))


def log_softmax_gather(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return torch.log_softmax(z, -1).gather(-1, t[..., None])[..., 0]


def other_functions(seed: int) -> None:
    """Float32 against float64 for the layer's other log-densities and entropies."""
    from maxent.entropy import squashed_gaussian_entropy, squashed_gaussian_log_prob
    from maxent.entropy.estimates import categorical_log_prob
    from maxent.entropy.semantic import semantic_entropy

    print("other functions, float32 against float64 at the same (float32) inputs")
    # Token log-probs, half the targets the argmax: ours and log_softmax(z).gather(t).
    for name, fn in (("categorical_log_prob", categorical_log_prob),
                     ("log_softmax gather", log_softmax_gather)):
        worst_rel, worst_abs = 0.0, 0.0
        g = torch.Generator().manual_seed(seed)
        for scale in SCALES:
            z = torch.randn(5000, 8, generator=g) * scale
            t = torch.where(torch.rand(5000, generator=g) < 0.5, z.argmax(-1),
                            torch.randint(0, 8, (5000,), generator=g))
            ref = log_softmax_gather(z.double(), t)
            err = (fn(z, t).double() - ref).abs()
            worst_abs = max(worst_abs, (err / (1 + ref.abs())).max().item())
            big = ref.abs() >= 1e-6
            worst_rel = max(worst_rel, (err[big] / ref[big].abs()).max().item())
        print(f"  token log-prob, {name:>20}: worst rel. err where |log p| >= 1e-6 "
              f"{worst_rel:.2g}, worst |err| / (1 + |log p|) {worst_abs:.2g}")
    g = torch.Generator().manual_seed(seed)
    # Squashed Gaussian log-prob: a signed sum, so its error is judged against the sum of the
    # terms' magnitudes (relative error near a zero crossing measures the sum, not the formula).
    worst = 0.0
    for scale in (1e-4, 1e-2, 1.0, 5.0, 20.0):
        mean = torch.randn(5000, 6, generator=g) * scale
        log_std = torch.rand(5000, 6, generator=g) * 6 - 5
        u = mean + log_std.exp() * torch.randn(5000, 6, generator=g)
        args64 = [a.double() for a in (mean, log_std, u)]
        ref = squashed_gaussian_log_prob(*args64)
        got = squashed_gaussian_log_prob(mean, log_std, u).double()
        noise = (args64[2] - args64[0]) * torch.exp(-args64[1])
        size = (0.5 * noise**2 + args64[1].abs() + 0.92 + tanh_correction64(args64[2]).abs())
        worst = max(worst, ((got - ref).abs() / size.sum(-1)).max().item())
    print(f"  squashed Gaussian log-prob: worst |err| / sum|terms| {worst:.2g}")
    # Its Monte-Carlo entropy, float64 reference on the same float32 draws.
    worst = 0.0
    for scale in (1e-4, 1.0, 20.0):
        mean = torch.randn(2000, 4, generator=g) * scale
        log_std = torch.rand(2000, 4, generator=g) * 6 - 5
        got = squashed_gaussian_entropy(mean, log_std, n_samples=16,
                                        generator=torch.Generator().manual_seed(1)).double()
        eps = torch.randn((16, 2000, 4), generator=torch.Generator().manual_seed(1)).double()
        corr = tanh_correction64(mean.double() + log_std.double().exp() * eps)
        gauss = log_std.double() + 0.5 + 0.5 * math.log(2 * math.pi)
        ref = gauss.sum(-1) + corr.sum(-1).mean(0)
        size = gauss.abs().sum(-1) + corr.abs().sum(-1).mean(0)
        worst = max(worst, ((got - ref).abs() / size).max().item())
    print(f"  squashed Gaussian entropy (Monte Carlo, same draws): worst |err| / sum|terms| "
          f"{worst:.2g}")
    # Semantic entropy near collapse: 3 answers agree, a 4th has weight e^-d; exact value.
    worst = 0.0
    for d in range(1, 700, 7):
        logw = torch.tensor([0.0, 0.0, 0.0, -float(d)], dtype=torch.float64)
        q = math.exp(-d) / (3 + math.exp(-d))  # p(b); p(a) = 1 - q
        exact = q * (d + math.log(3 + math.exp(-d))) + (1 - q) * math.log1p(math.exp(-d) / 3)
        got = semantic_entropy(["a", "a", "a", "b"], logw, log_weights=True)
        worst = max(worst, abs(got - exact) / exact)
    print(f"  semantic entropy (plug-in, float64, one answer of weight e^-d, d < 700): "
          f"worst rel. err {worst:.2g}")
    print()


def _time(methods: dict[str, Callable], x0: torch.Tensor, rounds: int, base: str) -> None:
    for mode in ("forward (no grad)", "forward + backward"):
        times: dict[str, list[float]] = {name: [] for name in methods}
        for r in range(rounds + 1):  # round 0 warms up
            for name, fn in methods.items():
                x = x0.detach().requires_grad_(mode != "forward (no grad)")
                gc.collect()
                start = time.perf_counter()
                if x.requires_grad:
                    fn(x).sum().backward()
                else:
                    with torch.no_grad():
                        fn(x)
                if r:
                    times[name].append(time.perf_counter() - start)
                del x
        print(f"  {mode}")
        for name, ts in times.items():
            ratio = statistics.median(t / b for t, b in zip(ts, times[base]))
            print(f"  {name:>26}: median {statistics.median(ts):7.3f} s, {ratio:5.2f} x {base}")


def speed(shape: tuple[int, ...], rounds: int, chunk: int | None) -> None:
    from maxent.entropy import categorical_entropy

    print(f"speed, entropy: bf16 logits {tuple(shape)}, {torch.get_num_threads()} thread(s), "
          f"chunk_size={chunk}")
    logits = (torch.randn(shape, generator=torch.Generator().manual_seed(0)) * 3).bfloat16()
    _time({"maxent (new)": lambda x: categorical_entropy(x, chunk_size=chunk),
           "textbook (old)": textbook_entropy,
           "torch Categorical f32": torch_entropy}, logits, rounds, "textbook (old)")


def log_prob_speed(shape: tuple[int, ...], rounds: int) -> None:
    """Token log-probs alone, and with the entropy as a language-model forward takes both."""
    from maxent.entropy import categorical_entropy
    from maxent.entropy.estimates import categorical_log_prob

    print(f"speed, token log-prob: float32 logits {tuple(shape)}, "
          f"{torch.get_num_threads()} thread(s)")
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(shape, generator=g) * 3
    t = torch.randint(0, shape[-1], shape[:-1], generator=g)
    _time({"categorical_log_prob": lambda x: categorical_log_prob(x, t),
           "log_softmax gather": lambda x: log_softmax_gather(x, t),
           "both + new entropy": lambda x: categorical_log_prob(x, t) + categorical_entropy(x),
           "both + old entropy": lambda x: log_softmax_gather(x, t) + textbook_entropy(x)},
          logits, rounds, "log_softmax gather")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=5000, help="rows per scale (default 5000)")
    parser.add_argument("--classes", type=int, default=8, help="logits per row (default 8)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shape", type=int, nargs="+", default=[8, 512, 49152],
                        help="logits shape of the speed tests (default 8 512 49152)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds (default 3)")
    parser.add_argument("--chunk-size", type=int, default=None,
                        help="chunk_size for the new entropy in the speed test")
    parser.add_argument("--skip-speed", action="store_true", help="accuracy tables only")
    parser.add_argument("--skip-other", action="store_true", help="no other-function checks")
    parser.add_argument("--skip-entropy-speed", action="store_true",
                        help="no entropy speed test")
    parser.add_argument("--log-prob-speed", action="store_true",
                        help="also time the token log-prob against log_softmax + gather")
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # progress shows when piped to a file
    error_table(args.rows, args.classes, args.seed)
    if not args.skip_other:
        other_functions(args.seed)
    if args.skip_speed:
        return
    if not args.skip_entropy_speed:
        speed(tuple(args.shape), args.rounds, args.chunk_size)
    if args.log_prob_speed:
        log_prob_speed(tuple(args.shape), args.rounds)


if __name__ == "__main__":
    main()
