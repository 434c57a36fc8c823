"""The SAC family (CrossQ, TQC, DroQ, REDQ, SimBa presets) and discrete SAC: each update against a
small reference computation, the compiled update against the eager one, presets as config, exact
resume, and clear errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from maxent.agents.sac import SAC, SACConfig, StackedCritics
from maxent.agents.sac_discrete import DiscreteSACLearner, SACDiscrete, SACDiscreteConfig
from maxent.agents.sac_family import PRESETS, SACFamily
from maxent.agents.sac_networks import BatchRenorm, FamilyCritics, RunningObsNorm, set_norm_training
from maxent.agents.registry import ALGORITHMS
from maxent.entropy import sample_squashed_gaussian
from maxent.entropy.soft import (discrete_soft_policy_loss, discrete_soft_value, quantile_huber_loss,
                                 soft_bellman_target, soft_q_loss, truncated_quantile_target)
from maxent.entropy.temperature import AutoTemperature
from maxent.training.agent import evaluate
from maxent.training.config import ConfigError
from maxent.training.fastpath import prepare_compile

# float32 unless a test says otherwise: the reference computations below run in float32 ("auto"
# would pick bf16 on a CPU with native bf16).
TINY = {"hidden_sizes": (32, 32), "critic_hidden_sizes": (32, 32), "batch_size": 32, "learning_starts": 50,
        "buffer_size": 10_000, "log_interval": 100, "precision": "float32"}


def tiny(preset: str, **extra) -> dict:
    kw = {**TINY, **extra}
    if preset == "simba":
        kw.update(hidden_sizes=(16,), critic_hidden_sizes=(16, 16))
    if preset in ("droq", "redq"):  # keep their UTD > 1 and delayed actor, at a test's cost
        kw.update(gradient_steps=2, policy_delay=2)
    return kw


def family(preset: str, seed: int = 0, **extra) -> SACFamily:
    cfg = SACConfig(preset=preset, **{**tiny(preset), **extra})
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    return SACFamily(cfg, 3, 1, torch.device("cpu"), gen)


def batch(n: int = 8, obs_dim: int = 3, action_dim: int = 1, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    obs, next_obs = torch.randn(n, obs_dim, generator=g), torch.randn(n, obs_dim, generator=g)
    action = torch.rand(n, action_dim, generator=g) * 2 - 1
    reward = torch.randn(n, generator=g)
    terminated = (torch.rand(n, generator=g) < 0.3).float()
    noise = torch.randn(2, n, action_dim, generator=g)
    return (obs, action, reward, next_obs, terminated), noise


# --------------------------------------------------------------------------- presets as config


def test_presets_fill_defaults_and_explicit_fields_win():
    cfg = SACConfig(preset="crossq")
    for key, value in PRESETS["crossq"].items():
        assert getattr(cfg, key) == value, key
    assert cfg.uses_family and not SACConfig().uses_family
    mine = SACConfig(preset="crossq", learning_rate=5e-4, critic_hidden_sizes=(64, 64))
    assert mine.learning_rate == 5e-4 and mine.critic_hidden_sizes == (64, 64)
    assert mine.adam_betas == (0.5, 0.999) and not mine.target_network
    # Read back from its JSON form, a preset config is the same config (checkpoints, CLI).
    assert SACConfig.from_json(cfg.to_json()) == cfg
    assert SACConfig(preset="redq").gradient_steps == 20 and SACConfig(preset="tqc").n_quantiles == 25


def test_a_field_given_wins_over_the_preset_even_at_sacs_default():
    assert SACConfig(preset="tqc").n_critics == 5
    two = SACConfig(preset="tqc", n_critics=2)
    assert two.n_critics == 2 and two.n_quantiles == 25 and "n_critics" in two.passed_fields
    assert SACConfig(preset="crossq", target_network=True, learning_rate=3e-4).target_network
    # replace() keeps what a config was given and fills what a new preset may.
    crossq = SACConfig().replace(preset="crossq")
    assert not crossq.target_network and crossq.learning_rate == 1e-3
    mine = SACConfig(preset="crossq", learning_rate=3e-4).replace(batch_size=64)
    assert mine.learning_rate == 3e-4 and mine.batch_size == 64 and not mine.target_network
    # Read back from its JSON form, a config keeps its values whatever its preset says.
    assert SACConfig.from_json(two.to_json()) == two


def test_preset_flag_fills_what_the_command_line_does_not_name():
    from maxent.agents.registry import find
    from maxent.cli.train import parse_train_args

    sac = find("sac")
    tqc = parse_train_args(sac, ["--config.preset", "tqc"]).config
    assert tqc == SACConfig(preset="tqc")
    two = parse_train_args(sac, ["--config.preset", "tqc", "--config.n-critics", "2"]).config
    assert two.n_critics == 2 and two.n_quantiles == 25 and two.critic_hidden_sizes == (512, 512, 512)
    # A flag that only makes sense with the preset's other values (3 of TQC's 25 quantiles).
    assert parse_train_args(sac, ["--config.preset", "tqc", "--config.top-quantiles-to-drop", "3"]
                            ).config.top_quantiles_to_drop == 3
    crossq = parse_train_args(sac, ["--config.preset=crossq", "--config.target-network",
                                    "--config.learning-rate", "3e-4"]).config
    assert crossq.target_network and crossq.learning_rate == 3e-4 and crossq.critic_norm == "batchrenorm"
    assert parse_train_args(sac, []).config == SACConfig()


@pytest.mark.parametrize("bad, words", [
    ({"preset": "crossqq"}, "preset must be one of"),
    ({"n_quantiles": 5, "top_quantiles_to_drop": 5}, "top_quantiles_to_drop"),
    ({"target_subset": 3}, "target_subset must be in [1, n_critics=2]"),
    ({"critic_norm": "batch"}, "critic_norm must be one of"),
    ({"critic_dropout": 1.0}, "critic_dropout must be in [0, 1)"),
    ({"adam_betas": (0.9, 1.0)}, "adam_betas"),
    ({"architecture": "simba", "hidden_sizes": (64, 32)}, "one width per residual block"),
])
def test_bad_family_fields_are_named(bad, words):
    with pytest.raises(ConfigError, match=None) as err:
        SACConfig(**bad)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_vanilla_config_keeps_the_vanilla_networks_and_compiled_path():
    agent = SAC("Pendulum-v1", seed=0, **{k: v for k, v in TINY.items() if k != "critic_hidden_sizes"})
    assert agent._family is None and isinstance(agent.critic, StackedCritics)
    crossq = SAC("Pendulum-v1", seed=0, preset="crossq", compile=True, **TINY)
    # The family compiles its own step; vanilla's stays unbuilt.
    assert crossq._family is not None and crossq._compiled_step is None and crossq.critic_target is None
    assert crossq._family._compiled is not None


# --------------------------------------------------------------------------- building blocks


def test_batch_renorm_matches_hand_computation():
    bn = BatchRenorm((1, 3), momentum=0.1, eps=1e-3, warmup_steps=1, r_max=3.0, d_max=5.0)
    with torch.no_grad():
        bn.weight.fill_(2.0)
        bn.bias.fill_(0.5)
    x = torch.randn(16, 3, generator=torch.Generator().manual_seed(0)) * 3 + 1
    bn.train()  # ignored: only set_norm_training switches batch statistics on
    assert not bn.training
    np.testing.assert_allclose(bn(x).detach(), 2 * x / math.sqrt(1 + 1e-3) + 0.5, rtol=1e-6)
    set_norm_training(bn, True)
    mean, var = x.mean(0), x.var(0, unbiased=False)
    y = bn(x)  # step 0 < warmup: plain batch norm
    np.testing.assert_allclose(y.detach(), 2 * (x - mean) / torch.sqrt(var + 1e-3) + 0.5, rtol=1e-5, atol=1e-6)
    run_mean, run_var = 0.1 * mean, 0.9 + 0.1 * var
    np.testing.assert_allclose(bn.running_mean[0], run_mean, rtol=1e-6)
    np.testing.assert_allclose(bn.running_var[0], run_var, rtol=1e-6)
    y = bn(x)  # after warm-up: renormalised towards the running statistics
    std, run_std = torch.sqrt(var + 1e-3), torch.sqrt(run_var + 1e-3)
    r = (std / run_std).clamp(1 / 3, 3)
    d = ((mean - run_mean) / run_std).clamp(-5, 5)
    np.testing.assert_allclose(y.detach(), 2 * ((x - mean) / std * r + d) + 0.5, rtol=1e-5, atol=1e-5)


def test_running_obs_norm_equals_statistics_of_all_observations():
    norm = RunningObsNorm(2)
    data = torch.randn(50, 2, generator=torch.Generator().manual_seed(1)) * 4 + 3
    for chunk in data.split(7):
        norm.observe(chunk)
    np.testing.assert_allclose(norm.mean, data.double().mean(0), rtol=1e-10)
    np.testing.assert_allclose(norm.var, data.double().var(0, unbiased=False), rtol=1e-10)


def test_droq_dropout_is_active_in_training_and_off_in_eval():
    gen = torch.Generator().manual_seed(0)
    critic = FamilyCritics(3, 1, (64, 64), 2, norm="layer", dropout=0.5, generator=gen)
    obs, action = torch.randn(5, 3), torch.randn(5, 1)
    assert not torch.equal(critic(obs, action), critic(obs, action))   # fresh masks each pass
    critic.eval()
    assert torch.equal(critic(obs, action), critic(obs, action))
    droq = family("droq")
    assert droq.critic.dropout == 0.01 and droq.critic.training and len(droq.critic.ln_weights) == 2


# --------------------------------------------------------------------------- each preset's update


def test_crossq_normalises_current_and_next_pairs_with_joint_statistics():
    fam = family("crossq")
    (obs, action, reward, next_obs, terminated), noise = batch()
    alpha = torch.tensor(0.2)
    with torch.no_grad():  # a' from the actor's running statistics, before its own pass moves them
        next_action, next_log_prob = sample_squashed_gaussian(*fam.actor(next_obs), noise=noise[0])
    critic_loss, _, _ = fam.losses(obs, action, reward, next_obs, terminated, noise, alpha)
    assert int(fam.actor.trunk[0].steps) == 1  # the actor's loss pass used (and updated) batch stats
    joint = torch.cat([torch.cat([obs, action], -1), torch.cat([next_obs, next_action], -1)])
    first = fam.critic.norms[0]
    # One update of the first layer's statistics, over the 2 x batch concatenated pairs.
    np.testing.assert_allclose(first.running_mean[0, 0], 0.01 * joint.mean(0), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(first.running_var[0, 0], 0.99 + 0.01 * joint.var(0, unbiased=False),
                               rtol=1e-5)
    assert int(first.steps) == 1 and fam.critic_target is None
    # The loss: both halves of one batch-statistics pass, the next half detached, no target net.
    fresh = family("crossq")
    set_norm_training(fresh.critic, True)
    q_joint = fresh.critic(torch.cat([obs, next_obs]), torch.cat([action, next_action]))
    q, next_q = q_joint[:, :8], q_joint[:, 8:].detach()
    target = soft_bellman_target(reward, terminated, next_q.min(0).values, next_log_prob, alpha, fam.cfg.gamma)
    torch.testing.assert_close(critic_loss, soft_q_loss(q, target))


def test_tqc_target_drops_exactly_the_top_quantiles():
    z = torch.tensor([[[1.0, 5.0, 9.0]], [[2.0, 7.0, 3.0]]])              # N=2 critics, batch 1, M=3
    y = truncated_quantile_target(torch.tensor([1.0]), torch.tensor([0.0]), z, torch.tensor([0.5]),
                                  0.2, 0.9, drop_per_critic=1)
    kept = torch.tensor([1.0, 2.0, 3.0, 5.0])                             # 6 pooled - d*N = 4 smallest
    torch.testing.assert_close(y.sort(-1).values, (1.0 + 0.9 * (kept - 0.2 * 0.5))[None])
    done = truncated_quantile_target(torch.tensor([1.0]), torch.tensor([1.0]), z, torch.tensor([0.5]),
                                     0.2, 0.9, drop_per_critic=2)
    torch.testing.assert_close(done, torch.ones(1, 2))


def test_quantile_huber_loss_matches_a_loop():
    g = torch.Generator().manual_seed(3)
    q, target = torch.randn(2, 4, 3, generator=g) * 2, torch.randn(4, 5, generator=g) * 2
    total, count = 0.0, 0
    for i in range(2):
        for b in range(4):
            for m in range(3):
                tau = (m + 0.5) / 3
                for k in range(5):
                    u = float(target[b, k] - q[i, b, m])
                    huber = 0.5 * u * u if abs(u) <= 1 else abs(u) - 0.5
                    total += abs(tau - (u < 0)) * huber
                    count += 1
    assert float(quantile_huber_loss(q, target)) == pytest.approx(total / count, rel=1e-5)


@pytest.mark.parametrize("kappa", [1.0, 0.5, 3.0])
def test_quantile_huber_gradient_matches_autograd_of_the_definition(kappa):
    g = torch.Generator().manual_seed(4)
    q, target = torch.randn(3, 6, 5, generator=g, dtype=torch.float64) * 2, \
        torch.randn(6, 7, generator=g, dtype=torch.float64) * 2
    target[0, :5] = q[0, 0]                      # atoms exactly at quantiles: the kink of |u| and 1{u<0}
    reference = q.clone().requires_grad_()
    u = target[None, :, None, :] - reference[..., None]
    tau = (torch.arange(5, dtype=torch.float64) + 0.5) / 5
    weight = (tau[:, None] - (u < 0).double()).abs()
    huber = torch.nn.functional.huber_loss(u, torch.zeros_like(u), reduction="none", delta=kappa) / kappa
    expected = (weight * huber).mean()
    expected.backward()
    fast = q.clone().requires_grad_()
    loss = quantile_huber_loss(fast, target, kappa)
    (loss * 3).backward()
    torch.testing.assert_close(loss, expected.detach())
    torch.testing.assert_close(fast.grad, 3 * reference.grad)


def test_quantile_huber_loss_refuses_a_non_positive_kappa():
    with pytest.raises(ValueError, match="kappa must be positive"):
        quantile_huber_loss(torch.zeros(1, 2, 3), torch.zeros(2, 4), kappa=0.0)


def test_tqc_update_uses_the_truncated_quantile_target():
    fam = family("tqc", n_quantiles=4, top_quantiles_to_drop=1, n_critics=3)
    (obs, action, reward, next_obs, terminated), noise = batch()
    alpha = torch.tensor(0.1)
    loss, actor_loss, _ = fam.losses(obs, action, reward, next_obs, terminated, noise, alpha)
    with torch.no_grad():
        next_action, next_log_prob = sample_squashed_gaussian(*fam.actor(next_obs), noise=noise[0])
        z_next = fam.critic_target(next_obs, next_action)
    assert z_next.shape == (3, 8, 4)
    target = truncated_quantile_target(reward, terminated, z_next, next_log_prob, alpha, fam.cfg.gamma, 1)
    assert target.shape == (8, 9)
    torch.testing.assert_close(loss, quantile_huber_loss(fam.critic(obs, action), target))
    assert actor_loss is not None


def test_redq_target_takes_the_min_over_a_random_subset():
    fam = family("redq")
    assert fam.critic.n == 10 and fam.cfg.target_subset == 2
    (obs, action, reward, next_obs, terminated), noise = batch()
    alpha = torch.tensor(0.3)
    state = fam.generator.get_state()
    loss, _, _ = fam.losses(obs, action, reward, next_obs, terminated, noise, alpha, update_actor=False)
    chosen = torch.randperm(10, generator=torch.Generator().set_state(state))[:2]
    with torch.no_grad():
        next_action, next_log_prob = sample_squashed_gaussian(*fam.actor(next_obs), noise=noise[0])
        next_q = fam.critic_target(next_obs, next_action)
    target = soft_bellman_target(reward, terminated, next_q[chosen].min(0).values, next_log_prob, alpha,
                                 fam.cfg.gamma)
    torch.testing.assert_close(loss, soft_q_loss(fam.critic(obs, action), target))
    everyone = soft_bellman_target(reward, terminated, next_q.min(0).values, next_log_prob, alpha, fam.cfg.gamma)
    assert not torch.allclose(target, everyone)  # the subset's min is not the min over all ten


def test_policy_delay_leaves_the_actor_alone_between_its_updates():
    fam = family("redq")  # policy_delay 2 (tiny)
    temperature = AutoTemperature(-1.0)
    b, noise = batch()
    before = [p.clone() for p in fam.actor.parameters()]
    fam.update(b, noise, temperature, 0.005, n_updates=0)
    assert all(torch.equal(p, q) for p, q in zip(before, fam.actor.parameters()))
    assert float(temperature.log_alpha) == 0.0
    fam.update(b, noise, temperature, 0.005, n_updates=1)
    assert not all(torch.equal(p, q) for p, q in zip(before, fam.actor.parameters()))
    assert float(temperature.log_alpha) != 0.0


def test_simba_normalises_observations_with_residual_trunks():
    agent = SAC("Pendulum-v1", seed=0, preset="simba", **tiny("simba"))
    agent.learn(120)
    assert float(agent._family.obs_norm.count) == 120  # every observation acted on, once
    assert agent.actor.obs_norm is agent.critic.obs_norm is agent.critic_target.obs_norm
    names = [type(m).__name__ for m in agent.actor.trunk]
    assert names == ["Linear", "_ResidualBlock", "LayerNorm"]


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_each_preset_resumes_bit_exactly(tmp_path, preset):
    # 130 steps ends mid-episode: the in-flight episode is replayed, the running statistics restored.
    whole = SAC("Pendulum-v1", seed=5, preset=preset, **tiny(preset)).learn(190)
    first = SAC("Pendulum-v1", seed=5, preset=preset, **tiny(preset)).learn(130)
    resumed = SAC.load(first.save(tmp_path / "ck")).learn(60)
    wa, wb = whole._tensors(), resumed._tensors()
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key
    assert resumed._family.last_actor == whole._family.last_actor


# --------------------------------------------------------------------------- the compiled step


def _copy_training_state(src: SAC, dst: SAC) -> None:
    """Make ``dst``'s training state (networks, running statistics, Adam, α, generator) equal to
    ``src``'s, in place, so that one update of each can be compared from the same start."""
    for a, b in zip(src._family.state_dict().values(), dst._family.state_dict().values()):
        b.copy_(a)
    params = [(p, q) for g, h in zip(src.optimizer.param_groups, dst.optimizer.param_groups)
              for p, q in zip(g["params"], h["params"])]
    for p, q in params:
        for key, value in src.optimizer.state[p].items():
            dst.optimizer.state[q][key].copy_(value)
    for a, b in zip(src.temperature.tensors(), dst.temperature.tensors()):
        b.copy_(a)
    dst.generator.set_state(src.generator.get_state())
    dst._family.last_actor = list(src._family.last_actor)
    dst.n_updates = src.n_updates


