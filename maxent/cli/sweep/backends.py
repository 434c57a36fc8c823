"""Where a sweep's work happens: training one run (the run lifecycle of
:mod:`maxent.training.run`, resumable from its checkpoint), scoring one trained run on its task's
uncertainty mesh and against every adversary, and the two ways of running the plan: Ray tasks or
sequentially in this process."""

from __future__ import annotations

import functools
import json
import math
import os
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from maxent.training.logging import rate_text
from maxent.cli.sweep.spec import (SweepConfig, SweepError, eval_key, is_adversarial, method_algorithm,
                                   write_json)
from maxent.training.run import RunHooks, RunSpec, checkpoint_dir
from maxent.training.run import train as train_lifecycle

__all__ = ["choose_backend", "evaluate_run", "make_env", "run_ray", "run_sequential", "train_run",
           "trained_line"]


# --------------------------------------------------------------------------- one run


def make_env(task: str, max_episode_steps: int | None = None,
             domain_randomization: str | None = None) -> Any:
    """A run's training env (picklable as a ``functools.partial`` for Ray)."""
    from maxent.envs.uncertainty import DomainRandomization
    from maxent.training.vector import make_env as make_task

    kwargs = {} if max_episode_steps is None else {"max_episode_steps": max_episode_steps}
    env = make_task(task, **kwargs)
    return env if domain_randomization is None else DomainRandomization(env, domain_randomization)


def _train_env(spec: dict[str, Any]) -> Any:
    """An env id when one describes the env, else a constructor. Either resumes exactly: the
    checkpoint records the built env's spec (id, time limit, wrappers), which the resumed run's
    env matches, so the episodes in flight are replayed (maxent.training.env_identity)."""
    env = spec["env"]
    if is_adversarial(spec["method"]):
        return env["task"]  # an adversarial agent's time limit is its config's max_episode_steps
    if env["max_episode_steps"] is None:
        if env["domain_randomization"] is None:
            return env["task"]
        from maxent.envs.uncertainty import domain_randomized_id
        return domain_randomized_id(env["domain_randomization"])
    return functools.partial(make_env, env["task"], env["max_episode_steps"],
                             env["domain_randomization"])


def _load_agent(spec: dict[str, Any], env: Any = None) -> Any:
    """A trained run's agent, to be scored (on ``env``, default its training env)."""
    from maxent.training.env_identity import InexactResumeWarning

    cls = method_algorithm(spec["method"]).agent_class()
    model = checkpoint_dir(spec["dir"])
    with warnings.catch_warnings():
        # Scored, never trained on: that its episodes in flight are not replayed on the scoring
        # env changes nothing, so the load's notice of it would only be noise.
        warnings.simplefilter("ignore", InexactResumeWarning)
        if is_adversarial(spec["method"]):
            return cls.load(model)
        return cls.load(model, env=env if env is not None else _train_env(spec))


class _SweepRunHooks(RunHooks):
    """A sweep run resumes on the env it was built on (an adversarial agent: on its saved one)."""

    def __init__(self, agent_class: type, spec: dict[str, Any]):
        super().__init__(agent_class)
        self.spec = spec

    def resume_env(self, run: RunSpec) -> Any:
        return None if is_adversarial(self.spec["method"]) else run.env


