"""Tests for maxent/llm/steering.py: activation capture, EAST vector, steering hooks, difference of
means, directional ablation and entropy neurons, on tiny models built from a config."""

from __future__ import annotations

import math

import pytest
import torch
import transformers
from torch import nn

from maxent.llm import steering
from maxent import llm
@pytest.fixture(scope="module")
def tiny():
    tok = llm.build_char_tokenizer()
    model = llm.build_tiny_model(tok, hidden_size=32, num_layers=3, num_heads=4, seed=0).eval()
    ids, mask = llm.left_pad([tok("hello world")["input_ids"], tok("abc")["input_ids"]],
                            tok.pad_token_id)
    return model, tok, ids, mask


def _gpt2():
    config = transformers.GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=60, n_positions=64,
                                     bos_token_id=0, eos_token_id=1)
    torch.manual_seed(0)
    return transformers.GPT2LMHeadModel(config).eval()


def _llama():
    config = transformers.LlamaConfig(vocab_size=60, hidden_size=32, intermediate_size=64,
                                      num_hidden_layers=2, num_attention_heads=4,
                                      num_key_value_heads=4, max_position_embeddings=64)
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(config).eval()


# --------------------------------------------------------------------------- steering hook


@pytest.mark.parametrize("positions", ["last", "all"])
def test_steer_adds_exactly_beta_v_at_the_layer(tiny, positions):
    model, _, ids, mask = tiny
    layer, beta = 1, 2.5
    v = torch.randn(32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        with steering.capture(model, [0, layer], position="all") as plain:
            plain_logits = model(input_ids=ids, attention_mask=mask).logits
        # Hooks run in registration order: this capture sees the steered output.
        with steering.steer(model, v, layer, beta, positions=positions), \
                steering.capture(model, [0, layer], position="all") as steered:
            steered_logits = model(input_ids=ids, attention_mask=mask).logits
    assert torch.equal(plain[0][0], steered[0][0])  # earlier layers untouched
    diff = steered[layer][0] - plain[layer][0]
    expected = torch.zeros_like(diff)
    if positions == "all":
        expected[:] = beta * v
    else:
        expected[:, -1] = beta * v
    torch.testing.assert_close(diff, expected, atol=1e-5, rtol=0)
    assert not torch.equal(plain_logits, steered_logits)


def test_steer_matches_a_manual_forward_of_the_remaining_layers(tiny):
    """Logits under steering equal the logits of running layers ℓ+1.. by hand on h + βv."""
    model, _, ids, _ = tiny
    layer, beta = 0, -3.0
    v = torch.randn(32, generator=torch.Generator().manual_seed(2))
    n = len(model.model.layers)
    with torch.no_grad():
        with steering.steer(model, v, layer, beta, positions="all"):
            steered = model(input_ids=ids, use_cache=False).logits
        h = model.model.embed_tokens(ids)
        pos = torch.arange(ids.shape[1]).unsqueeze(0)
        rope = model.model.rotary_emb(h, pos)
        causal = torch.full((ids.shape[1], ids.shape[1]), float("-inf")).triu(1)[None, None]
        for i in range(n):
            h = model.model.layers[i](h, attention_mask=causal, position_embeddings=rope,
                                      position_ids=pos)
            h = h[0] if isinstance(h, tuple) else h
            if i == layer:
                h = h + beta * v
        manual = model.lm_head(model.model.norm(h))
    torch.testing.assert_close(steered, manual, atol=1e-4, rtol=1e-4)


def test_hooks_are_removed_after_exit_and_after_an_exception(tiny):
    model, _, ids, mask = tiny
    v = torch.ones(32)
    with torch.no_grad():
        before = model(input_ids=ids, attention_mask=mask).logits
        with steering.steer(model, v, 0, 5.0):
            pass
        after = model(input_ids=ids, attention_mask=mask).logits
        with pytest.raises(RuntimeError, match="boom"), steering.steer(model, v, 2, 5.0), \
                steering.ablate(model, v):
            raise RuntimeError("boom")
        after_error = model(input_ids=ids, attention_mask=mask).logits
    assert torch.equal(before, after) and torch.equal(before, after_error)
    assert all(not layer._forward_hooks for layer in model.model.layers)


def test_steer_during_generation_touches_last_prompt_and_generated_positions(tiny):
    model, _, ids, mask = tiny
    v = torch.randn(32, generator=torch.Generator().manual_seed(3))
    seen = []
    hook = model.model.layers[1].register_forward_hook(lambda m, i, o: seen.append(o.shape[1]))
    try:
        with torch.no_grad(), steering.steer(model, v, 1, 50.0):
            steered = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=4,
                                     do_sample=False, pad_token_id=0)
    finally:
        hook.remove()
    with torch.no_grad():
        plain = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=4,
                               do_sample=False, pad_token_id=0)
    assert seen[0] == ids.shape[1] and set(seen[1:]) == {1}  # prompt pass, then one token each
    assert not torch.equal(plain, steered)  # a large push changes the greedy continuation