def _update_both(eager: SAC, other: SAC) -> tuple:
    """One update of each from the same state, batch and generator state; their outputs."""
    _copy_training_state(eager, other)
    rows = eager.buffer.sample_rows(eager.config.batch_size, eager.generator)
    other.generator.set_state(eager.generator.get_state())
    out_e, out_o = eager._update(rows), other._update(rows)
    eager.n_updates += 1
    other.n_updates += 1
    return out_e, out_o


def _assert_updates_match(eager: SAC, other: SAC, n: int, rtol: float, atol: float) -> None:
    """From the same state, each of ``n`` updates of ``other`` equals the eager update: losses,
    α, weights and running statistics, Adam's state, and the draws taken from the generator."""
    for i in range(n):
        out_e, out_o = _update_both(eager, other)
        for a, b in zip(out_e, out_o):
            torch.testing.assert_close(b, a, rtol=rtol, atol=atol, msg=f"update {i}: outputs")
        assert torch.equal(eager.generator.get_state(), other.generator.get_state())
        se, so = eager._family.state_dict(), other._family.state_dict()
        for key in se:
            torch.testing.assert_close(so[key], se[key], rtol=rtol, atol=atol, msg=f"update {i}: {key}")
        for g, h in zip(eager.optimizer.param_groups, other.optimizer.param_groups):
            for p, q in zip(g["params"], h["params"]):
                for key, value in eager.optimizer.state[p].items():
                    torch.testing.assert_close(other.optimizer.state[q][key], value, rtol=rtol, atol=atol)
        for a, b in zip(eager.temperature.tensors(), other.temperature.tensors()):
            torch.testing.assert_close(b, a, rtol=rtol, atol=atol, msg=f"update {i}: temperature")
        assert eager._family.last_actor == pytest.approx(other._family.last_actor, rel=rtol, abs=atol)


