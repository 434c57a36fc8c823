"""GRPO the way TRL users run it: a dataset of prompts with extra columns, reward functions in
TRL's convention (written exactly as TRL's documentation writes them), LoRA adapters, memory
switches, the completions table, and the trained model exported as a Hugging Face folder."""

from __future__ import annotations

import asyncio
import json
import re

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("accelerate")

from maxent.agents.grpo import GRPO, GRPOConfig
from maxent.training.checkpoint import CheckpointError
from maxent.envs.prompts import PromptDataset, RewardFunctions

TINY = {"device": "cpu", "tiny_hidden_size": 32, "tiny_layers": 1, "tiny_heads": 2,
        "group_size": 4, "prompts_per_step": 2, "max_new_tokens": 4, "learning_rate": 1e-2,
        "mask_truncated": False, "log_completions_every": 1}
ROWS = [{"prompt": f"{a}+{b}=", "answer": str(a + b), "level": a % 3}
        for a in range(5) for b in range(4)]


# Reward functions as TRL's GRPOTrainer documentation writes them (plain-text datasets).
def reward_len(completions, **kwargs):
    return [-abs(3 - len(completion)) for completion in completions]


def correct(completions, answer, **kwargs):
    return [1.0 if c.strip() == a else 0.0 for c, a in zip(completions, answer)]


def only_hard(completions, level, **kwargs):
    return [float(len(c)) if lv == 2 else None for c, lv in zip(completions, level)]


# --------------------------------------------------------------------------- reward functions


def test_trl_style_functions_get_trls_arguments_and_combine_with_weights():
    seen = {}

    def spy(prompts, completions, completion_ids, trainer_state, answer, level, **kwargs):
        seen.update(prompts=prompts, completions=completions, ids=completion_ids,
                    step=trainer_state.global_step, answer=answer, level=level, extra=kwargs)
        return [0.5] * len(completions)

    data = PromptDataset(ROWS, [reward_len, correct, only_hard, spy], reward_weights=[1, 2, 0.5, 1])
    pairs = data.sample_prompts(3, np.random.default_rng(0))
    rows = [r for _, r in pairs]
    from maxent.envs.prompts import TrainerState

    scored = data.score([p for p, _ in pairs], ["7", "12", "x"], [[1], [2, 3], [4]], rows,
                        TrainerState(global_step=5))
    assert seen["prompts"] == [r["prompt"] for r in rows] and seen["ids"] == [[1], [2, 3], [4]]
    assert seen["answer"] == [r["answer"] for r in rows] and seen["step"] == 5
    assert sorted(seen["extra"]) == ["log_extra", "log_metric"]  # TRL passes both
    terms = scored.per_function
    np.testing.assert_allclose(terms[:, 0], [-2, -1, -2])
    expected = terms[:, 0] + 2 * terms[:, 1] + np.nan_to_num(0.5 * terms[:, 2]) + 0.5
    np.testing.assert_allclose(scored.rewards, expected)
    assert np.isnan(terms[[i for i, r in enumerate(rows) if r["level"] != 2], 2]).all()


def test_none_from_every_function_leaves_the_sample_out():
    def never(completions, **kwargs):
        return [None] * len(completions)

    data = PromptDataset(ROWS, [never])
    scored = data.score(["a"], ["b"], [[1]], [ROWS[0]], None)
    assert np.isnan(scored.rewards).all()


def test_async_reward_functions_run_concurrently():
    async def slow(completions, **kwargs):
        await asyncio.sleep(0.2)
        return [1.0] * len(completions)

    import time

    data = PromptDataset(ROWS, [slow, slow, slow])
    start = time.perf_counter()
    scored = data.score(["a", "b"], ["x", "y"], [[1], [2]], ROWS[:2], None)
    assert np.allclose(scored.rewards, 3.0)
    assert time.perf_counter() - start < 0.5  # three 0.2 s sleeps overlapped


@pytest.mark.parametrize("fn,message", [
    (lambda completion, target: 1.0, "does not fit TRL's convention"),
    (lambda completions, answer, missing_column, **kw: [0.0], "requires \\['missing_column'\\]"),
])
def test_a_wrong_signature_is_refused_up_front(fn, message):
    with pytest.raises(ValueError, match=message):
        PromptDataset(ROWS, [fn])


@pytest.mark.parametrize("out,message", [([1.0], "returned 1 rewards for 2 completions"),
                                         ("1.0", "must return a list"),
                                         ([1.0, "x"], "returned 'x'")])
def test_a_wrong_return_names_the_function(out, message):
    def bad_reward(completions, **kwargs):
        return out

    data = PromptDataset(ROWS, [bad_reward])
    with pytest.raises(ValueError, match=f"bad_reward.*{message}|{message}.*bad_reward"):
        data.score(["a", "b"], ["x", "y"], [[1], [2]], ROWS[:2], None)


