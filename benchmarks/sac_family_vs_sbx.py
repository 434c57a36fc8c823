"""maxent's CrossQ, TQC and DroQ presets against SBX's (SB3's JAX twin) same algorithms: env-steps/s.

Same env, seed, network sizes and hyperparameters for both libraries (the preset's; the critic width
can be overridden for both with ``--critic-width``, since the published widths, CrossQ's 2048-wide
critics above all, make each update slow on a CPU). Each run is a fresh process with one compute
thread (``OMP_NUM_THREADS=1``; torch ``torch_threads=1``; XLA's single-threaded Eigen and
``intra_op_parallelism_threads=1``), and the libraries alternate run by run, algorithm by
algorithm, so that machine noise hits both alike. maxent's update runs at ``--precision`` (default
``auto``: bf16 autocast where the CPU has native bf16, SAC's default). maxent compiles its update
(``--compile``, default ``true``: before the first update, from the machine's inductor cache) and
SBX JIT-compiles its own; both are in the end-to-end time and neither in the steady time (env step
``--steady-from`` to the end). Prints each run and the maxent / SBX ratios (medians over
``--rounds``).

    OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/sac_family_vs_sbx.py --env Pendulum-v1 --critic-width 256 \\
        --steps 900 --learning-starts 500 --steady-from 650 --rounds 2
    OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/sac_family_vs_sbx.py --env Pendulum-v1 --algos crossq tqc \\
        --steps 400 --learning-starts 300 --steady-from 350   # the published widths: few steps, they are slow

Mapping to SBX: ``crossq`` -> ``sbx.CrossQ`` (BatchRenorm in actor and critics, Adam beta1 0.5,
lr 1e-3, policy delay 3, actor 256x256, critics ``qf`` of the preset's width); ``tqc`` ->
``sbx.TQC`` (25 quantiles per critic, 2 dropped per critic, critics 3 layers; two critics in both
libraries, as SBX's TQC always builds two where the preset has five); ``droq`` ->
``sbx.SAC`` with ``dropout_rate=0.01``, ``layer_norm=True``, 20 gradient steps per env step and
policy delay 20 (SBX's DroQ configuration).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import time

ALGORITHMS = ("crossq", "tqc", "droq")
LIBRARIES = ("maxent", "sbx")
SBX_TQC_CRITICS = 2  # sbx.TQC builds exactly two quantile critics (qf1, qf2)
XLA_ONE_THREAD = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _sac_peers import run_worker  # noqa: E402
from sac_vs_sb3 import _clock_callback  # noqa: E402  (the same clock, both benchmarks)


def critic_sizes(algo: str, width: int | None) -> tuple[int, ...]:
    """The critics' hidden widths: the preset's, or ``width`` at the preset's depth."""
    from maxent.agents.sac import SACConfig

    cfg = SACConfig(preset=algo)
    sizes = cfg.critic_hidden_sizes or cfg.hidden_sizes
    return sizes if width is None else (width,) * len(sizes)


def build(lib: str, algo: str, args: argparse.Namespace):
    """One library's model of ``algo`` with the preset's sizes and hyperparameters."""
    from maxent.agents.sac import SACConfig

    cfg = SACConfig(preset=algo)
    qf = list(critic_sizes(algo, args.critic_width))
    common = {"learning_starts": args.learning_starts, "batch_size": cfg.batch_size, "seed": args.seed}
    if lib == "maxent":
        from maxent.agents import SAC

        compile_ = {"true": True, "false": False, "auto": "auto"}[args.compile]
        # SBX's TQC has two quantile critics whatever n_critics says (n_critics only sizes its
        # truncation), so the like-for-like maxent TQC has two as well (a field given wins over
        # the preset).
        fields = {"preset": algo, "critic_hidden_sizes": tuple(qf)}
        if algo == "tqc":
            fields["n_critics"] = SBX_TQC_CRITICS
        return SAC(args.env, compile=compile_, precision=args.precision, torch_threads=1, log_interval=10**9,
                   **fields, **common)
    import sbx

    net_arch = {"pi": list(cfg.hidden_sizes), "qf": qf}
    if algo == "crossq":
        return sbx.CrossQ("MlpPolicy", args.env, learning_rate=cfg.learning_rate, policy_delay=cfg.policy_delay,
                          policy_kwargs={"net_arch": net_arch}, verbose=0, **common)
    if algo == "tqc":
        return sbx.TQC("MlpPolicy", args.env, learning_rate=cfg.learning_rate,
                       top_quantiles_to_drop_per_net=cfg.top_quantiles_to_drop,
                       policy_kwargs={"net_arch": net_arch, "n_quantiles": cfg.n_quantiles,
                                      "n_critics": SBX_TQC_CRITICS}, verbose=0, **common)
    return sbx.SAC("MlpPolicy", args.env, learning_rate=cfg.learning_rate, gradient_steps=cfg.gradient_steps,
                   policy_delay=cfg.policy_delay, verbose=0,
                   policy_kwargs={"net_arch": net_arch, "dropout_rate": cfg.critic_dropout, "layer_norm": True},
                   **common)