# --------------------------------------------------------------------------- architectures


@pytest.mark.parametrize("make", [_gpt2, _llama])
def test_other_architectures_capture_and_steer(make):
    model = make()
    ids = torch.tensor([[3, 4, 5, 6], [7, 8, 9, 10]])
    v = torch.randn(32)
    acts = steering.last_token_activations(model, ids)
    assert acts.shape == (2, 2, 32)
    with torch.no_grad():
        with steering.capture(model, [1], position="all") as rec:
            model(ids)
        torch.testing.assert_close(rec[1][0][:, -1], acts[1])
        with steering.steer(model, v, 0, 1.0), steering.capture(model, [0]) as steered:
            model(ids)
        plain = steering.last_token_activations(model, ids, layers=[0])[0]
    torch.testing.assert_close(steered[0][0] - plain, v.expand(2, 32), atol=1e-5, rtol=0)
    assert steering.entropy_neurons(model, n=3).indices


def test_capture_all_positions_and_left_padding(tiny):
    model, _, ids, mask = tiny
    last = steering.last_token_activations(model, ids, mask, layers=[0, 2])
    with torch.no_grad(), steering.capture(model, [2], position="all") as rec:
        model(input_ids=ids, attention_mask=mask)
    assert rec[2][0].shape == (2, ids.shape[1], 32)
    torch.testing.assert_close(rec[2][0][:, -1], last[1])
    with pytest.raises(ValueError, match="pad on the left"):
        steering.last_token_activations(model, ids, mask.flip(1))


# --------------------------------------------------------------------------- EAST vector


def test_east_vector_with_equal_entropies_is_the_mean_of_centred_activations():
    g = torch.Generator().manual_seed(0)
    runs = [torch.randn(5, 8, generator=g) + 3.0, torch.randn(7, 8, generator=g) - 1.0]
    u = steering.east_vector(runs, [torch.full((5,), 0.7), torch.full((7,), 0.7)])
    centred = torch.cat([r - r.mean(0) for r in runs])
    torch.testing.assert_close(u, centred.mean(0), atol=1e-6, rtol=0)
    assert u.norm() < 1e-5  # centring removes each run's mean: nothing survives equal weights


def test_east_vector_matches_equation_one_and_finds_the_entropy_direction():
    g = torch.Generator().manual_seed(1)
    direction = torch.zeros(16)
    direction[3] = 1.0
    acts, ents = [], []
    for k in range(6):
        h = torch.rand(10, generator=g)
        z = torch.randn(10, 16, generator=g) * 0.1 + 5.0 * k + h.unsqueeze(1) * direction
        acts.append(z)
        ents.append(h)
    u = steering.east_vector(torch.stack(acts), torch.stack(ents))
    manual = sum((h.unsqueeze(1) * (z - z.mean(0))).sum(0) for z, h in zip(acts, ents))
    manual = manual / sum(h.sum() for h in ents)
    torch.testing.assert_close(u, manual.float(), atol=1e-6, rtol=1e-5)
    cos = torch.nn.functional.cosine_similarity(u, direction, dim=0)
    assert cos > 0.95  # the per-run offsets 5k would dominate without centring


