"""The drop-in TRL front ``maxent.trl``: TRL's documented GRPO examples run with only the import
changed, TRL's field names and defaults, every TRL field honoured or refused by name, TRL's
callbacks, evaluation, schedules, and an exported model whose tokenizer round-trips text."""

from __future__ import annotations

import importlib.util
import math
import re
import sys
from pathlib import Path

import pytest

pytest.importorskip("transformers")
pytest.importorskip("accelerate")
datasets = pytest.importorskip("datasets")

from maxent.trl import GRPOConfig, GRPOTrainer, UnsupportedTRLField
from maxent.trl.fields import HONOURED, NO_EFFECT, TRL_DEFAULTS

REPO = Path(__file__).resolve().parents[1]
SMALL = dict(max_steps=2, per_device_train_batch_size=4, num_generations=4, max_completion_length=6,
             report_to="none", use_cpu=True, save_strategy="no", logging_steps=1)


# TRL's documented examples, each written out with a tiny model (examples/).
TRL_EXAMPLES = ["trl_quickstart", "trl_reward_functions", "trl_environment_factory"]


def example(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    return example("trl_quickstart").tiny_model_folder(str(tmp_path_factory.mktemp("tiny")))


def prompts(n=12):
    return datasets.Dataset.from_dict({"prompt": [f"{i}+{i}=" for i in range(n)],
                                       "answer": [str(2 * i) for i in range(n)]})


def reward_len(completions, **kwargs):
    return [-abs(4 - len(c)) for c in completions]


# --------------------------------------------------------------------------- the examples


@pytest.mark.parametrize("name", TRL_EXAMPLES)
def test_trls_examples_run_with_only_the_import_changed(name, tmp_path, capsys):
    text = (REPO / "examples" / f"{name}.py").read_text()
    imports = [line for line in text.splitlines() if re.match(r"\s*(from|import) .*trl\b", line)]
    assert imports == ["from maxent.trl import GRPOConfig, GRPOTrainer  # TRL: from trl import "
                       "GRPOConfig, GRPOTrainer"]
    module = example(name)
    with pytest.raises(SystemExit):
        module.main(["--help"])
    assert "usage" in capsys.readouterr().out
    trainer = module.main(["--max-steps", "1", "--output-dir", str(tmp_path / "out")])
    assert trainer.state.global_step == 1 and math.isfinite(trainer.agent.last_metrics["train/loss"])
    if name == "trl_reward_functions":  # its reward function's log_metric reached the log row
        assert "exact_match" in trainer.agent.last_metrics
    else:
        from transformers import AutoModelForCausalLM

        assert AutoModelForCausalLM.from_pretrained(tmp_path / "out") is not None
    if name == "trl_environment_factory":  # multi-turn episodes, scored by TRL's rules
        assert trainer.agent.multiturn.episode_scorer is not None


# --------------------------------------------------------------------------- the config


def test_trls_defaults_are_the_fronts():
    args = GRPOConfig()
    native = args.maxent_overrides()
    assert args.output_dir == "trainer_output" and args.learning_rate == 1e-6
    assert native["clip_high"] == native["clip_low"] == 0.2          # epsilon_high None -> epsilon
    assert native["mask_truncated"] is False                         # mask_truncated_completions
    assert native["max_new_tokens"] == 512 and native["group_size"] == 8
    assert native["aggregation"] == "token-mean" and native["kl_bias_correction"] is True  # dapo
    assert native["scale_rewards"] == "group" and native["autocast"] is True  # bf16 None -> on
    from maxent.agents.grpo_config import GRPOConfig as Native

    settings = Native(**GRPOConfig(entropy_coef=0.1, beta=0.04, loss_type="grpo").maxent_overrides()
                      ).loss_settings()  # what test_trl_equivalence checks against TRL's loss
    assert (settings.entropy_aggregation, settings.aggregation, settings.kl_importance_correction,
            settings.clip_high, settings.max_length) == ("token-mean", "seq-mean-token-mean", True, 0.2, 512)


def test_every_trl_field_is_classified_and_documented():
    from maxent.trl.fields import markdown_table

    docs = (REPO / "docs" / "trl.md").read_text()
    assert markdown_table() in docs  # regenerate the table from maxent.trl.fields when this fails
    for name in TRL_DEFAULTS:
        assert f"`{name}`" in docs, name
    trl = pytest.importorskip("trl")
    import dataclasses

    assert {f.name for f in dataclasses.fields(trl.GRPOConfig)} == set(TRL_DEFAULTS)


def test_unknown_and_unsupported_fields_are_named():
    with pytest.raises(TypeError, match=r"unknown field 'lerning_rate'.*closest TRL field: "
                                        r"'learning_rate'.*closest maxent GRPOConfig field is "
                                        r"'learning_rate'"):
        GRPOConfig(lerning_rate=1e-5)
    with pytest.raises(TypeError, match=r"unknown field 'kl_coeff'.*closest maxent GRPOConfig field "
                                        r"is 'kl_coef'"):
        GRPOConfig(kl_coeff=0.1)
    with pytest.raises(UnsupportedTRLField, match=r"push_to_hub=True \(no Hub uploads"):
        GRPOConfig(push_to_hub=True)
    with pytest.raises(UnsupportedTRLField, match=r"loss_type='vespo'"):
        GRPOConfig(loss_type="vespo")
    with pytest.raises(UnsupportedTRLField, match=r"off_policy_mask_threshold=0.5 \(not implemented"):
        GRPOConfig(off_policy_mask_threshold=0.5)
    synced = GRPOConfig(sync_ref_model=True, ref_model_sync_steps=3, beta=0.1).maxent_overrides()
    assert synced["ref_model_sync_steps"] == 3 and synced["ref_model_mixup_alpha"] == 0.6
    with pytest.warns(UserWarning, match="run_name='x' has no effect"):
        GRPOConfig(run_name="x")
    assert not set(HONOURED) & set(NO_EFFECT)


def test_loss_types_map_to_maxents_losses():
    assert GRPOConfig(loss_type="grpo").maxent_overrides()["aggregation"] == "seq-mean-token-mean"
    assert GRPOConfig(loss_type="dr_grpo").maxent_overrides()["aggregation"] == "seq-mean-token-sum-norm"
    cispo = GRPOConfig(loss_type="cispo", epsilon_high=5.0).maxent_overrides()
    assert cispo["surrogate"] == "cispo" and cispo["clip_high"] == 5.0
    gspo = GRPOConfig(importance_sampling_level="sequence", scale_rewards=False).maxent_overrides()
    assert gspo["importance_sampling_level"] == "sequence" and gspo["scale_rewards"] == "none"


# --------------------------------------------------------------------------- the trainer


class Recorder:
    """A transformers TrainerCallback as TRL users write them."""

    def __init__(self, stop_at=None):
        from transformers import TrainerCallback

        self.events, self.stop_at = [], stop_at
        self.__class__ = type("Recorder", (Recorder, TrainerCallback), {})

    def on_train_begin(self, args, state, control, **kwargs):
        self.events.append(("begin", state.max_steps))

    def on_step_end(self, args, state, control, **kwargs):
        self.events.append(("step", state.global_step))
        if self.stop_at is not None and state.global_step >= self.stop_at:
            control.should_training_stop = True
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.events.append(("log", "train/loss" in logs))

    def on_train_end(self, args, state, control, **kwargs):
        self.events.append(("end", state.global_step))


def test_trl_callbacks_run_and_can_stop_training(tiny_folder, tmp_path):
    recorder = Recorder()
    trainer = GRPOTrainer(tiny_folder, reward_len, GRPOConfig(str(tmp_path), **SMALL),
                          train_dataset=prompts(), callbacks=[recorder])
    trainer.train()
    assert recorder.events == [("begin", 2), ("step", 1), ("log", True), ("step", 2), ("log", True),
                               ("end", 2)]
    stopper = Recorder(stop_at=1)
    trainer = GRPOTrainer(tiny_folder, reward_len, GRPOConfig(str(tmp_path), **{**SMALL, "max_steps": 5}),
                          train_dataset=prompts(), callbacks=[stopper])
    out = trainer.train()
    assert out.global_step == 1 and stopper.events[-1] == ("end", 1)


def test_native_grpo_accepts_a_trainer_callback():
    from maxent.agents.grpo import GRPO, GRPOConfig as Native

    recorder = Recorder(stop_at=1)
    agent = GRPO("tiny", [{"prompt": "1+1="}], Native(device="cpu", tiny_hidden_size=32, tiny_layers=1,
                                                      tiny_heads=2, group_size=2, prompts_per_step=1,
                                                      max_new_tokens=3),
                 reward_funcs=[reward_len])
    agent.learn(3, callback=recorder)
    assert agent.num_timesteps == 1 and ("begin", 3) in recorder.events


def test_schedule_evaluation_checkpoints_and_lora(tiny_folder, tmp_path):
    peft = pytest.importorskip("peft")
    args = GRPOConfig(str(tmp_path), **{**SMALL, "save_strategy": "steps", "save_steps": 2,
                                        "eval_strategy": "steps", "eval_steps": 1,
                                        "learning_rate": 1e-3, "lr_scheduler_type": "linear"})
    trainer = GRPOTrainer(tiny_folder, reward_len, args, train_dataset=prompts(),
                          eval_dataset=prompts(4), peft_config=peft.LoraConfig(r=4, lora_alpha=8))
    trainer.train()
    assert [row["step"] for row in trainer.eval_history] == [1, 2]
    assert trainer.agent._torch_optimizer.param_groups[0]["lr"] == pytest.approx(0.0)  # linear decay
    assert (tmp_path / "checkpoint-2").is_dir() and trainer.agent.config.lora_rank == 4


def test_bad_input_to_the_trainer_is_named(tiny_folder, tmp_path):
    with pytest.raises(ValueError, match="not a local folder"):
        GRPOTrainer("Qwen/Qwen2-0.5B-Instruct", reward_len, GRPOConfig(str(tmp_path), **SMALL),
                    train_dataset=prompts())
    with pytest.raises(ValueError, match=r"DatasetDict with splits \['test', 'train'\]"):
        GRPOTrainer(tiny_folder, reward_len, GRPOConfig(str(tmp_path), **SMALL),
                    train_dataset=datasets.DatasetDict({"train": prompts(), "test": prompts()}))
    with pytest.raises(UnsupportedTRLField, match="optimizers"):
        GRPOTrainer(tiny_folder, reward_len, GRPOConfig(str(tmp_path), **SMALL), train_dataset=prompts(),
                    optimizers=(object(), None))
    with pytest.raises(ValueError, match="must divide by num_generations"):
        GRPOTrainer(tiny_folder, reward_len, GRPOConfig(str(tmp_path), **{**SMALL, "num_generations": 3}),
                    train_dataset=prompts())


# --------------------------------------------------------------------------- steps as TRL counts them


def trl_counts(num_iterations, steps_per_generation, gradient_accumulation_steps, max_steps,
               per_device_train_batch_size, num_generations, rows, num_train_epochs=1.0):
    """``(global_step, optimiser steps per generation, num_update_steps_per_epoch)`` that TRL 1.16
    and transformers 5 give one process, from their formulae."""
    # GRPOConfig.__post_init__: steps_per_generation defaults to gradient_accumulation_steps and
    # generation_batch_size = per_device_train_batch_size * num_processes * steps_per_generation.
    spg = steps_per_generation or gradient_accumulation_steps
    generation_batch = per_device_train_batch_size * spg
    # GRPOTrainer._prepare_inputs generates every steps_per_generation * num_iterations calls of
    # training_step; Trainer steps the optimiser (global_step) every gradient_accumulation_steps.
    per_generation = spg * num_iterations // gradient_accumulation_steps
    # RepeatSampler.__len__ over a dataloader of per_device_train_batch_size * spg rows, then
    # Trainer.set_initial_training_values: num_update_steps_per_epoch and max_steps.
    prompts = generation_batch // num_generations
    sampler = rows // prompts * prompts * num_generations * num_iterations * spg
    batches = math.ceil(sampler / (per_device_train_batch_size * spg))
    per_epoch = max(math.ceil(batches / gradient_accumulation_steps), 1)
    total = max_steps if max_steps > 0 else math.ceil(num_train_epochs * per_epoch)
    return total, per_generation, per_epoch


@pytest.mark.parametrize("iterations,spg,accumulation,max_steps", [
    (1, None, 1, 3), (2, None, 1, 4), (3, None, 2, 6), (2, 2, 2, 4), (2, None, 1, -1)])
def test_max_steps_and_global_step_count_optimiser_steps_as_trl(tiny_folder, tmp_path, iterations, spg,
                                                                 accumulation, max_steps):
    rows = 3  # with one prompt per generation, an epoch is 3 generations
    args = GRPOConfig(str(tmp_path), **{**SMALL, "max_steps": max_steps, "num_iterations": iterations,
                                        "steps_per_generation": spg,
                                        "gradient_accumulation_steps": accumulation,
                                        "per_device_train_batch_size": 4 // accumulation,
                                        "num_train_epochs": 1.0, "learning_rate": 1e-3})
    total, per_generation, per_epoch = trl_counts(iterations, spg, accumulation, max_steps,
                                                  4 // accumulation, 4, rows)
    recorder = Recorder()
    trainer = GRPOTrainer(tiny_folder, reward_len, args, train_dataset=prompts(rows), callbacks=[recorder])
    steps, rates = [0], []

    def count(optimizer, *_):
        steps[0] += 1
        rates.append(optimizer.param_groups[0]["lr"])

    trainer.agent._torch_optimizer.register_step_pre_hook(count)
    out = trainer.train()
    assert steps[0] == total == out.global_step == trainer.state.global_step == trainer.state.max_steps
    assert trainer.agent.num_timesteps == total // per_generation  # generations
    assert recorder.events[0] == ("begin", total)
    assert trainer.state.epoch == pytest.approx(total / per_epoch)
    assert [row["step"] for row in trainer.state.log_history] == list(range(per_generation, total + 1,
                                                                            per_generation))
    # transformers' linear schedule over `total` optimiser steps, stepped after each of them.
    assert rates == pytest.approx([1e-3 * (1 - k / total) for k in range(total)])


def test_max_steps_that_splits_a_generation_is_refused():
    with pytest.raises(UnsupportedTRLField, match=r"max_steps=5 is not a multiple of num_iterations=2.*"
                                                  r"set max_steps to 4 or 6"):
        GRPOConfig(max_steps=5, num_iterations=2)
    with pytest.raises(UnsupportedTRLField, match=r"num_train_epochs=1.5 is 3 optimiser steps"):
        GRPOConfig(num_train_epochs=1.5, num_iterations=2).total_steps(1, 1)
    with pytest.raises(ValueError, match=r"num_iterations=0: it must be a positive integer"):
        GRPOConfig(num_iterations=0)


@pytest.mark.slow
def test_global_step_matches_trl_itself(tiny_folder, tmp_path):
    """The same tiny run on TRL: its global_step, max_steps and AdamW step count equal the front's."""
    trl = pytest.importorskip("trl")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    settings = {**SMALL, "max_steps": 4, "num_iterations": 2, "gradient_accumulation_steps": 2,
                "per_device_train_batch_size": 2, "bf16": False, "gradient_checkpointing": False}
    counts = {}
    for name, config_cls, trainer_cls in (("trl", trl.GRPOConfig, trl.GRPOTrainer),
                                          ("maxent", GRPOConfig, GRPOTrainer)):
        args = config_cls(output_dir=str(tmp_path / name), **settings)
        trainer = trainer_cls(model=AutoModelForCausalLM.from_pretrained(tiny_folder), reward_funcs=reward_len,
                              args=args, train_dataset=prompts(3),
                              processing_class=AutoTokenizer.from_pretrained(tiny_folder))
        out = trainer.train()
        optimizer = trainer.agent._torch_optimizer if name == "maxent" else trainer.optimizer.optimizer
        adam_steps = {int(s["step"]) for s in optimizer.state.values()}  # AdamW's own step count
        counts[name] = (out.global_step, trainer.state.global_step, trainer.state.max_steps, adam_steps)
    assert counts["maxent"] == counts["trl"] == (4, 4, 4, {4})


# --------------------------------------------------------------------------- log history on resume


def _rows(trainer):
    return [{k: v for k, v in row.items() if k != "time/step_seconds"} for row in trainer.state.log_history]


def test_log_history_survives_resume_and_a_tampered_row_is_refused(tiny_folder, tmp_path):
    import hashlib
    import json

    from maxent.training.checkpoint import CheckpointError

    def args(folder, max_steps):
        return GRPOConfig(str(tmp_path / folder), **{**SMALL, "max_steps": max_steps, "num_iterations": 2,
                                                     "save_strategy": "steps", "save_steps": 4,
                                                     "learning_rate": 1e-3, "lr_scheduler_type": "constant"})

    whole = GRPOTrainer(tiny_folder, reward_len, args("whole", 8), train_dataset=prompts())
    whole.train()
    GRPOTrainer(tiny_folder, reward_len, args("parts", 4), train_dataset=prompts()).train()
    saved = tmp_path / "parts" / "checkpoint-4"
    resumed = GRPOTrainer(tiny_folder, reward_len, args("parts", 8), train_dataset=prompts())
    resumed.train(resume_from_checkpoint=str(saved))
    assert [row["step"] for row in _rows(whole)] == [2, 4, 6, 8]
    # save_steps counts optimiser steps, as TRL's: checkpoint-N is named by global_step.
    assert sorted(p.name for p in (tmp_path / "whole").glob("checkpoint-*")) == ["checkpoint-4", "checkpoint-8"]
    assert _rows(resumed) == _rows(whole)

    state = json.loads((saved / "state.json").read_text())
    assert [row["step"] for row in state["log_history"]] == [2, 4]
    for tamper, words in ((lambda rows: rows[0].update({"train/loss": "x"}), "expected a number"),
                          (lambda rows: rows[1].update({"step": 2}), "['step'] is 2"),
                          (lambda rows: rows.append({"step": 6}), "has 3 rows, more than the 2 steps")):
        edited = json.loads(json.dumps(state))
        tamper(edited["log_history"])
        data = json.dumps(edited).encode()
        (saved / "state.json").write_bytes(data)
        header = json.loads((saved / "config.json").read_text())
        header["files"]["state.json"] = hashlib.sha256(data).hexdigest()
        (saved / "config.json").write_text(json.dumps(header))
        again = GRPOTrainer(tiny_folder, reward_len, args("parts", 8), train_dataset=prompts())
        with pytest.raises(CheckpointError) as refused:
            again.train(resume_from_checkpoint=str(saved))
        message = str(refused.value)
        assert "\n" not in message and "field ['log_history']" in message and words in message, message


# --------------------------------------------------------------------------- the exported tokenizer


def test_exported_tiny_tokenizer_round_trips_through_autotokenizer(tiny_folder):
    from transformers import AutoTokenizer

    from maxent import llm

    loaded = AutoTokenizer.from_pretrained(tiny_folder)
    ours = llm.build_char_tokenizer()
    for text in ["a\nb", "12 + 30 = 42\n\nanswer: 42", "  lead and trail  ", "Q?A!"]:
        ids = loaded(text, add_special_tokens=False)["input_ids"]
        assert loaded.decode(ids) == text
        assert ids == ours(text, add_special_tokens=False)["input_ids"]
    assert loaded.eos_token_id == ours.eos_token_id and loaded.pad_token_id == ours.pad_token_id


def test_resume_from_the_latest_checkpoint_keeps_the_schedule(tiny_folder, tmp_path):
    from transformers import TrainerCallback

    class Rates(TrainerCallback):
        def __init__(self):
            self.rates = {}

        def on_step_end(self, args, state, control, optimizer=None, **kwargs):
            self.rates[state.global_step] = optimizer.param_groups[0]["lr"]

    args = GRPOConfig(str(tmp_path), **{**SMALL, "max_steps": 4, "save_strategy": "steps", "save_steps": 2,
                                        "learning_rate": 1e-3, "lr_scheduler_type": "linear"})
    first_rates, resumed_rates = Rates(), Rates()
    GRPOTrainer(tiny_folder, reward_len, args, train_dataset=prompts(), callbacks=[first_rates]).train()
    assert first_rates.rates[3] == pytest.approx(1e-3 * (1 - 3 / 4))  # the rate for step 4
    again = GRPOTrainer(tiny_folder, reward_len, args, train_dataset=prompts())
    out = again.train(resume_from_checkpoint=True)  # checkpoint-4: nothing left to train
    assert out.global_step == 4 and again.agent.num_timesteps == 4
    resumed = GRPOTrainer(tiny_folder, reward_len, args, train_dataset=prompts(), callbacks=[resumed_rates])
    resumed.train(resume_from_checkpoint=str(tmp_path / "checkpoint-2"))
    assert resumed.agent.num_timesteps == 4 and sorted(resumed_rates.rates) == [3, 4]
    assert resumed_rates.rates == pytest.approx({k: first_rates.rates[k] for k in (3, 4)})


@pytest.mark.slow
@pytest.mark.parametrize("name", TRL_EXAMPLES)
def test_the_examples_run_on_trl_itself_with_the_import_switched_back(name, tmp_path):
    """The other half of "only the import changed": the same file trains on TRL."""
    pytest.importorskip("trl")
    import subprocess

    text = (REPO / "examples" / f"{name}.py").read_text().replace(
        "from maxent.trl import GRPOConfig, GRPOTrainer", "from trl import GRPOConfig, GRPOTrainer")
    script = tmp_path / f"{name}_on_trl.py"
    script.write_text(text)
    (tmp_path / "_offline_model.py").write_text((REPO / "examples" / "_offline_model.py").read_text())
    done = subprocess.run([sys.executable, str(script), "--max-steps", "1", "--output-dir",
                           str(tmp_path / "out")], cwd=tmp_path, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