def worker(args: argparse.Namespace) -> dict:
    """One library and algorithm in this process: end-to-end and steady env-steps/s."""
    model = build(args.worker, args.algo, args)
    clock = _clock_callback(args.worker, args.steady_from)
    start = time.perf_counter()
    model.learn(args.steps, callback=clock)
    end = time.perf_counter()
    return {"end_to_end": args.steps / (end - start), "steady": (args.steps - args.steady_from) / (end - clock.time)}


def run(lib: str, algo: str, args: argparse.Namespace) -> dict:
    env = {**os.environ, "MUJOCO_GL": "disable", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "XLA_FLAGS": XLA_ONE_THREAD, "JAX_PLATFORMS": "cpu"}
    cmd = [__file__, "--worker", lib, "--algo", algo, "--env", args.env, "--seed", str(args.seed),
           "--steps", str(args.steps), "--learning-starts", str(args.learning_starts),
           "--steady-from", str(args.steady_from), "--compile", args.compile, "--precision", args.precision]
    if args.critic_width is not None:
        cmd += ["--critic-width", str(args.critic_width)]
    return run_worker(cmd, env, f"{lib} {algo}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="Pendulum-v1")
    parser.add_argument("--algos", nargs="+", default=list(ALGORITHMS), choices=list(ALGORITHMS))
    parser.add_argument("--critic-width", type=int, default=None,
                        help="critic width for both libraries (default: each preset's published width)")
    parser.add_argument("--steps", type=int, default=2500, help="env steps per run")
    parser.add_argument("--learning-starts", type=int, default=500)
    parser.add_argument("--steady-from", type=int, default=None,
                        help="env step from which the steady speed is timed (default: halfway from "
                             "learning-starts to the end)")
    parser.add_argument("--rounds", type=int, default=1, help="alternating runs of each library and algorithm")
    parser.add_argument("--compile", choices=["true", "false", "auto"], default="true",
                        help="maxent's SACConfig.compile")
    parser.add_argument("--precision", choices=["auto", "float32", "bfloat16"], default="auto",
                        help="maxent's SACConfig.precision (auto: bf16 where the CPU has native bf16)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--worker", choices=list(LIBRARIES), help=argparse.SUPPRESS)
    parser.add_argument("--algo", choices=list(ALGORITHMS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.steady_from is None:
        args.steady_from = (args.learning_starts + args.steps) // 2
    if not args.learning_starts < args.steady_from < args.steps:
        raise SystemExit(f"--steady-from {args.steady_from} must lie inside (--learning-starts "
                         f"{args.learning_starts}, --steps {args.steps})")
    if args.worker is not None:
        print(json.dumps(worker(args)))
        return
    if importlib.util.find_spec("sbx") is None:
        raise SystemExit("sbx is not installed; pip install sbx-rl (the 'bench' extra) to compare against it")

    from maxent.agents.sac import SACConfig

    results: dict[tuple[str, str], list[dict]] = {}
    load_start = os.getloadavg()[0]  # 1-minute load average: the machine's other work
    for round_ in range(args.rounds):
        for algo in args.algos:
            for lib in LIBRARIES:  # alternate the libraries within each algorithm
                r = run(lib, algo, args)
                results.setdefault((algo, lib), []).append(r)
                print(f"[round {round_}] {algo:6s} {lib:6s} {r['end_to_end']:8.1f} env-steps/s end to end, "
                      f"{r['steady']:8.1f} steady", flush=True)
    import torch

    from maxent.training.fastpath import resolve_precision

    print(f"\n{args.env}, {args.steps} steps (learning from {args.learning_starts}, steady from "
          f"{args.steady_from}), one thread each, maxent compile={args.compile} precision={args.precision} "
          f"({resolve_precision(args.precision, torch.device('cpu'))} here), rounds {args.rounds}, "
          f"load average {load_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end")
    for algo in args.algos:
        med = {lib: {k: statistics.median(r[k] for r in results[(algo, lib)]) for k in ("end_to_end", "steady")}
               for lib in LIBRARIES}
        print(f"  {algo:6s} critics {'x'.join(map(str, critic_sizes(algo, args.critic_width)))} "
              f"({SBX_TQC_CRITICS if algo == 'tqc' else SACConfig(preset=algo).n_critics} of them): "
              f"maxent {med['maxent']['steady']:.1f} / SBX {med['sbx']['steady']:.1f} steady = "
              f"{med['maxent']['steady'] / med['sbx']['steady']:.2f}x; end to end "
              f"{med['maxent']['end_to_end']:.1f} / {med['sbx']['end_to_end']:.1f} = "
              f"{med['maxent']['end_to_end'] / med['sbx']['end_to_end']:.2f}x")


if __name__ == "__main__":
    main()