def _preset_pair(preset: str, **extra) -> tuple[SAC, SAC]:
    """Two agents of ``preset`` trained eagerly to the same point (CrossQ's BatchRenorm then
    crosses its warm-up during the compared updates)."""
    if preset == "crossq":
        extra.setdefault("renorm_warmup_steps", 33)
    agents = [SAC("Pendulum-v1", seed=4, preset=preset, compile=False, **tiny(preset, **extra)).learn(80)
              for _ in range(2)]
    return agents[0], agents[1]


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_whole_family_step_matches_eager_update(preset):
    """The step written for one compiled graph (torch.func gradients, Adam as tensor ops, running
    statistics as arguments updated in place), run here uncompiled, moves everything as the
    eager update with backward() and torch.optim.Adam does, with and without the actor."""
    eager, whole = _preset_pair(preset)
    fam = whole._family
    fam.collect_step_tensors(whole.temperature)
    fam._compiled = {False: fam._pure_critic_step, True: fam._pure_full_step}
    _assert_updates_match(eager, whole, 2 * eager.config.policy_delay + 2, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("preset", ["crossq", "tqc"])
def test_whole_family_step_matches_eager_update_in_bf16(preset):
    """Under bf16 autocast too, the pure step moves everything as the eager update does."""
    eager, whole = _preset_pair(preset, precision="bfloat16")
    fam = whole._family
    fam.collect_step_tensors(whole.temperature)
    fam._compiled = {False: fam._pure_critic_step, True: fam._pure_full_step}
    _assert_updates_match(eager, whole, 2 * eager.config.policy_delay + 2, rtol=1e-4, atol=1e-5)


# One bf16 update's losses against float32's from the same state: bf16 keeps 8 bits of mantissa
# (relative rounding 2^-9 per product), so the losses agree to within a percent or so (0.6% at most
# here), not to float32's 1e-6.
BF16_LOSS_RTOL = 0.02


@pytest.mark.parametrize("preset", ["crossq", "tqc", "droq"])
def test_bf16_update_stays_near_the_float32_update(preset):
    """precision="bfloat16" autocasts the family's losses (they differ from float32's, so it is on)
    and keeps them within BF16_LOSS_RTOL of float32's; heads, parameters, Adam's state and
    BatchRenorm's statistics stay float32."""
    f32, _ = _preset_pair(preset)
    bf16 = SAC("Pendulum-v1", seed=4, preset=preset, compile=False, **tiny(preset, precision="bfloat16"))
    assert bf16._family.precision == "bfloat16" and f32._family.precision == "float32"
    bf16.buffer = f32.buffer
    f32.n_updates = f32.config.policy_delay - 1          # the next update moves the actor too
    _copy_training_state(f32, bf16)
    rows = f32.buffer.sample_rows(f32.config.batch_size, f32.generator)
    bf16.generator.set_state(f32.generator.get_state())
    (c32, a32, e32, _), (c16, a16, e16, _) = f32._update(rows), bf16._update(rows)
    assert float(c16) != float(c32) and float(a16) != float(a32)
    for ours, ref in ((c16, c32), (a16, a32), (e16, e32)):
        assert float(ours) == pytest.approx(float(ref), rel=BF16_LOSS_RTOL, abs=1e-3)
    with torch.no_grad(), bf16._family._autocast():
        obs = rows[:, :3]
        assert all(t.dtype == torch.float32 for t in (*bf16.actor(obs), bf16.critic(obs, obs[:, :1])))
    assert all(t.dtype == torch.float32 for t in bf16._family.state_dict().values() if t.is_floating_point())
    assert all(v.dtype == torch.float32 for state in bf16.optimizer.state.values() for k, v in state.items()
               if k != "step")
    if preset == "crossq":
        # The actor's first BatchRenorm sees float32 observations in both runs: computed in float32
        # under autocast, its statistics are float32's to the bit.
        first = ("trunk.0.running_mean", "trunk.0.running_var")
        for key in first:
            assert torch.equal(bf16.actor.state_dict()[key], f32.actor.state_dict()[key]), key


@pytest.mark.parametrize("preset", ["crossq", "tqc"])
def test_bf16_run_resumes_bit_exactly(tmp_path, preset):
    kw = tiny(preset, precision="bfloat16")
    whole = SAC("Pendulum-v1", seed=5, preset=preset, **kw).learn(190)
    first = SAC("Pendulum-v1", seed=5, preset=preset, **kw).learn(130)
    resumed = SAC.load(first.save(tmp_path / "ck")).learn(60)
    assert resumed._family.precision == "bfloat16"
    wa, wb = whole._tensors(), resumed._tensors()
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key
    assert resumed._family.last_actor == whole._family.last_actor


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["crossq", "droq", "redq", "tqc"])
def test_compiled_family_update_matches_eager_without_recompiling(preset):
    """Each preset's update compiled by inductor (CPU, cpp_wrapper; each variant, with and
    without the actor, compiled once) equals the eager update to rtol 1e-4 / atol 1e-5 from the
    same state, and a further 40 updates compile nothing again."""
    import torch._dynamo

    torch._dynamo.reset()  # other agents' shapes compiled the same methods
    eager, compiled = _preset_pair(preset)
    compiled._family.compile_lazily(compiled.temperature, **prepare_compile(compiled.device))
    with torch._dynamo.config.patch(error_on_recompile=True):
        _assert_updates_match(eager, compiled, 2 * eager.config.policy_delay + 2, rtol=1e-4, atol=1e-5)
        compiled.learn(40 // compiled.config.gradient_steps)


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["crossq", "tqc"])
def test_compiled_bf16_family_update_stays_near_eager_bf16(preset):
    """Under bf16 autocast inductor's fused elementwise ops round bf16 intermediates elsewhere than
    eager does, so compiled and eager agree to bf16's precision (BF16_LOSS_RTOL), not to the bit;
    nothing compiles twice."""
    import torch._dynamo

    torch._dynamo.reset()
    eager, compiled = _preset_pair(preset, precision="bfloat16")
    compiled._family.compile_lazily(compiled.temperature, **prepare_compile(compiled.device))
    with torch._dynamo.config.patch(error_on_recompile=True):
        for _ in range(2 * eager.config.policy_delay + 2):
            out_e, out_c = _update_both(eager, compiled)
            for a, b in zip(out_e, out_c):
                assert float(b) == pytest.approx(float(a), rel=BF16_LOSS_RTOL, abs=1e-3)
        compiled.learn(40 // compiled.config.gradient_steps)


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["crossq", "droq"])
def test_compiled_family_run_resumes_bit_exactly(tmp_path, preset):
    """compile=True from the first update: a run saved and loaded (which compiles again) ends
    bit for bit where the uninterrupted compiled run does."""
    import torch._dynamo

    torch._dynamo.reset()
    kw = {**tiny(preset), "compile": True}
    whole = SAC("Pendulum-v1", seed=5, preset=preset, **kw).learn(190)
    first = SAC("Pendulum-v1", seed=5, preset=preset, **kw).learn(130)
    resumed = SAC.load(first.save(tmp_path / "ck")).learn(60)
    assert resumed.config.compile is True and resumed._family._compiled is not None
    wa, wb = whole._tensors(), resumed._tensors()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key
    assert resumed._family.last_actor == whole._family.last_actor