def train_run(spec: dict[str, Any]) -> dict[str, Any]:
    """Train one run to its budget, resuming from its checkpoint; returns (and writes to
    ``done.json``) its step count, wall time and speed. A finished run is skipped."""
    import torch

    run_dir = Path(spec["dir"])
    done_file = run_dir / "done.json"
    if done_file.exists():
        done = json.loads(done_file.read_text())
        if done.get("steps", 0) >= spec["budget"]:
            return {**done, "skipped": True}
    torch.set_num_threads(int(spec["config"].get("torch_threads") or 1))
    algorithm = method_algorithm(spec["method"])
    # The run directory's run.json was checked against this sweep (prepare_root), so the resume
    # needs no further refusal.
    run = RunSpec(run_dir=run_dir, total_steps=spec["budget"], seed=spec["seed"],
                  env=_train_env(spec), config=algorithm.config_class().from_json(spec["config"]),
                  checkpoint_every=spec["checkpoint_every"],
                  save_replay_buffer=spec["save_replay_buffer"], check=False, prog="maxent sweep",
                  log=None)
    start = time.perf_counter()
    result = train_lifecycle(run, _SweepRunHooks(algorithm.agent_class(), spec), evaluate=False)
    elapsed = time.perf_counter() - start
    agent = result.agent
    resumed_from = result.resumed_from or 0
    recent = list(getattr(agent, "episode_returns", []))
    done = {"name": spec["name"], "steps": int(agent.num_timesteps), "resumed_from": resumed_from,
            "wall_s": elapsed,
            "steps_per_s": (agent.num_timesteps - resumed_from) / elapsed if elapsed > 0 else 0.0,
            "train_return": float(np.mean(recent[-10:])) if recent else math.nan}
    write_json(done_file, done)
    return done


# --------------------------------------------------------------------------- one evaluation


def evaluate_run(espec: dict[str, Any], *_trained: Any) -> dict[str, Any]:
    """Score one trained run (``_trained``: the training results it waits for, under Ray); the
    result is cached in the run directory per evaluation setting."""
    import torch

    from maxent.cli.robustness import GridEvaluator, Job, evaluate_mesh, policy
    from maxent.envs.uncertainty import UncertaintySet

    spec = espec["run"]
    cache = Path(spec["dir"]) / f"eval-{eval_key(espec)}.json"
    if cache.exists():
        return json.loads(cache.read_text())
    torch.set_num_threads(1)
    uset = UncertaintySet.from_json(espec["uncertainty"])
    start = time.perf_counter()
    agent = _load_agent(spec, env=None if is_adversarial(spec["method"]) else spec["task"])
    evaluator = GridEvaluator(spec["task"], espec["max_episode_steps"], espec["pool_size"], physics=True)
    try:
        result = evaluate_mesh(agent, uset, espec["points_per_dim"], espec["episodes"], espec["seed"],
                               evaluator=evaluator)
        side = {}
        conditions = [("nominal", None)] + [(f"vs {label}", other)
                                            for label, other in espec["adversaries"].items()]
        for condition, other in conditions:
            adversary = _load_agent(other) if other is not None else None
            try:
                jobs = [Job((), espec["seed"] + e, {}) for e in range(espec["adversary_episodes"])]
                evaluator.run(jobs, policy(agent), adversary=adversary)
                side[condition] = [job.out[0] for job in jobs]
            finally:
                if adversary is not None:
                    adversary.close()
    finally:
        evaluator.close()
        agent.close()
    out = {"name": spec["name"], "method": spec["method"], "task": spec["task"], "seed": spec["seed"],
           "budget": spec["budget"], "uncertainty": uset.name, "parameters": list(uset.names),
           "points": [list(p.values()) for p in result.points],
           "mesh_returns": result.returns.tolist(), "scores": result.scores(),
           "conditions": side, "wall_s": time.perf_counter() - start}
    write_json(cache, out)
    return out


# --------------------------------------------------------------------------- backends


def _import_ray(why: str) -> Any:
    try:
        import ray
    except ImportError:
        raise SweepError(f"{why}, but Ray is not installed: pip install 'maxent[ray]' (or run the "
                         "plan without it: --backend sequential)") from None
    return ray


def choose_backend(cfg: SweepConfig) -> str:
    """``"ray"`` or ``"sequential"``: what ``cfg.backend`` asks for, ``auto`` meaning Ray when it
    is installed."""
    if cfg.backend == "sequential":
        if cfg.address is not None:
            raise SweepError("--address joins a Ray cluster; it cannot run with --backend sequential")
        return "sequential"
    if cfg.backend == "ray" or cfg.address is not None:
        _import_ray("--backend ray" if cfg.backend == "ray" else f"--address {cfg.address}")
        return "ray"
    try:
        import ray  # noqa: F401
    except ImportError:
        return "sequential"
    return "ray"


