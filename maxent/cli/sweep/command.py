"""``maxent sweep``: plan, train, score and report a sweep (:func:`run_sweep`), and its command
line; a re-run of the same command finishes what a killed one left."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from maxent.cli.sweep.backends import choose_backend, run_ray, run_sequential
from maxent.cli.sweep.report import write_report
from maxent.cli.sweep.spec import (BACKENDS, METHODS, SweepConfig, SweepError, eval_spec,
                                   load_sweep_config, plan_runs, prepare_root)

__all__ = ["REPORT_DIR", "SweepResult", "build_parser", "run_sweep", "sweep_main"]

REPORT_DIR = "report"


@dataclass
class SweepResult:
    """What :func:`run_sweep` did."""

    root: Path
    backend: str
    trained: dict[str, dict]
    scored: dict[str, dict]
    failed: dict[str, str]
    files: dict[str, Path]
    aggregates: dict[str, Any]


def run_sweep(cfg: SweepConfig, verbose: bool = True, log: Callable[[str], None] | None = None,
              report: bool = True) -> SweepResult:
    """Plan, train, score and (with ``report``) report a sweep (see the module docstring);
    resumable: call it again with the same config to finish what a killed call left."""
    log = log or (print if verbose else (lambda _line: None))
    plan = plan_runs(cfg)
    backend = choose_backend(cfg)
    root = prepare_root(cfg, plan)
    evals = [eval_spec(cfg, spec, plan) for spec in plan]
    log(f"sweep {root}: {len(plan)} runs ({len(cfg.methods)} methods x {len(cfg.tasks)} tasks x "
        f"{len(cfg.seeds)} seeds x {len(cfg.budgets)} budgets) on {backend}")
    start = time.perf_counter()
    if backend == "ray":
        trained, scored, failed = run_ray(cfg, plan, evals, log)
    else:
        trained, scored, failed = run_sequential(plan, evals, log)
    files, aggregates = {}, {}
    if report:
        files, aggregates = write_report(cfg, plan, scored, root / REPORT_DIR, trained=trained,
                                         verbose=verbose)
    log(f"sweep took {time.perf_counter() - start:.1f} s; report in {root / REPORT_DIR}")
    if failed:
        log(f"{len(failed)} run(s) did not finish: {', '.join(sorted(failed))}; run the same command "
            "again to resume them")
    return SweepResult(root, backend, trained, scored, failed, files, aggregates)



def _parse_value(text: str) -> Any:
    """A --set value read as TOML (numbers, booleans, [lists], "strings"), else the bare string."""
    from maxent.cli.config_files import parse_value

    try:
        return parse_value(text, f"--set value {text[:40]!r}{'...' if len(text) > 40 else ''}")
    except ValueError as err:
        raise SystemExit(f"maxent sweep: {err}") from None


def build_parser() -> argparse.ArgumentParser:
    from maxent.cli.flags import OneLineArgumentParser

    parser = OneLineArgumentParser(
        prog="maxent sweep",
        description="Train methods x seeds x tasks x budgets as resumable run directories (Ray "
                    "tasks, or sequentially without Ray), score them on an uncertainty mesh and "
                    "against each adversarial method's adversary, and write the report. Running "
                    "the same command again skips finished runs and resumes killed ones.")
    parser.add_argument("config", nargs="?", type=Path, help="sweep file (.toml, .yaml/.yml)")
    parser.add_argument("--methods", nargs="+", help=f"of {list(METHODS)}")
    parser.add_argument("--tasks", nargs="+", help="Gymnasium MuJoCo ids")
    parser.add_argument("--seeds", nargs="+", type=int, help="the seeds, e.g. 0 1 2")
    parser.add_argument("--n-seeds", type=int, help="seeds 0..N-1")
    parser.add_argument("--budgets", nargs="+", help="env steps per run, e.g. 2e4")
    parser.add_argument("--root", help="the sweep's directory")
    parser.add_argument("--backend", choices=BACKENDS, help="default auto: Ray when installed")
    parser.add_argument("--address", help="Ray cluster address ('auto' or host:port)")
    parser.add_argument("--workers", type=int, help="Ray CPUs on this machine (default: cores)")
    parser.add_argument("--retries", type=int, help="Ray retries of a task whose worker died")
    parser.add_argument("--points-per-dim", type=int, help="mesh values per parameter (>= 2)")
    parser.add_argument("--episodes", type=int, help="episodes per mesh point")
    parser.add_argument("--adversary-episodes", type=int, help="episodes per adversary and nominal")
    parser.add_argument("--max-episode-steps", type=int, help="time limit of episodes")
    parser.add_argument("--checkpoint-every", help="env steps between checkpoints")
    parser.add_argument("--set", action="append", default=[], metavar="[TABLE.]FIELD=VALUE",
                        help="any field, e.g. --set qarl.max_force=5 --set common.hidden_sizes=[64,64]")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and stop")
    parser.add_argument("--quiet", action="store_true", help="print only the summary")
    return parser


def sweep_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``maxent sweep``: 0 when every run was trained and scored, 1 otherwise."""
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    overrides: dict[str, Any] = {}
    for name in ("methods", "tasks", "budgets", "root", "backend", "address", "workers", "retries",
                 "points_per_dim", "episodes", "adversary_episodes", "max_episode_steps",
                 "checkpoint_every"):
        value = getattr(args, name)
        if value is not None:
            overrides[name] = value
    if args.seeds is not None and args.n_seeds is not None:
        raise SystemExit("maxent sweep: give --seeds or --n-seeds, not both")
    if args.seeds is not None:
        overrides["seeds"] = args.seeds
    if args.n_seeds is not None:
        overrides["seeds"] = args.n_seeds
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SystemExit(f"maxent sweep: --set {item!r} must be [TABLE.]FIELD=VALUE")
        overrides[key.strip()] = _parse_value(value.strip())
    try:
        cfg = load_sweep_config(args.config, overrides)
        if args.dry_run:
            plan = plan_runs(cfg)
            print(f"{len(plan)} runs on {choose_backend(cfg)} into {Path(cfg.root).resolve()}:")
            for spec in plan:
                print(f"  {spec['name']}")
            return 0
        result = run_sweep(cfg, verbose=not args.quiet)
        if args.quiet and result.files.get("summary_md"):
            print(result.files["summary_md"].read_text(), end="")
    except SweepError as err:
        raise SystemExit(f"maxent sweep: {err}") from None
    return 1 if result.failed else 0