@pytest.mark.slow
def test_auto_compiles_the_family_update_in_the_background_and_trains_like_eager(monkeypatch):
    """compile="auto" on a long enough run compiles both DroQ step variants on a worker thread, on
    stand-in tensors; the real tensors then run those graphs without compiling again."""
    import torch._dynamo

    import maxent.agents.sac as sac_module
    from maxent.training.agent import FunctionCallback

    monkeypatch.setattr(sac_module, "AUTO_COMPILE_MIN_UPDATES", 100)
    monkeypatch.setattr(sac_module, "BACKGROUND_MIN_CORES", 1)
    torch._dynamo.reset()
    auto = SAC("Pendulum-v1", seed=5, preset="droq", **tiny("droq"))

    def wait_for_the_compile(agent):
        if agent.num_timesteps == 1:
            assert set(agent._family._jobs) == {False, True} and agent._family._compiled is None
            for job in agent._family._jobs.values():
                job.wait()

    with torch._dynamo.config.patch(error_on_recompile=True):
        auto.learn(150, callback=FunctionCallback(wait_for_the_compile))
    assert auto._family._compiled is not None and not auto._family._jobs
    eager = SAC("Pendulum-v1", seed=5, preset="droq", compile=False, **tiny("droq")).learn(150)
    for key, value in eager._tensors().items():
        torch.testing.assert_close(auto._tensors()[key], value, rtol=1e-4, atol=1e-5, msg=key)


