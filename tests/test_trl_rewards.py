"""The reward-function contract of TRL kept by maxent's GRPO: failures stop the run naming the
function, the sample and the cause (or are skipped when asked, counted and logged),
``trainer_state`` carries the TrainerState fields reward functions read, ``log_metric`` /
``log_extra`` reach the log and the completions table, bool / tensor / None returns mean what
they mean in TRL, reward models score as TRL scores them, and datasets come in TRL's shapes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("accelerate")

from maxent.agents.grpo import GRPO, GRPOConfig
from maxent.envs.prompts import PromptDataset, RewardFunctionError, RewardFunctions, TrainerState

TINY = {"device": "cpu", "tiny_hidden_size": 32, "tiny_layers": 1, "tiny_heads": 2,
        "group_size": 4, "prompts_per_step": 2, "max_new_tokens": 4, "learning_rate": 1e-2,
        "mask_truncated": False, "log_completions_every": 1}
ROWS = [{"prompt": f"{a}+{b}=", "answer": str(a + b)} for a in range(5) for b in range(4)]


def length_reward(completions, **kwargs):
    return [float(len(c)) for c in completions]


# --------------------------------------------------------------------------- failures


def test_a_raising_reward_function_stops_the_run_naming_function_sample_and_cause():
    def picky(completions, prompts, **kwargs):
        return [1.0 / (p != "1+1=") for p in prompts]  # ZeroDivisionError on one prompt

    agent = GRPO("tiny", [{"prompt": "1+1="}, {"prompt": "2+2="}], GRPOConfig(**TINY),
                 reward_funcs=[picky])
    with pytest.raises(RewardFunctionError, match=r"picky raised ZeroDivisionError.*on sample \d+ "
                                                  r"\(prompt '1\+1='.*reward_failures='skip'"):
        agent.train_step()


def test_trl_only_arguments_no_longer_fail_silently():
    """What used to warn every step with loss 0: reading max_steps, calling log_metric."""
    seen = {}

    def annealed(completions, trainer_state, log_metric, log_extra, **kwargs):
        seen["state"] = (trainer_state.global_step, trainer_state.max_steps, trainer_state.epoch,
                         trainer_state.num_train_epochs, len(trainer_state.log_history))
        log_metric("mean_length", float(np.mean([len(c) for c in completions])))
        log_extra("length", [len(c) for c in completions])
        return [len(c) * trainer_state.global_step / trainer_state.max_steps for c in completions]

    agent = GRPO("tiny", ROWS, GRPOConfig(**TINY), reward_funcs=[annealed])
    agent.learn(2)
    assert seen["state"][:2] == (1, 2)
    assert seen["state"][2] == pytest.approx(1 * 2 / len(ROWS))  # one step of 2 prompts
    assert seen["state"][3] == math.ceil(2 / (len(ROWS) / 2)) and seen["state"][4] == 1
    assert "mean_length" in agent.last_metrics and agent.last_metrics["rollout/skipped_fraction"] == 0
    assert [row["step"] for row in agent.trainer_state.log_history] == [1, 2]


def test_log_extra_columns_join_the_completions_table():
    from maxent.agents.grpo import completions_table

    def tagger(completions, log_extra, **kwargs):
        log_extra("tag", [f"t{i}" for i in range(len(completions))])
        return [1.0] * len(completions)

    agent = GRPO("tiny", ROWS, GRPOConfig(**TINY), reward_funcs=[tagger])
    rollout = agent.rollout(0)
    _, extras = agent.rewards.drain_logs()
    table = completions_table(rollout, agent.rewards.names, extras=extras)
    assert "| tag |" in table.splitlines()[0] and "t0" in table.splitlines()[2]


def test_skipping_failures_is_explicit_counted_and_stops_when_everything_fails():
    calls = {"n": 0}

    def flaky(completions, **kwargs):
        calls["n"] += 1
        if calls["n"] % 2 == 0:
            raise RuntimeError("grader offline")
        return [1.0] * len(completions)

    agent = GRPO("tiny", ROWS, GRPOConfig(**TINY, reward_failures="skip"),
                 reward_funcs=[flaky, length_reward])
    with pytest.warns(RuntimeWarning, match="grader offline"):
        agent.train_step()
        row = agent.train_step()  # flaky fails here; length_reward still scores
    assert row["rollout/skipped_fraction"] == 0.0

    def broken(completions, **kwargs):
        raise RuntimeError("grader offline")

    agent = GRPO("tiny", ROWS, GRPOConfig(**TINY, reward_failures="skip"), reward_funcs=[broken])
    with pytest.raises(RuntimeError, match="every completion was skipped.*grader offline"):
        agent.train_step()


def test_a_text_task_reward_fn_that_raises_names_the_sample():
    from maxent.envs.text import make_arithmetic

    def reward_fn(completion, target):
        raise ValueError("cannot parse")

    agent = GRPO("tiny", make_arithmetic(difficulty=1), GRPOConfig(**TINY), reward_fn=reward_fn)
    with pytest.raises(RewardFunctionError, match=r"reward_fn raised ValueError: cannot parse on "
                                                  r"sample 0 \(completion"):
        agent.rollout(0)


# --------------------------------------------------------------------------- return types


@pytest.mark.parametrize("out, expected", [
    ([True, False], [1.0, 0.0]),
    (torch.tensor([0.5, 2.0]), [0.5, 2.0]),
    ([torch.tensor(1.5), np.float32(2.5)], [1.5, 2.5]),
    (np.array([3, 4]), [3.0, 4.0]),
    ([None, 1.0], [np.nan, 1.0]),
])
def test_bool_tensor_and_none_returns_as_trl_takes_them(out, expected):
    scored = RewardFunctions([lambda completions, **kw: out])([1, 2], ["a", "b"], [[1], [2]], {},
                                                              TrainerState())
    np.testing.assert_allclose(scored.per_function[:, 0], expected)


def test_a_wrong_return_type_names_function_sample_and_type():
    def bad(completions, **kwargs):
        return [1.0, {"score": 1}]

    with pytest.raises(ValueError, match=r"reward function bad returned .*\(dict\) for sample 1 "
                                         r"\(completion 'yy'\)"):
        RewardFunctions([bad])(["p", "q"], ["x", "yy"], [[1], [2]], {}, TrainerState())


def test_none_is_not_applicable_in_the_weighted_sum_as_trls_nansum():
    def half(completions, **kwargs):
        return [None, 2.0]

    scored = RewardFunctions([half, lambda completions, **kw: [1.0, 1.0]], [3.0, 1.0])(
        ["p", "q"], ["a", "b"], [[1], [2]], {}, TrainerState())
    np.testing.assert_allclose(scored.rewards, [1.0, 7.0])


# --------------------------------------------------------------------------- advantages


def test_batch_scaling_and_normalize_then_sum_follow_trls_formulas():
    from maxent.agents.grpo_advantages import advantages_from_rewards

    g = torch.Generator().manual_seed(0)
    terms = torch.randn(8, 2, generator=g)
    weights = torch.tensor([1.0, 0.5])
    rewards = (terms * weights).sum(-1)
    batch = advantages_from_rewards(rewards, terms, weights, 4, "batch", "sum_then_normalize")
    expected = (rewards - rewards.view(2, 4).mean(1).repeat_interleave(4)) / (rewards.std() + 1e-6)
    torch.testing.assert_close(batch, expected)
    gdpo = advantages_from_rewards(rewards, terms, weights, 4, "group", "normalize_then_sum")
    grouped = terms.view(2, 4, 2)
    z = ((grouped - grouped.mean(1, keepdim=True)) / (grouped.std(1, keepdim=True) + 1e-6)).view(8, 2)
    combined = (z * weights).sum(-1)
    torch.testing.assert_close(gdpo, (combined - combined.mean()) / (combined.std() + 1e-6))
    agent = GRPO("tiny", ROWS, GRPOConfig(**TINY, scale_rewards="batch",
                                          multi_objective_aggregation="normalize_then_sum"),
                 reward_funcs=[length_reward, lambda completions, **kw: [1.0] * len(completions)])
    assert math.isfinite(agent.train_step()["train/loss"])


# --------------------------------------------------------------------------- reward models


def tiny_classifier(tmp_path=None):
    from transformers import Qwen2Config, Qwen2ForSequenceClassification

    from maxent import llm

    tokenizer = llm.build_char_tokenizer()
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32,
                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                         num_labels=1, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    model = Qwen2ForSequenceClassification(config).eval()
    if tmp_path is not None:
        model.save_pretrained(tmp_path)
        tokenizer.save_pretrained(tmp_path)
    return model, tokenizer


def test_a_reward_model_scores_prompt_plus_completion_as_trl(tmp_path):
    model, tokenizer = tiny_classifier()
    fns = RewardFunctions([model], processing_classes=[tokenizer])
    scored = fns(["1+1=", "2+2="], ["2", "44"], [[1], [2]], {}, TrainerState())
    texts = ["1+1=2", "2+2=44"]
    inputs = tokenizer(texts, return_tensors="pt", padding=True, padding_side="right",
                       add_special_tokens=False)
    with torch.no_grad():
        expected = model(**inputs).logits[:, 0].numpy()
    np.testing.assert_allclose(scored.per_function[:, 0], expected, rtol=1e-5)
    # A local folder loads as AutoModelForSequenceClassification(num_labels=1), tokenizer included.
    tiny_classifier(tmp_path)
    from_path = RewardFunctions([str(tmp_path)])
    np.testing.assert_allclose(from_path(["1+1=", "2+2="], ["2", "44"], [[1], [2]], {},
                                         TrainerState()).per_function[:, 0], expected, rtol=1e-5)
    agent = GRPO("tiny", ROWS, GRPOConfig(**TINY), reward_funcs=[
        PromptDataset(ROWS, [model], reward_processing_classes=[tokenizer]).rewards.functions[0]])
    assert math.isfinite(agent.train_step()["train/loss"])


def test_a_reward_model_without_a_tokenizer_is_named():
    model, _ = tiny_classifier()
    with pytest.raises(ValueError, match=r"reward model .*Qwen2ForSequenceClassification.* has no "
                                         r"tokenizer: pass reward_processing_classes"):
        RewardFunctions([model])
    with pytest.raises(ValueError, match="not a local model folder"):
        RewardFunctions(["/nonexistent/reward-model"])


# --------------------------------------------------------------------------- datasets


def test_dataset_shapes_trl_users_pass():
    datasets = pytest.importorskip("datasets")
    train = datasets.Dataset.from_list(ROWS)
    both = datasets.DatasetDict({"train": train, "test": train})
    with pytest.raises(ValueError, match=r"DatasetDict with splits \['test', 'train'\].*dataset\['test'\]"):
        PromptDataset(both, [length_reward])
    assert len(PromptDataset(both, [length_reward], split="train")) == len(ROWS)
    streamed = train.to_iterable_dataset()
    assert len(PromptDataset(streamed, [length_reward])) == len(ROWS)
    renamed = [{"question": r["prompt"], "answer": r["answer"]} for r in ROWS]
    data = PromptDataset(renamed, [length_reward], prompt_column="question")
    assert data.columns == ["answer"] and data.sample_prompts(1, np.random.default_rng(0))[0][0].endswith("=")


# --------------------------------------------------------------------------- generation options


def test_generation_options_reach_the_hf_sampler_and_are_refused_elsewhere():
    agent = GRPO("tiny", ROWS, GRPOConfig(**TINY), reward_funcs=[length_reward])
    ids = agent.encode(["1+2=", "3+4="])
    greedy = agent.sampler.generate(ids, max_new_tokens=4, greedy=True)
    top1 = agent.sampler.generate(ids, max_new_tokens=4, seed=3, top_k=1)
    assert greedy.texts == top1.texts  # top_k=1 sampling is greedy: the option is honoured
    with pytest.raises(ValueError, match=r"top_k=5 is honoured by sampler='hf' only, not "
                                         r"sampler='static'"):
        GRPOConfig(**TINY, sampler="static", top_k=5)
    cfg = GRPOConfig(**TINY, top_k=3, min_p=0.1, repetition_penalty=1.2,
                     generation_kwargs={"no_repeat_ngram_size": 2})
    assert cfg.sampling_options() == {"no_repeat_ngram_size": 2, "top_k": 3, "min_p": 0.1,
                                      "repetition_penalty": 1.2}
    assert GRPOConfig(**TINY).sampling_options() == {}


def test_new_loss_options_train():
    for options in ({"surrogate": "cispo", "clip_high": 4.0}, {"surrogate": "sapo"},
                    {"importance_sampling_level": "sequence"}, {"top_entropy_quantile": 0.2},
                    {"delta": 1.5, "kl_coef": 0.05, "kl_bias_correction": True}):
        agent = GRPO("tiny", ROWS, GRPOConfig(**TINY, **options), reward_funcs=[length_reward])
        assert math.isfinite(agent.train_step()["train/loss"]), options
    with pytest.raises(ValueError, match="delta must be > 1 \\+ clip_high"):
        GRPOConfig(**TINY, delta=1.1)


def test_reference_model_sync_mixes_the_policy_in_every_n_steps():
    agent = GRPO("tiny", ROWS, GRPOConfig(**TINY, kl_coef=0.05, ref_model_sync_steps=2,
                                          ref_model_mixup_alpha=0.6), reward_funcs=[length_reward])
    initial = {k: v.clone() for k, v in agent.ref_model.named_parameters()}
    agent.train_step()
    for k, v in agent.ref_model.named_parameters():  # step 1: not yet
        torch.testing.assert_close(v, initial[k], rtol=0, atol=0)
    agent.train_step()
    policy = dict(agent.policy.named_parameters())
    for k, v in agent.ref_model.named_parameters():
        torch.testing.assert_close(v, 0.6 * policy[k].detach() + 0.4 * initial[k])
    with pytest.raises(ValueError, match="ref_model_sync_steps needs a reference model"):
        GRPOConfig(**TINY, ref_model_sync_steps=2)
