"""The supervised warm-up of a fresh GRPO policy on a text task: cross-entropy on correct
``prompt -> str(target)`` completions until greedy accuracy leaves zero, so that GRPO's group
advantages have a reward signal to start from (a model that never writes the answer format scores
0 on every completion, and every group's advantages are 0)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from maxent import llm

__all__ = ["supervised_warmup"]


def supervised_warmup(agent: Any, max_steps: int, *, batch_size: int, learning_rate: float,
                      stop_accuracy: float | None, eval_every: int, eval_prompts: int,
                      seed: int) -> list[tuple[int, float]]:
    """:meth:`maxent.agents.grpo.GRPO.warmup` on ``agent`` (its arguments and return value);
    trains ``agent.policy`` with its own Adam optimiser and marks the agent ``warmed_up``."""
    if max_steps < 1 or batch_size < 1 or eval_every < 1:
        raise ValueError(f"max_steps, batch_size and eval_every must be >= 1, got {max_steps}, "
                         f"{batch_size}, {eval_every}")
    if not hasattr(agent.env, "task"):
        raise ValueError("warmup trains on a text task's targets; a dataset has none (skip the "
                         "warm-up, or fine-tune on your answers first)")
    eos = agent.tokenizer.eos_token
    optimizer = torch.optim.Adam([p for p in agent.policy.parameters() if p.requires_grad],
                                 lr=learning_rate)
    history: list[tuple[int, float]] = []
    for step in range(1, max_steps + 1):
        pairs = agent.env.sample_prompts(batch_size, np.random.default_rng([seed, step, agent.rank]))
        answers = [str(t) for _, t in pairs]
        if step == 1:
            bad = [a for a, (_, t) in zip(answers, pairs) if not agent.reward_fn(a, t) > 0]
            if bad:
                raise ValueError(f"warmup needs tasks whose target, as text, is a correct "
                                 f"completion; {bad[0]!r} is not rewarded by this task")
        prompts = agent.encode([p for p, _ in pairs])
        answer_ids = [agent.tokenizer(a + eos, add_special_tokens=False)["input_ids"][
            :agent.config.max_new_tokens] for a in answers]
        rows = [p + a for p, a in zip(prompts, answer_ids)]
        ids, mask = llm.left_pad(rows, agent.tokenizer.pad_token_id)
        labels = torch.full_like(ids, -100)
        for i, a in enumerate(answer_ids):
            labels[i, ids.shape[1] - len(a):] = ids[i, ids.shape[1] - len(a):]
        ids, mask, labels = ids.to(agent.device), mask.to(agent.device), labels.to(agent.device)
        logits = agent.model(input_ids=ids, attention_mask=mask,
                             position_ids=(mask.cumsum(-1) - 1).clamp(min=0), use_cache=False).logits
        loss = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten())
        optimizer.zero_grad(set_to_none=True)
        agent.accelerator.backward(loss)
        optimizer.step()
        if step % eval_every == 0 or step == max_steps:
            accuracy = agent.evaluate_accuracy(eval_prompts, seed=seed + 1)
            history.append((step, accuracy))
            if stop_accuracy is not None and accuracy >= stop_accuracy:
                break
    agent.warmed_up = True
    agent._sync_sampler()
    return history