def test_family_compile_true_builds_the_compiled_step_and_auto_waits_for_long_runs():
    agent = SAC("Pendulum-v1", seed=0, preset="droq", compile=True, **tiny("droq"))
    assert set(agent._family._compiled) == {False, True}          # policy_delay 2: two variants
    tqc = SAC("Pendulum-v1", seed=0, preset="tqc", compile=True, **tiny("tqc"))
    assert set(tqc._family._compiled) == {True}                     # every update moves the actor
    auto = SAC("Pendulum-v1", seed=0, preset="tqc", **tiny("tqc")).learn(120)
    assert auto._family._compiled is None and not auto._family._jobs  # too short to compile
    with pytest.warns(RuntimeWarning, match="obs_norm=True \\(SimBa\\) runs the eager update"):
        simba = SAC("Pendulum-v1", seed=0, preset="simba", compile=True, **tiny("simba"))
    assert simba._family._compiled is None


# --------------------------------------------------------------------------- discrete SAC


def discrete_learner(**extra) -> DiscreteSACLearner:
    torch.manual_seed(0)
    cfg = SACDiscreteConfig(hidden_sizes=(8,), n_critics=2, **extra)
    return DiscreteSACLearner(cfg, 2, 3, torch.device("cpu"))


def test_discrete_update_matches_hand_computation():
    learner = discrete_learner(q_target="min")
    g = torch.Generator().manual_seed(0)
    obs, next_obs = torch.randn(4, 2, generator=g), torch.randn(4, 2, generator=g)
    action = torch.tensor([[0.0], [2.0], [1.0], [2.0]])
    reward, terminated = torch.randn(4, generator=g), torch.tensor([0.0, 1.0, 0.0, 0.0])
    alpha = torch.tensor(0.4)
    critic_loss, actor_loss, entropy = learner.losses(obs, action, reward, next_obs, terminated, alpha)
    gamma = learner.cfg.gamma
    with torch.no_grad():
        expected_critic, expected_actor, expected_entropy = 0.0, 0.0, []
        for b in range(4):
            p_next = F.softmax(learner.actor(next_obs[b]), -1)
            q_next = [learner.q_values(learner.critic_target, next_obs[b:b + 1])[j, 0] for j in range(2)]
            v = sum(p_next[a] * (min(q_next[0][a], q_next[1][a]) - alpha * torch.log(p_next[a]))
                    for a in range(3))
            y = reward[b] + gamma * (1 - terminated[b]) * v
            q_now = learner.q_values(learner.critic, obs[b:b + 1])[:, 0]
            expected_critic += 0.5 * sum((q_now[j, int(action[b])] - y) ** 2 for j in range(2)) / 4
            p = F.softmax(learner.actor(obs[b]), -1)
            expected_actor += sum(p[a] * (alpha * torch.log(p[a]) - q_now[:, a].min()) for a in range(3)) / 4
            expected_entropy.append(-sum(p[a] * torch.log(p[a]) for a in range(3)))
    torch.testing.assert_close(critic_loss, expected_critic, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(actor_loss, expected_actor, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(entropy, torch.stack(expected_entropy), rtol=1e-5, atol=1e-6)
    # The alpha loss log(alpha) (H - target): Adam's first step moves log alpha by lr against it.
    temperature = AutoTemperature(0.5 * math.log(3), initial_alpha=0.4, lr=0.01)
    learner.update((obs, action, reward, next_obs, terminated), torch.zeros(2, 4, 1), temperature, 0.005, 0)
    direction = math.copysign(1.0, float(torch.stack(expected_entropy).mean()) - 0.5 * math.log(3))
    assert float(temperature.log_alpha) == pytest.approx(math.log(0.4) - 0.01 * direction, abs=1e-6)


def test_discrete_soft_functions_and_zhou_average_target():
    probs = torch.tensor([[0.25, 0.75]])
    q = torch.tensor([[1.0, 3.0]])
    v = discrete_soft_value(probs, probs.log(), q, 0.5)
    assert float(v) == pytest.approx(0.25 * (1 - 0.5 * math.log(0.25)) + 0.75 * (3 - 0.5 * math.log(0.75)))
    loss = discrete_soft_policy_loss(probs, probs.log(), q, 0.5)
    assert float(loss) == pytest.approx(-float(v))
    mean = discrete_learner(q_target="mean")
    g = torch.Generator().manual_seed(1)
    obs, next_obs = torch.randn(4, 2, generator=g), torch.randn(4, 2, generator=g)
    args = (obs, torch.zeros(4, 1), torch.zeros(4), next_obs, torch.zeros(4), torch.tensor(0.0))
    with torch.no_grad():
        p = F.softmax(mean.actor(next_obs), -1)
        avg = (p * mean.q_values(mean.critic_target, next_obs).mean(0)).sum(-1) * mean.cfg.gamma
        q_taken = mean.q_values(mean.critic, obs)[..., 0]
    torch.testing.assert_close(mean.losses(*args)[0], soft_q_loss(q_taken, avg))
    clipped = discrete_learner(q_target="mean", q_clip=0.5)
    # Critics equal to their targets: the clipped term equals the plain one, so the losses agree.
    torch.testing.assert_close(clipped.losses(*args)[0], mean.losses(*args)[0])


def test_discrete_agent_acts_saves_and_resumes_exactly(tmp_path):
    kw = {"hidden_sizes": (16,), "batch_size": 16, "learning_starts": 40, "buffer_size": 2000, "log_interval": 100}
    whole = SACDiscrete("CartPole-v1", seed=2, **kw).learn(150)
    first = SACDiscrete("CartPole-v1", seed=2, **kw).learn(70)
    second = SACDiscrete.load(first.save(tmp_path / "ck")).learn(40)
    resumed = SACDiscrete.load(second.save(tmp_path / "ck2")).learn(40)  # a replayed episode saved again
    for key, value in whole._tensors().items():
        assert torch.equal(value, resumed._tensors()[key]), key
    action = resumed.predict(np.zeros(4, dtype=np.float32))
    assert action.shape == () and int(action) in (0, 1)
    assert resumed.target_entropy == pytest.approx(0.3 * math.log(2))


def test_discrete_errors_name_the_other_variant():
    with pytest.raises(ValueError, match="sac-discrete"):
        SAC("CartPole-v1")
    with pytest.raises(ValueError, match="use SAC for continuous"):
        SACDiscrete("Pendulum-v1")
    with pytest.raises(ConfigError, match="family"):
        SACDiscreteConfig(preset="crossq")
    assert ALGORITHMS["sac-discrete"].agent_class() is SACDiscrete


# --------------------------------------------------------------------------- learning (slow)


@pytest.mark.slow
def test_discrete_sac_learns_cartpole_to_500():
    """Budget: at most 60k env steps (one update each), evaluated greedily every 4k."""
    agent = SACDiscrete("CartPole-v1", seed=0, hidden_sizes=(64, 64), batch_size=64, critic_lr=1e-3,
                        log_interval=10**6)
    best = 0.0
    while agent.num_timesteps < 60_000 and best < 500:
        agent.learn(4000)
        best = max(best, float(evaluate(agent, "CartPole-v1", n_episodes=5, seed=100).mean()))
    assert best >= 500, f"best evaluation return {best:.0f} in {agent.num_timesteps} steps"


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["crossq", "tqc", "simba"])
def test_preset_learns_pendulum(preset):
    """5k steps at UTD 1 lift Pendulum from ~-1200 (a broken update stays there); critics 256
    wide to keep it cheap on a CPU."""
    narrow = {} if preset == "simba" else {"critic_hidden_sizes": (256, 256)}
    agent = SAC("Pendulum-v1", seed=0, preset=preset, learning_starts=500, log_interval=10**6, **narrow)
    agent.learn(5000)
    assert evaluate(agent, "Pendulum-v1", n_episodes=5, seed=100).mean() > -600