def test_east_vector_bad_input():
    z = torch.zeros(3, 4)
    with pytest.raises(ValueError, match="log is empty"):
        steering.east_vector([], [])
    with pytest.raises(ValueError, match="NaN or inf"):
        steering.east_vector([z], [torch.tensor([0.1, math.nan, 0.2])])
    with pytest.raises(ValueError, match=">= 0"):
        steering.east_vector([z], [torch.tensor([0.1, -0.1, 0.2])])
    with pytest.raises(ValueError, match="Z = 0"):
        steering.east_vector([z], [torch.zeros(3)])
    with pytest.raises(ValueError, match="one entropy per logged step"):
        steering.east_vector([z], [torch.ones(2)])
    with pytest.raises(ValueError, match="width 5"):
        steering.east_vector([z, torch.zeros(2, 5)], [torch.ones(3), torch.ones(2)])


# --------------------------------------------------------------------------- directions


def test_difference_of_means_recovers_a_planted_direction():
    g = torch.Generator().manual_seed(0)
    planted = torch.randn(64, generator=g)
    planted /= planted.norm()
    noise = lambda n: torch.randn(n, 64, generator=g)
    true, false = noise(400) + 2.0 * planted, noise(400) - 2.0 * planted
    d = steering.mean_difference(true, false)
    assert steering.direction_similarity(d, planted) > 0.95
    assert abs(float(d @ planted) - 4.0) < 0.3
    layered = steering.mean_difference(torch.stack([true, -true], 1), torch.stack([false, -false], 1))
    sims = steering.direction_similarity(layered, torch.stack([planted, planted]))
    assert sims.shape == (2,) and sims[0] > 0.95 and sims[1] < -0.95
    with pytest.raises(ValueError, match="at least one sample"):
        steering.mean_difference(torch.zeros(0, 4), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="same shape"):
        steering.direction_similarity(torch.zeros(3), torch.zeros(4))


def test_directional_ablation_removes_the_component(tiny):
    model, _, ids, mask = tiny
    r = torch.randn(32, generator=torch.Generator().manual_seed(5))
    unit = r / r.norm()
    with torch.no_grad():
        with steering.capture(model, [0, 1, 2], position="all") as plain:
            model(input_ids=ids, attention_mask=mask)
        with steering.ablate(model, 3.0 * r), steering.capture(model, [0, 1, 2], position="all") as rec:
            model(input_ids=ids, attention_mask=mask)
    for layer in (0, 1, 2):
        assert (plain[layer][0] @ unit).abs().max() > 0.01
        assert (rec[layer][0] @ unit).abs().max() < 1e-7
    with pytest.raises(ValueError, match="zero vector"), steering.ablate(model, torch.zeros(32)):
        pass


def test_entropy_neurons_find_a_planted_null_space_neuron(tiny):
    tok = llm.build_char_tokenizer()
    model = llm.build_tiny_model(tok, hidden_size=32, num_layers=2, num_heads=4, seed=1)
    with torch.no_grad():
        model.get_output_embeddings().weight[:, 0] = 0.0  # the unembedding ignores dimension 0
        down = model.model.layers[-1].mlp.down_proj.weight  # (hidden, d_mlp)
        down[:, 7] = 0.0
        down[0, 7] = 25.0  # large norm, writes only into that null direction
    found = steering.entropy_neurons(model, n=5)
    assert found.indices[0] == 7
    assert found.norm.shape == (128,) and found.logit_var[7] < 1e-8
    assert steering.neuron_overlap([1, 2, 3], [2, 3, 4]) == pytest.approx(0.5)


# --------------------------------------------------------------------------- bad input


def test_bad_layer_vector_and_model(tiny):
    model = tiny[0]
    with pytest.raises(ValueError, match=r"valid indices are 0\.\.2"), \
            steering.steer(model, torch.zeros(32), 3, 1.0):
        pass
    with pytest.raises(ValueError, match=r"shape \(32,\).*got \(31,\)"), \
            steering.steer(model, torch.zeros(31), 0, 1.0):
        pass
    with pytest.raises(ValueError, match="beta must be finite"), \
            steering.steer(model, torch.zeros(32), 0, math.inf):
        pass

    class Mystery(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = nn.ModuleList([nn.Linear(4, 4)])

    with pytest.raises(ValueError, match=r"Mystery.*module_path="):
        steering.find_layers(Mystery())
    assert len(steering.find_layers(Mystery(), module_path="blocks")) == 1
    with pytest.raises(ValueError, match="module_path='nope'"):
        steering.find_layers(model, module_path="nope")
