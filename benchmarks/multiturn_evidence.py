"""Multi-turn GRPO against its baselines on the same held-out episodes: the untrained model and
the in-context :class:`maxent.agents.llm_agent.LLMAgent` (weights frozen) versus the GRPO-trained
policy, per seed, on the text bandit (regret) or the calculator task (success rate). One row per
held-out episode goes to a CSV; ``--summarise`` bootstraps 95% intervals over seeds x episodes.

    python benchmarks/multiturn_evidence.py --env maxent/TextBanditChat-v0 --seed 0 --steps 20
    python benchmarks/multiturn_evidence.py --env maxent/ToolArithmetic-v0 --seed 0 \
        --prefill '<tool_call>{"name": "calculate", "arguments": {"expression": "' \
        --tool-prefill "The answer is "
    python benchmarks/multiturn_evidence.py --summarise benchmarks/results/multiturn-grpo/*.csv

``--prefill`` starts every assistant turn with fixed text (GRPO's ``response_prefix``, LLMAgent's
``response_prefix``): the 135M model almost never writes a parsable ``Action:`` line or tool call
on its own, so without it every group scores 0 and GRPO's advantages are all zero. The prefix is
context (no loss) and the env reads prefix + reply, for all three policies. ``--tool-prefill``
opens a turn that answers a tool result (``tool_response_prefix``).
"""

from __future__ import annotations

import argparse
import csv
import os
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

FIELDS = ("env", "policy", "seed", "episode", "reset_seed", "return", "regret", "valid_rate",
          "success", "turns", "tool_calls", "tool_errors")

HELD_OUT_BASE = 10_000  # held-out reset seeds come from rng([HELD_OUT_BASE + seed, 1])


def held_out_seeds(seed: int, n: int, train_seeds: set[int]) -> list[int]:
    """``n`` reset seeds for evaluation, none of which a training step draws."""
    rng = np.random.default_rng([HELD_OUT_BASE + seed, 1])
    out: list[int] = []
    while len(out) < n:
        s = int(rng.integers(2**31))
        if s not in train_seeds and s not in out:
            out.append(s)
    return out


def training_seeds(seed: int, steps: int, groups: int) -> set[int]:
    """The reset seeds GRPO's multi-turn rollout draws in ``steps`` steps (single process),
    mirrored from ``MultiTurn.rollout``."""
    return {int(s) for step in range(steps)
            for s in np.random.default_rng([seed, step, 0, 0]).integers(2**31, size=groups)}


def make_env(env_id: str, horizon: int):
    """The env of ``env_id`` (the bandit with ``horizon`` rounds)."""
    import gymnasium as gym

    import maxent.envs  # noqa: F401  (registers the maxent/ ids)

    kwargs = {"horizon": horizon} if "Bandit" in env_id else {}
    return gym.make(env_id, **kwargs)


def history_view(env):
    """The tool task as the in-context agent plays it, one prompt per decision: each observation
    is the episode so far (question, replies, tool results). A reply is valid (LLMAgent acts with
    a random valid sample) when its tool call runs without error, or, answering, when it holds an
    integer. ``after_tool`` says whether the next reply answers a tool result."""
    import gymnasium as gym

    from maxent.llm.tools import find_call

    class History(gym.Wrapper):
        def reset(self, **kwargs):
            obs, info = self.env.reset(**kwargs)
            self.text, self.after_tool = obs, False
            return self.text, info

        def step(self, action):
            obs, reward, terminated, truncated, info = self.env.step(action)
            self.after_tool = info.get("role") == "tool"
            self.text += f"\nAssistant: {action}\n" + ("Tool result: " if self.after_tool else "") + obs
            return self.text, reward, terminated, truncated, info

        def parse_action(self, completion: str):
            if find_call(completion) is not None:
                result = self.env.unwrapped.toolbox.run(completion)
                return None if result.error else result.content
            return self.env.unwrapped.task.parse(completion)

    return History(env)


def episode_row(env_id: str, policy: str, seed: int, k: int, reset_seed: int, rewards, infos,
                horizon: int, means, turns: int, tool_calls: int, tool_errors: int) -> dict:
    """One held-out episode's row. Bandit regret is the pseudo-regret over the whole horizon,
    sum of (best mean - pulled mean), where a round without a valid pull (an unparsable answer,
    which ends the episode, and the rounds it leaves unplayed) counts as a uniformly random pull
    (best mean - average mean), so a policy that never answers validly scores like random play."""
    row = {"env": env_id, "policy": policy, "seed": seed, "episode": k, "reset_seed": reset_seed,
           "return": float(np.sum(rewards)), "regret": float("nan"), "valid_rate": float("nan"),
           "success": float("nan"), "turns": turns, "tool_calls": tool_calls,
           "tool_errors": tool_errors}
    if "Bandit" in env_id:
        steps = [i for i in infos if "pulled" in i]
        valid = [i for i in steps if i["pulled"] >= 0 and not i["invalid"]]
        best, avg = float(np.max(means)), float(np.mean(means))
        row["regret"] = sum(best - float(means[i["pulled"]]) for i in valid) + \
            (horizon - len(valid)) * (best - avg)
        row["valid_rate"] = len(valid) / horizon
    else:
        row["success"] = float(any(i.get("correct", False) for i in infos))
    return row