def test_a_dataset_without_a_prompt_column_names_its_columns():
    with pytest.raises(ValueError, match=r"no 'prompt' column \(it has \['answer', 'question'\]\)"):
        PromptDataset([{"question": "1+1", "answer": "2"}], [reward_len])


def test_module_function_specs(tmp_path, monkeypatch):
    from maxent.envs.prompts import import_function

    (tmp_path / "my_rewards.py").write_text("def exact(completions, answer, **kw):\n"
                                            "    return [float(c == a) for c, a in zip(completions, answer)]\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert import_function("my_rewards:exact")(["2"], ["2"]) == [1.0]
    with pytest.raises(ValueError, match="module 'nope' does not import"):
        import_function("nope:f")
    with pytest.raises(ValueError, match=r"has no 'missing'; it defines \['exact'\]"):
        import_function("my_rewards:missing")


# --------------------------------------------------------------------------- training on a dataset


def test_grpo_trains_on_a_dataset_logs_each_reward_and_the_completions_table(tmp_path):
    agent = GRPO("tiny", ROWS, GRPOConfig(**TINY), log_dir=tmp_path,
                 reward_funcs=[reward_len, correct], reward_weights=[1.0, 2.0])
    agent.learn(2)
    row = agent.last_metrics
    assert "rewards/reward_len" in row and "rewards/correct" in row
    assert np.isfinite(row["train/loss"])
    agent.logger.close()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path), size_guidance={"tensors": 0})
    events.Reload()
    assert any("completions" in tag for tag in events.Tags()["tensors"])
    table = events.Tensors(next(t for t in events.Tags()["tensors"] if "completions" in t))[0]
    text = table.tensor_proto.string_val[0].decode()
    assert "| prompt | completion | reward | reward_len | correct |" in text


def test_a_dataset_run_saves_and_resumes_with_its_functions(tmp_path):
    agent = GRPO("tiny", ROWS, GRPOConfig(**TINY), reward_funcs=[reward_len])
    agent.learn(1)
    path = agent.save(tmp_path / "ck")
    with pytest.raises(ValueError, match="pass env"):
        GRPO.load(path)
    again = GRPO.load(path, env=ROWS, reward_funcs=[reward_len])
    agent.learn(1)
    again.learn(1)
    for (k, a), b in zip(agent.policy.state_dict().items(), again.policy.state_dict().values()):
        assert torch.equal(a, b), k


def test_a_conversational_dataset_goes_through_the_chat_template():
    from maxent import llm
    model, tokenizer = llm.load_model("tiny", seed=0, tiny={"hidden_size": 32, "num_layers": 1,
                                                          "num_heads": 2})
    tokenizer.chat_template = ("{% for m in messages %}{{ m['role'] }}:{{ m['content'] }};{% endfor %}"
                               "{% if add_generation_prompt %}assistant:{% endif %}")
    rows = [{"prompt": [{"role": "user", "content": f"{a}+1"}], "answer": str(a + 1)} for a in range(6)]
    got = []

    def format_reward(completions, **kwargs):  # TRL's conversational example
        contents = [completion[0]["content"] for completion in completions]
        got.extend(completions)
        return [1.0 if re.match(r"^\d+$", c) else 0.0 for c in contents]

    agent = GRPO(model, rows, GRPOConfig(**TINY), tokenizer=tokenizer, reward_funcs=[format_reward])
    agent.learn(1)
    assert got and all(c[0]["role"] == "assistant" for c in got)
    ids = agent.encode([rows[0]["prompt"]])[0]
    assert tokenizer.decode(ids).endswith("assistant:")


def test_train_grpo_from_a_dataset_file_and_module_functions(tmp_path, monkeypatch, capsys):
    (tmp_path / "data.jsonl").write_text("\n".join(json.dumps(r) for r in ROWS))
    (tmp_path / "rewards_mod.py").write_text(
        "def correct(completions, answer, **kwargs):\n"
        "    return [float(c.strip() == a) for c, a in zip(completions, answer)]\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    flags = ["--dataset", "data.jsonl", "--reward-funcs", "rewards_mod:correct",
             "--run-dir", str(tmp_path / "run"), "--total-steps", "2", "--eval-prompts", "4",
             "--no-progress-bar", "--config.tiny-hidden-size", "16", "--config.tiny-layers", "1",
             "--config.tiny-heads", "2", "--config.prompts-per-step", "2",
             "--config.group-size", "2", "--config.max-new-tokens", "3"]
    from maxent.cli.main import main

    train = ["train", "grpo"]
    assert main([*train, *flags]) == 0
    out = capsys.readouterr().out
    assert "GRPO data.jsonl: 2 steps" in out and "held-out mean reward" in out
    assert (tmp_path / "run" / "model").is_dir() and (tmp_path / "run" / "progress.csv").exists()
    assert main([*train, *flags]) == 0  # resumes: nothing left
    assert "resuming" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="module 'missing' does not import"):
        main([*train, *flags[:2], "--reward-funcs", "missing:f", *flags[4:]])
    with pytest.raises(SystemExit, match="--dataset needs --reward-funcs"):
        main([*train, "--dataset", "data.jsonl", "--run-dir", str(tmp_path / "other")])


