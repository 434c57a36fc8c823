"""``maxent sweep``: methods x seeds x tasks x budgets of robust-RL training as resumable run
directories, trained and then scored on an uncertainty mesh and against every adversarial method's
adversary, as Ray tasks (one worker per core on this machine, or a cluster with ``--address``) or,
without Ray, the same plan sequentially in this process; then one report: CSVs, a summary table,
heatmaps, and rliable aggregates (Agarwal et al., NeurIPS 2021: IQM with stratified-bootstrap 95%
CIs, probability of improvement).

The protocol is RRLS's (Zouitine et al. 2024; :mod:`maxent.envs.uncertainty`) for the mesh and
QARL's (Reddi et al., ICLR 2024) for the adversary; a method is any registered algorithm that acts
on continuous-control tasks (``sac``, ``qarl``, ``rarl``: ``control`` in
:mod:`maxent.agents.registry`) or ``dr`` (SAC trained with domain randomisation over the task's
uncertainty set). Every run gets the same env-step budget (for QARL/RARL both players' phases
count, as in the paper).

Ray: ``ray.init()`` on this machine with one CPU per run (``workers``), or ``--address`` to join a
running cluster, whose nodes need maxent installed and ``root`` on a filesystem they all share
(checkpoints are how runs resume). Without Ray (``pip install 'maxent[ray]'``) the same plan runs in
this process, one run after another, with the same directories, so either can resume the other.

Layout of ``root``::

    sweep.json                         what this sweep is (refused when a re-run differs)
    <task>/<method>/s<seed>-<budget>/  an ordinary run directory: model/ checkpoint, logs,
                                       run.json (its spec), done.json (once trained),
                                       eval-<hash>.json (scores, cached per evaluation setting)
    report/                            runs.csv, cells.csv, summary.md/.csv, aggregates.json,
                                       heatmaps-*.png, rliable-*.png, probability_of_improvement-*.png

A re-run of the same command skips finished runs, resumes killed ones from their last checkpoint
and re-uses cached scores, so a sweep survives killed workers, preempted nodes and Ctrl-C.

Config file (TOML, or YAML when PyYAML is installed); every key is optional::

    methods = ["qarl", "rarl", "sac", "dr"]
    tasks = ["InvertedPendulum-v5"]
    seeds = 5                      # or a list [0, 1, 2, 3, 4]
    budgets = [20000]
    root = "runs/sweep"
    [common]                       # fields of every method's config that has them
    hidden_sizes = [256, 256]
    [qarl]                         # a method's config fields (rarl: RARLConfig, sac/dr: SACConfig)
    max_force = 5.0
    [uncertainty]                  # task -> uncertainty set (DR training and the mesh)
    "InvertedPendulum-v5" = "invertedpendulum-2d"

Files: :mod:`~maxent.cli.sweep.spec` (the config, plan and manifest), :mod:`~maxent.cli.sweep.backends`
(training and scoring, Ray and sequential), :mod:`~maxent.cli.sweep.report` (CSVs, summary, plots)
and :mod:`~maxent.cli.sweep.command` (:func:`run_sweep` and ``maxent sweep``).
"""

from maxent.cli.sweep.backends import evaluate_run, make_env, train_run
from maxent.cli.sweep.command import REPORT_DIR, SweepResult, build_parser, run_sweep, sweep_main
from maxent.cli.sweep.report import stratified_bootstrap, write_report
from maxent.cli.sweep.spec import (BACKENDS, LABELS, METHODS, SCORES, SweepConfig, SweepError,
                                   eval_spec, load_sweep_config, method_config, plan_runs,
                                   prepare_root, run_name, task_uncertainty)

__all__ = ["BACKENDS", "LABELS", "METHODS", "REPORT_DIR", "SCORES", "SweepConfig", "SweepError",
           "SweepResult", "build_parser", "eval_spec", "evaluate_run", "load_sweep_config",
           "make_env", "method_config", "plan_runs", "prepare_root", "run_name", "run_sweep",
           "stratified_bootstrap", "sweep_main", "task_uncertainty", "train_run", "write_report"]