def evaluate_grpo(agent, env_id: str, policy: str, seed: int, reset_seeds: list[int],
                  horizon: int, greedy: bool) -> list[dict]:
    """The GRPO policy (untrained or trained) on the held-out episodes, one sampler call per
    turn for all of them."""
    from maxent.llm.rollout import collect_episodes

    mt = agent.multiturn
    envs = mt.pool.take(len(reset_seeds))
    episodes = collect_episodes(agent.sampler, mt.format, envs, reset_seeds, mt.limits,
                                toolbox=mt.toolbox, sample_seed=HELD_OUT_BASE + seed,
                                greedy=greedy)
    rows = []
    for k, ep in enumerate(episodes):
        means = ep.infos[0].get("means")
        rows.append(episode_row(env_id, policy, seed, k, ep.seed, ep.rewards, ep.infos[1:],
                                horizon, means, ep.turns, ep.tool_calls, ep.tool_errors))
    return rows


def evaluate_llm_agent(args, seed: int, reset_seeds: list[int]) -> list[dict]:
    """The in-context agent (weights frozen, ``n_samples`` completions per decision, acts with
    a random valid one) on the held-out episodes. On the bandit it reads the full-history prompt
    of ``maxent/TextBandit-v0`` (the same game, arms and rewards per reset seed as the chat
    version, whose later observations hold only the newest round)."""
    from maxent.agents.llm_agent import LLMAgent, LLMAgentConfig

    bandit = "Bandit" in args.env
    env_id = "maxent/TextBandit-v0" if bandit else args.env
    envs = [make_env(env_id, args.horizon) if bandit else history_view(make_env(env_id, 0))
            for _ in reset_seeds]
    config = LLMAgentConfig(model=args.model, n_samples=args.llm_samples,
                            temperature=args.temperature, max_new_tokens=args.max_new_tokens,
                            response_prefix=args.prefill, torch_threads=args.threads)
    agent = LLMAgent(envs[0], config=config, seed=seed)
    obs, infos, rewards, turns, calls, errors = [], [], [], [], [], []
    for env, s in zip(envs, reset_seeds):
        o, info = env.reset(seed=s)
        obs.append(o)
        infos.append([info])
        rewards.append([])
        turns.append(0)
        calls.append(0)
        errors.append(0)
    live = list(range(len(envs)))
    t = 0
    while live and t < args.max_turns:
        # One decision per opening: replies to a tool result start with --tool-prefill.
        after_tool = [i for i in live if getattr(envs[i], "after_tool", False)]
        replies: dict[int, str] = {}
        for batch, prefix in ((after_tool, args.tool_prefill),
                              ([i for i in live if i not in after_tool], None)):
            if batch:
                decision = agent.decide([obs[i] for i in batch], seed=HELD_OUT_BASE + 7919 * seed + t,
                                        response_prefix=prefix)
                replies.update(zip(batch, decision.chosen))
        for i, reply in sorted(replies.items()):
            o, r, term, trunc, info = envs[i].step(reply)
            rewards[i].append(float(r))
            infos[i].append(dict(info))
            turns[i] += 1
            calls[i] += int(bool(info.get("tool_call", False)))
            errors[i] += int(bool(info.get("tool_error", False)))
            obs[i] = o
            if term or trunc:
                live.remove(i)
        t += 1
    return [episode_row(args.env, "llm-agent", seed, k, s, rewards[k], infos[k][1:], args.horizon,
                        infos[k][0].get("means"), turns[k], calls[k], errors[k])
            for k, s in enumerate(reset_seeds)]


