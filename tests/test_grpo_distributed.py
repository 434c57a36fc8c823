"""GRPO under ``accelerate launch`` (agents/grpo.py): a global batch split over two CPU processes
(gloo, DDP) gives the same weights after one optimiser step as the whole batch in one process.

Run as a script (``accelerate launch --multi_gpu --num_processes 2 tests/test_grpo_distributed.py
OUT``; accelerate's ``--cpu`` flag alone starts one process, while ``--multi_gpu`` starts them with
torchrun, and ``Accelerator(cpu=True)`` then joins them over gloo) this file is the worker: each
process prepares and updates its half of a fixed rollout. The launch costs ~30 s of process start-up
on 2 cores, so it is marked slow; the default check emulates the split in one process.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("accelerate")
pytest.importorskip("transformers")

SIZES = {"tiny_hidden_size": 32, "tiny_layers": 1, "tiny_heads": 2}


class _SumTask:
    """a+b with single digits; the reward is 1 for the exact sum (a stand-in text task)."""

    name = "sum"

    def sample(self, rng: np.random.Generator):
        a, b = rng.integers(0, 10, 2)
        return f"{a}+{b}=", int(a + b)

    def parse(self, completion: str):
        text = completion.strip()
        return int(text) if text.isdigit() else None

    def reward(self, completion: str, target) -> float:
        return float(self.parse(completion) == target)


class _SumEnv:
    def __init__(self):
        self.task = _SumTask()

    def sample_prompts(self, n: int, rng: np.random.Generator):
        return [self.task.sample(rng) for _ in range(n)]


def _agent(accelerator, **overrides):
    from maxent.agents.grpo import GRPO, GRPOConfig

    # Whole sequences on one process too (DDP runs them; the shared prompt pass, equal up to
    # float reassociation, has its own test): the comparisons below are to 1e-6.
    config = GRPOConfig(device="cpu", group_size=4, prompts_per_step=4, max_new_tokens=5,
                        learning_rate=1e-2, mask_truncated=False, share_prompt_pass=False,
                        **{**SIZES, **overrides})
    return GRPO("tiny", _SumEnv(), config=config, seed=0, accelerator=accelerator)


def _fixed_rollout(agent):
    """The same rollout in every process: 4 prompts x 4 completions, sampled with a fixed seed.
    Rewards are made varied so every group has a signal."""
    from maxent import llm
    from maxent.agents.grpo import Rollout

    pairs = agent.env.sample_prompts(4, np.random.default_rng(7))
    rows = [r for r in agent.encode([p for p, _ in pairs]) for _ in range(4)]
    out = agent.sampler.generate(rows, max_new_tokens=5, seed=11)
    prompt_ids, prompt_mask = llm.left_pad(rows, agent.tokenizer.pad_token_id)
    rewards = torch.tensor([1.0, 0.0, 0.5, 0.0] * 4)
    return Rollout(prompt_ids, prompt_mask, out.ids, out.mask, out.truncated, rewards,
                   out.texts, [t for _, t in pairs for _ in range(4)])


def _step(agent, rollout):
    batch, _ = agent.prepare(rollout)
    agent.update(batch)
    return {k: v.detach().clone() for k, v in agent.policy.state_dict().items()}


def _worker(out: str, fsdp: bool = False) -> None:
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=True)
    agent = _agent(accelerator, micro_batch_size=2, fsdp=fsdp)
    assert agent.fsdp == fsdp
    rollout = _fixed_rollout(agent)
    half = len(rollout.texts) // accelerator.num_processes
    rank = accelerator.process_index
    weights = _step(agent, rollout.rows(rank * half, (rank + 1) * half))
    if fsdp:  # the sharded policy's full weights, as gathered into the generation copy
        assert all(hasattr(p, "full_tensor") for p in agent.model.parameters())
        weights = {k: v.detach().clone() for k, v in agent._generation_model.state_dict().items()}
        agent.save(out + ".ckpt")  # every process gathers, the main one writes
    if accelerator.is_main_process:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in weights.items()}, out)
        Path(out + ".world").write_text(str(accelerator.num_processes))
    accelerator.wait_for_everyone()


def _launcher() -> list[str]:
    exe = shutil.which("accelerate")
    return [exe, "launch"] if exe else [sys.executable, "-m", "accelerate.commands.launch"]


def test_split_gradients_average_to_the_whole_batch():
    """What DDP does, in one process: each half computes its loss with the global normalizer times
    the process count; the average of the halves' gradients equals the whole batch's gradient."""
    from accelerate import Accelerator

    def gradients(agent, rollout, world=1, normalizer=None):
        agent.world_size = world
        if normalizer is not None:
            agent._normalizer = lambda batch: normalizer
        agent.optimizer.step = lambda *a, **k: None  # keep the gradients, skip the step
        agent.optimizer.zero_grad = lambda *a, **k: None
        agent.update(agent.prepare(rollout)[0])
        return {n: p.grad.clone() for n, p in agent.policy.named_parameters() if p.grad is not None}

    whole_agent = _agent(Accelerator(cpu=True), max_grad_norm=None)
    rollout = _fixed_rollout(whole_agent)
    whole = gradients(whole_agent, rollout)
    total = whole_agent._normalizer(whole_agent.prepare(rollout)[0])
    halves = [gradients(_agent(Accelerator(cpu=True), max_grad_norm=None), rollout.rows(a, b),
                        world=2, normalizer=total) for a, b in ((0, 8), (8, 16))]
    assert any(g.abs().max() > 1e-4 for g in whole.values())
    for name, g in whole.items():
        torch.testing.assert_close((halves[0][name] + halves[1][name]) / 2, g, atol=1e-6, rtol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("fsdp", [False, True], ids=["ddp", "fsdp2"])
def test_two_processes_equal_one(tmp_path, fsdp):
    """DDP, and FSDP2 (torch's fully_shard, which runs on CPU over gloo): two processes with half
    the batch each end one optimiser step with the single-process weights."""
    from accelerate import Accelerator
    from safetensors.torch import load_file

    out = tmp_path / "ddp.safetensors"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [*_launcher(), "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", __file__, str(out),
           *(["fsdp"] if fsdp else [])]
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=180, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "ddp.safetensors.world").read_text() == "2"
    distributed = load_file(out)

    agent = _agent(Accelerator(cpu=True))  # one process, whole batch, no micro-batching
    single = _step(agent, _fixed_rollout(agent))
    initial = _agent(Accelerator(cpu=True)).policy.state_dict()
    moved = max((single[k] - initial[k]).abs().max().item() for k in single)
    assert moved > 1e-3  # the step did something
    # 1e-5 (the step moves weights by up to lr = 1e-2): the keys' biases have a true gradient of
    # zero (softmax ignores a shift shared by all keys), so Adam's first step, g / (|g| + eps),
    # turns their rounding noise, which differs with the reduction order, into ~1e-6 moves.
    for name, value in single.items():
        torch.testing.assert_close(distributed[name], value, atol=1e-5, rtol=0, msg=name)
    if fsdp:  # the sharded run's checkpoint loads in one process, weights and optimizer alike
        from maxent.agents.grpo import GRPO

        loaded = GRPO.load(str(out) + ".ckpt", env=_SumEnv(), accelerator=Accelerator(cpu=True))
        for name, value in loaded.policy.state_dict().items():
            torch.testing.assert_close(value, single[name], atol=1e-5, rtol=0, msg=name)
        moments = [s["exp_avg"] for s in loaded._torch_optimizer.state.values()]
        assert moments and all(m.abs().sum() > 0 for m in moments)


if __name__ == "__main__":
    _worker(sys.argv[1], fsdp=len(sys.argv) > 2 and sys.argv[2] == "fsdp")
