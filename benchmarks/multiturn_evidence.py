"""Multi-turn GRPO against its baselines on the same held-out episodes: the untrained model and
the in-context :class:`maxent.agents.llm_agent.LLMAgent` (weights frozen) versus the GRPO-trained
policy, per seed, on the text bandit (regret) or the calculator task (success rate). One row per
held-out episode goes to a CSV; ``--summarise`` bootstraps 95% intervals over seeds x episodes.

    python benchmarks/multiturn_evidence.py --env maxent/TextBanditChat-v0 --seed 0 --steps 20
    python benchmarks/multiturn_evidence.py --env maxent/ToolArithmetic-v0 --seed 0 --prefill ""
    python benchmarks/multiturn_evidence.py --summarise benchmarks/results/multiturn-grpo/*.csv

``--prefill`` starts every assistant turn with fixed text, as LLMAgent's ``response_prefix``: the
135M model almost never writes a parsable ``Action:`` line on its own, so without it every group
scores 0 and GRPO's advantages are all zero. The prefix is put into the chat template (prompt
tokens, no loss) and prepended to each reply before the env parses it, for all three policies.
"""

from __future__ import annotations

import argparse
import csv
import os
import time
import warnings
from pathlib import Path

import numpy as np

FIELDS = ("env", "policy", "seed", "episode", "reset_seed", "return", "regret", "valid_rate",
          "success", "turns", "tool_calls")

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


def prefilled_template(template: str, prefix: str) -> str:
    """SmolLM2's ChatML template with ``prefix`` opening every assistant turn, in the generation
    prompt and in rendered assistant messages alike (so conversations stay prefixes of their
    continuations, which the multi-turn rollout checks)."""
    head = "'<|im_start|>' + message['role'] + '\n' + message['content']"
    gen = "'<|im_start|>assistant\n'"
    if head not in template or gen not in template:
        raise ValueError("--prefill needs the ChatML template of SmolLM2; pass --prefill '' for "
                         "another model")
    quoted = prefix.replace("\\", "\\\\").replace("'", "\\'")
    return template.replace(head, "'<|im_start|>' + message['role'] + '\n' + (('" + quoted
                            + "') if message['role'] == 'assistant' else '') + message['content']"
                            ).replace(gen, "'<|im_start|>assistant\n" + quoted + "'")


def make_env(env_id: str, prefix: str, horizon: int):
    """The env, its replies read with ``prefix`` in front (what the model's turn started with)."""
    import gymnasium as gym

    import maxent.envs  # noqa: F401  (registers the maxent/ ids)

    kwargs = {"horizon": horizon} if "Bandit" in env_id else {}
    env = gym.make(env_id, **kwargs)
    if not prefix:
        return env

    class Prefilled(gym.ActionWrapper):
        def action(self, action: str) -> str:
            return prefix + action

    return Prefilled(env)


def episode_row(env_id: str, policy: str, seed: int, k: int, reset_seed: int, rewards, infos,
                horizon: int, means, turns: int, tool_calls: int) -> dict:
    """One held-out episode's row. Bandit regret is the pseudo-regret over the whole horizon,
    sum of (best mean - pulled mean), where a round without a valid pull (an unparsable answer,
    which ends the episode, and the rounds it leaves unplayed) counts as a uniformly random pull
    (best mean - average mean), so a policy that never answers validly scores like random play."""
    row = {"env": env_id, "policy": policy, "seed": seed, "episode": k, "reset_seed": reset_seed,
           "return": float(np.sum(rewards)), "regret": float("nan"), "valid_rate": float("nan"),
           "success": float("nan"), "turns": turns, "tool_calls": tool_calls}
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
                                horizon, means, ep.turns, ep.tool_calls))
    return rows


def evaluate_llm_agent(args, seed: int, reset_seeds: list[int]) -> list[dict]:
    """The in-context agent (weights frozen, ``n_samples`` completions per decision, acts with
    a random valid one) on the held-out episodes. On the bandit it reads the full-history prompt
    of ``maxent/TextBandit-v0`` (the same game, arms and rewards per reset seed as the chat
    version, whose later observations hold only the newest round)."""
    from maxent.agents.llm_agent import LLMAgent, LLMAgentConfig

    env_id = "maxent/TextBandit-v0" if "Bandit" in args.env else args.env
    envs = [make_env(env_id, "", args.horizon) for _ in reset_seeds]
    config = LLMAgentConfig(model=args.model, n_samples=args.llm_samples,
                            temperature=args.temperature, max_new_tokens=args.max_new_tokens,
                            response_prefix=args.prefill, torch_threads=args.threads)
    agent = LLMAgent(envs[0], config=config, seed=seed)
    obs, infos, rewards, turns, calls = [], [], [], [], []
    for env, s in zip(envs, reset_seeds):
        o, info = env.reset(seed=s)
        obs.append(o)
        infos.append([info])
        rewards.append([])
        turns.append(0)
        calls.append(0)
    live = list(range(len(envs)))
    t = 0
    while live and t < args.max_turns:
        decision = agent.decide([obs[i] for i in live], seed=HELD_OUT_BASE + 7919 * seed + t)
        for i, reply in zip(list(live), decision.chosen):
            o, r, term, trunc, info = envs[i].step(reply)
            rewards[i].append(float(r))
            infos[i].append(dict(info))
            turns[i] += 1
            calls[i] += int(bool(info.get("tool_call", False)))
            obs[i] = o
            if term or trunc:
                live.remove(i)
        t += 1
    return [episode_row(args.env, "llm-agent", seed, k, s, rewards[k], infos[k][1:], args.horizon,
                        infos[k][0].get("means"), turns[k], calls[k])
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
        temperature=args.temperature, log_completions_every=0, torch_threads=args.threads)
    agent = GRPO(None, make_env(args.env, args.prefill, args.horizon), config, seed=seed)
    if args.prefill:
        agent.tokenizer.chat_template = prefilled_template(agent.tokenizer.chat_template,
                                                           args.prefill)
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


def summarise(paths: list[Path], out: Path) -> None:
    """A Markdown table (mean and 95% CI per env, policy and metric) and a PNG: one bar chart
    per env and metric, and the training return per step of every seed (its ``-train.csv``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for p in paths for r in csv.DictReader(open(p)) if r.get("policy")]
    curves = {p: list(csv.DictReader(open(p.with_name(p.stem + "-train.csv"))))
              for p in paths if p.with_name(p.stem + "-train.csv").exists()}
    envs = sorted({r["env"] for r in rows})
    order = ["untrained", "untrained-greedy", "llm-agent", "trained", "trained-greedy"]
    panels = [(env, m) for env in envs
              for m in (["regret", "valid_rate", "return"] if "Bandit" in env else ["success"])]
    lines = ["| task | metric | policy | seeds x episodes | mean | 95% CI |",
             "|---|---|---|---|---|---|"]
    fig, axes = plt.subplots(1, len(panels) + bool(curves), figsize=(3.6 * (len(panels) + 1), 3.6),
                             squeeze=False)
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
    if curves:
        ax = axes[0][-1]
        for path, curve in curves.items():
            ax.plot([int(c["step"]) for c in curve], [float(c["return"]) for c in curve],
                    marker="o", label=path.stem)
        ax.set(title="GRPO training", xlabel="step", ylabel="mean sampled return")
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