def run_sequential(plan, evals, log) -> tuple[dict, dict, dict]:
    """Train every run, then score every run, one after another in this process: ``(trained,
    scored, failed)`` by run name."""
    trained, scored, failed = {}, {}, {}
    for spec in plan:
        try:
            trained[spec["name"]] = train_run(spec)
            log(trained_line(trained[spec["name"]]))
        except Exception as err:  # one failed run must not stop the others
            failed[spec["name"]] = f"training failed: {type(err).__name__}: {err}"
            log(f"FAILED {spec['name']}: {failed[spec['name']]}")
    for espec in evals:
        name = espec["run"]["name"]
        missing = [n for n in [name, *[a["name"] for a in espec["adversaries"].values()]]
                   if n not in trained]
        if missing:
            failed.setdefault(name, f"not evaluated: {', '.join(missing)} did not finish training")
            continue
        try:
            scored[name] = evaluate_run(espec)
            log(f"scored {name} ({scored[name]['wall_s']:.1f} s)")
        except Exception as err:
            failed[name] = f"evaluation failed: {type(err).__name__}: {err}"
            log(f"FAILED {name}: {failed[name]}")
    return trained, scored, failed


def run_ray(cfg: SweepConfig, plan, evals, log) -> tuple[dict, dict, dict]:
    """The same as :func:`run_sequential` as Ray tasks, one CPU each; an evaluation starts once
    the runs it plays against are trained."""
    ray = _import_ray("Ray was asked for")
    started = not ray.is_initialized()
    if started:
        if cfg.address is not None:
            ray.init(address=cfg.address, log_to_driver=False)
        else:
            ray.init(num_cpus=cfg.workers or os.cpu_count() or 1, include_dashboard=False,
                     log_to_driver=False)
    try:
        log(f"ray: {ray.cluster_resources().get('CPU', 0):g} CPUs"
            + (f" at {cfg.address}" if cfg.address else " on this machine"))
        train_task = ray.remote(num_cpus=1, max_retries=cfg.retries)(train_run)
        eval_task = ray.remote(num_cpus=1, max_retries=cfg.retries)(evaluate_run)
        refs: dict[Any, tuple[str, str]] = {}
        train_refs = {}
        for spec in plan:
            ref = train_task.remote(spec)
            train_refs[spec["name"]] = ref
            refs[ref] = ("train", spec["name"])
        for espec in evals:  # Ray starts each once the runs it plays against are trained
            deps = [train_refs[espec["run"]["name"]],
                    *[train_refs[a["name"]] for a in espec["adversaries"].values()]]
            refs[eval_task.remote(espec, *deps)] = ("eval", espec["run"]["name"])
        trained, scored, failed = {}, {}, {}
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            kind, name = refs[ready[0]]
            try:
                value = ray.get(ready[0])
            except Exception as err:  # a task error, a dead worker, a failed dependency
                text = str(err).strip().splitlines()
                reason = f"{type(err).__name__}: {text[-1] if text else ''}"
                # An evaluation waiting on a failed run fails with that run's error.
                failed.setdefault(name, f"{'training' if kind == 'train' else 'evaluation'} failed: "
                                  f"{reason}")
                log(f"FAILED {name}: {failed[name]}")
                continue
            if kind == "train":
                trained[name] = value
                log(trained_line(value))
            else:
                scored[name] = value
                log(f"scored {name} ({value['wall_s']:.1f} s)")
        return trained, scored, failed
    finally:
        if started:
            ray.shutdown()


def trained_line(done: dict[str, Any]) -> str:
    if done.get("skipped"):
        return f"finished already: {done['name']} ({done['steps']} steps)"
    resumed = f", resumed at step {done['resumed_from']}" if done["resumed_from"] else ""
    return (f"trained {done['name']}: {done['steps']} steps in {done['wall_s']:.1f} s "
            f"({rate_text(done['steps_per_s'])}{resumed})")