# --------------------------------------------------------------------------- LoRA and memory


def test_lora_trains_only_adapters_and_checkpoints_hold_only_them(tmp_path):
    agent = GRPO("tiny", ROWS, GRPOConfig(**TINY, lora_rank=4, lora_target_modules=("q_proj", "v_proj")),
                 reward_funcs=[reward_len])
    base = {k: v.clone() for k, v in agent.policy.state_dict().items() if "lora_" not in k}
    agent.learn(2)
    after = agent.policy.state_dict()
    assert all(torch.equal(after[k], v) for k, v in base.items())  # the base never moves
    lora = {k: v for k, v in after.items() if "lora_B" in k}
    assert lora and any(v.abs().sum() > 0 for v in lora.values())  # B starts at 0 and learned
    path = agent.save(tmp_path / "ck")
    import safetensors.torch

    saved = safetensors.torch.load_file(path / "weights.safetensors")
    model_keys = [k for k in saved if not k.startswith(("optimizer", "entropy_controller"))]
    assert model_keys and all(k.startswith("adapter.") and "lora_" in k for k in model_keys)
    again = GRPO.load(path, env=ROWS, reward_funcs=[reward_len])
    for k, v in agent.policy.state_dict().items():
        assert torch.equal(again.policy.state_dict()[k], v), k
    agent.learn(1)
    again.learn(1)
    for k, v in agent.policy.state_dict().items():
        assert torch.equal(again.policy.state_dict()[k], v), k


def test_lora_target_modules_that_do_not_exist_are_listed():
    with pytest.raises(ValueError, match=r"\['qkv'\] do not exist.*linear layers are \['down_proj'"):
        GRPO("tiny", ROWS, GRPOConfig(**TINY, lora_rank=4, lora_target_modules=("qkv",)),
             reward_funcs=[reward_len])


@pytest.mark.parametrize("switches", [{"gradient_checkpointing": True}, {"autocast": True},
                                      {"gradient_checkpointing": True, "lora_rank": 2}])
def test_memory_switches_train(switches):
    agent = GRPO("tiny", ROWS, GRPOConfig(**{**TINY, **switches}), reward_funcs=[reward_len])
    before = {k: v.clone() for k, v in agent.policy.state_dict().items()}
    agent.learn(1)
    assert np.isfinite(agent.last_metrics["train/loss"])
    assert any(not torch.equal(v, agent.policy.state_dict()[k]) for k, v in before.items())


def test_a_prompt_budget_beyond_the_context_window_is_refused():
    with pytest.raises(ValueError, match=r"max_prompt_tokens \(500\) \+ max_new_tokens \(100\) = 600 "
                                         r"tokens exceed the model.s context window \(256 positions\)"):
        GRPO("tiny", ROWS, GRPOConfig(**{**TINY, "max_prompt_tokens": 500, "max_new_tokens": 100}),
             reward_funcs=[reward_len])


# --------------------------------------------------------------------------- export


@pytest.mark.parametrize("lora", [0, 4])
def test_save_pretrained_loads_in_transformers_with_the_same_logits(tmp_path, lora):
    import transformers

    agent = GRPO("tiny", ROWS, GRPOConfig(**TINY, lora_rank=lora), reward_funcs=[reward_len])
    agent.learn(2)
    out = agent.save_pretrained(tmp_path / "hf")
    model = transformers.AutoModelForCausalLM.from_pretrained(out)
    tokenizer = transformers.AutoTokenizer.from_pretrained(out)
    ids = torch.tensor([agent.encode(["3+4="])[0]])
    with torch.no_grad():
        expected = agent.policy(input_ids=ids).logits
        got = model(input_ids=ids).logits
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    assert tokenizer("3+4=")["input_ids"] == agent.tokenizer("3+4=")["input_ids"]


def test_maxent_export_writes_a_folder_from_a_run(tmp_path, capsys):
    import transformers

    from maxent.cli.main import main

    agent = GRPO("tiny", "maxent/TextArithmetic-v0", GRPOConfig(**TINY))
    agent.learn(1)
    agent.save(tmp_path / "run" / "model")
    assert main(["export", str(tmp_path / "run"), str(tmp_path / "hf")]) == 0
    assert "exported" in capsys.readouterr().out
    assert transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf") is not None
    with pytest.raises(SystemExit, match="not empty"):
        main(["export", str(tmp_path / "run"), str(tmp_path / "hf")])


def test_reward_functions_need_at_least_one():
    with pytest.raises(ValueError, match="at least one"):
        RewardFunctions([])
    with pytest.raises(CheckpointError):
        GRPO.load("/nonexistent/ckpt")