def run_seed(args) -> list[dict]:
    """Untrained, in-context and trained policies of one seed on its held-out episodes; the
    training curve is written next to the CSV."""
    from maxent.agents.grpo import GRPO, GRPOConfig

    seed = args.seed
    reset_seeds = held_out_seeds(seed, args.eval_episodes,
                                 training_seeds(seed, args.steps, args.groups))
    rows = evaluate_llm_agent(args, seed, reset_seeds) if args.llm_agent else []
    config = GRPOConfig(
        model=args.model, device="cpu", group_size=args.group_size, prompts_per_step=args.groups,
        max_new_tokens=args.max_new_tokens, max_turns=args.max_turns,
        max_episode_tokens=args.max_episode_tokens, learning_rate=args.lr,
        temperature=args.temperature, log_completions_every=0, torch_threads=args.threads,
        response_prefix=args.prefill, tool_response_prefix=args.tool_prefill)
    agent = GRPO(None, make_env(args.env, args.horizon), config, seed=seed)
    modes = [("", False)] + ([("-greedy", True)] if args.greedy else [])
    for suffix, greedy in modes:
        rows += evaluate_grpo(agent, args.env, "untrained" + suffix, seed, reset_seeds,
                              args.horizon, greedy)
    curve = []
    for step in range(args.steps):
        start = time.perf_counter()
        m = agent.train_step()
        curve.append({"seed": seed, "step": step + 1, "seconds": time.perf_counter() - start,
                      "return": m["multiturn/episode_return"],
                      "invalid": m["multiturn/invalid_actions"],
                      "turns": m["multiturn/turns_per_episode"],
                      "entropy": m["entropy/token"], "loss": m["train/loss"]})
        print(f"seed {seed} step {step + 1}: return {curve[-1]['return']:.2f}, invalid "
              f"{curve[-1]['invalid']:.0f}, {curve[-1]['seconds']:.0f} s", flush=True)
    for suffix, greedy in modes if args.steps else []:
        rows += evaluate_grpo(agent, args.env, "trained" + suffix, seed, reset_seeds,
                              args.horizon, greedy)
    agent.close()
    stem = args.out / f"{args.env.split('/')[-1]}-s{seed}"
    if curve:
        with open(f"{stem}-train.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(curve[0]))
            writer.writeheader()
            writer.writerows(curve)
    return rows


# --------------------------------------------------------------------------- summary


def bootstrap_ci(values: np.ndarray, groups: np.ndarray, n: int = 10_000,
                 rng_seed: int = 0) -> tuple[float, float]:
    """95% interval of the mean by a two-level bootstrap: seeds resampled with replacement,
    then held-out episodes within each drawn seed."""
    rng = np.random.default_rng(rng_seed)
    by_seed = [values[groups == g] for g in np.unique(groups)]
    means = np.empty(n)
    for b in range(n):
        picks = rng.integers(len(by_seed), size=len(by_seed))
        means[b] = np.mean(np.concatenate([rng.choice(by_seed[p], size=len(by_seed[p]))
                                           for p in picks]))
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(lo), float(hi)


def split_by_sign(rows: list[dict]) -> None:
    """Give each calculator-task row ``success_answer_ge_0`` or ``success_answer_lt_0`` (the other
    left empty): the episode's answer, replayed from its reset seed, is negative or not. A small
    model that copies the tool's result often drops a minus sign, and this shows it."""
    import gymnasium as gym

    import maxent.envs  # noqa: F401  (registers the maxent/ ids)
    from maxent.envs.tool_env import calculate

    envs: dict[str, Any] = {}
    for r in rows:
        r.setdefault("success_answer_ge_0", "")
        r.setdefault("success_answer_lt_0", "")
        if "Tool" not in r["env"]:
            continue
        env = envs.setdefault(r["env"], gym.make(r["env"]))
        first, _ = env.reset(seed=int(r["reset_seed"]))
        question = next(line for line in first.splitlines() if line.startswith("What is "))
        negative = int(calculate(question[len("What is "):].rstrip("?"))) < 0
        r["success_answer_lt_0" if negative else "success_answer_ge_0"] = r["success"]


def summarise(paths: list[Path], out: Path) -> None:
    """A Markdown table (mean and 95% CI per env, policy and metric) and a PNG: one bar chart
    per env and metric, and the training return per step of every seed (its ``-train.csv``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for p in paths for r in csv.DictReader(open(p)) if r.get("policy")]
    split_by_sign(rows)
    curves = {p: list(csv.DictReader(open(p.with_name(p.stem + "-train.csv"))))
              for p in paths if p.with_name(p.stem + "-train.csv").exists()}
    envs = sorted({r["env"] for r in rows})
    order = ["untrained", "untrained-greedy", "llm-agent", "trained", "trained-greedy"]
    panels = [(env, m) for env in envs
              for m in (["regret", "valid_rate", "return"] if "Bandit" in env else ["success"])]
    extra = [(env, m) for env in envs if "Bandit" not in env
             for m in ("success_answer_ge_0", "success_answer_lt_0")]
    lines = ["| task | metric | policy | seeds x episodes | mean | 95% CI |",
             "|---|---|---|---|---|---|"]
    curve_envs = sorted({env for env in envs if any(f"{env.split('/')[-1]}-s" in p.stem
                                                     for p in curves)})
    fig, axes = plt.subplots(1, len(panels) + len(curve_envs),
                             figsize=(3.6 * (len(panels) + len(curve_envs)), 3.6), squeeze=False)
    for ax, (env, metric) in zip(axes[0], panels):
        for policy in [p for p in order if any(r["env"] == env and r["policy"] == p for r in rows)]:
            sel = [r for r in rows if r["env"] == env and r["policy"] == policy]
            v = np.array([float(r[metric]) for r in sel])
            g = np.array([int(r["seed"]) for r in sel])
            lo, hi = bootstrap_ci(v, g)
            lines.append(f"| {env} | {metric} | {policy} | {len(set(g))} x "
                         f"{len(v) // len(set(g))} | {v.mean():.3f} | [{lo:.3f}, {hi:.3f}] |")
            ax.bar(policy, v.mean(), yerr=[[v.mean() - lo], [hi - v.mean()]], capsize=4)
        ax.set(title=env.split("/")[-1], ylabel=metric)
        ax.tick_params(axis="x", rotation=30)
    for env, metric in extra:  # table only
        for policy in [p for p in order if any(r["env"] == env and r["policy"] == p
                                                and r.get(metric) != "" for r in rows)]:
            sel = [r for r in rows if r["env"] == env and r["policy"] == policy and r.get(metric) != ""]
            v = np.array([float(r[metric]) for r in sel])
            g = np.array([int(r["seed"]) for r in sel])
            lo, hi = bootstrap_ci(v, g)
            lines.append(f"| {env} | {metric} | {policy} | {len(set(g))} seeds, {len(v)} episodes "
                         f"| {v.mean():.3f} | [{lo:.3f}, {hi:.3f}] |")
    for ax, env in zip(axes[0][len(panels):], curve_envs):  # one training panel per task
        for path, curve in curves.items():
            if path.stem.startswith(env.split("/")[-1] + "-s"):
                ax.plot([int(c["step"]) for c in curve], [float(c["return"]) for c in curve],
                        marker="o", label=path.stem)
        ax.set(title=f"GRPO training: {env.split('/')[-1]}", xlabel="step",
               ylabel="mean sampled return")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "multiturn-evidence.png", dpi=120)
    table = "\n".join(lines)
    (out / "summary.md").write_text(table + "\n")
    print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--summarise", type=Path, nargs="+", help="CSVs to summarise; no run")
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--env", default="maxent/TextBanditChat-v0")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=20, help="GRPO steps")
    parser.add_argument("--group-size", type=int, default=4)
    parser.add_argument("--groups", type=int, default=2, help="reset seeds (groups) per step")
    parser.add_argument("--horizon", type=int, default=5, help="bandit rounds per episode")
    parser.add_argument("--max-turns", type=int, default=5)
    parser.add_argument("--max-new-tokens", type=int, default=4, help="tokens per reply")
    parser.add_argument("--max-episode-tokens", type=int, default=1024)
    parser.add_argument("--prefill", default="Action: I choose Button",
                        help="text opening every assistant turn ('' for none)")
    parser.add_argument("--tool-prefill", default=None,
                        help="text opening a turn that answers a tool result (default: --prefill)")
    parser.add_argument("--lr", type=float, default=1e-5)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--eval-episodes", type=int, default=32)
    parser.add_argument("--llm-samples", type=int, default=8, help="LLMAgent samples per decision")
    parser.add_argument("--no-llm-agent", dest="llm_agent", action="store_false")
    parser.add_argument("--no-greedy", dest="greedy", action="store_false",
                        help="skip the greedy evaluation of the GRPO policy")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/multiturn-grpo"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.summarise:
        summarise(args.summarise, args.out)
        return
    if args.steps < 0 or args.eval_episodes < 1:
        parser.error("--steps must be >= 0 and --eval-episodes >= 1")
    warnings.filterwarnings("ignore")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    rows = run_seed(args)
    path = args.out / f"{args.env.split('/')[-1]}-s{args.seed}.csv"
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    for policy in dict.fromkeys(r["policy"] for r in rows):
        sel = [r for r in rows if r["policy"] == policy]
        key = "regret" if "Bandit" in args.env else "success"
        print(f"{policy}: mean {key} {np.mean([r[key] for r in sel]):.3f}, return "
              f"{np.mean([r['return'] for r in sel]):.2f}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
