"""Tests for maxent/entropy/temperature.py: SAC's learned temperature (Haarnoja et al. 2018, Eq. 18)
against torch.optim.Adam, its direction, schedules, checkpoints and argument errors."""

import json
import math

import numpy as np
import pytest
import torch

from maxent.entropy.temperature import (
    AutoTemperature,
    FixedCurriculum,
    FixedTemperature,
    GammaCurriculum,
    LinearCurriculum,
    ScheduledTemperature,
    TemperatureController,
    TemperatureCurriculum,
    gamma_kl,
    make_temperature,
)


def entropies(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(8, generator=g) * 2 - 1 for _ in range(n)]


def assert_checkpointable(state):
    for key, value in state.items():
        assert isinstance(key, str)
        assert isinstance(value, (torch.Tensor, int, float, str)), (key, type(value))
    json.dumps({k: v for k, v in state.items() if not isinstance(v, torch.Tensor)})


@pytest.mark.parametrize(
    "lr,betas,eps,initial_alpha",
    [(3e-4, (0.9, 0.999), 1e-8, 1.0), (0.05, (0.5, 0.9), 1e-3, 0.2), (0.1, (0.0, 0.99), 1e-8, 3.0)],
)
def test_auto_matches_torch_adam(lr, betas, eps, initial_alpha):
    target = -2.0
    ctrl = AutoTemperature(target, initial_alpha=initial_alpha, lr=lr, betas=betas, eps=eps)
    log_alpha = torch.tensor(math.log(initial_alpha), requires_grad=True)
    opt = torch.optim.Adam([log_alpha], lr=lr, betas=betas, eps=eps)
    for h in entropies(50):
        log_pi = -h
        ref_loss = -(log_alpha * (log_pi + target).detach()).mean()  # SB3's form
        opt.zero_grad()
        ref_loss.backward()
        opt.step()
        loss = ctrl.update(entropy=h)
        assert loss.shape == () and not loss.requires_grad
        torch.testing.assert_close(loss, ref_loss.detach(), rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(ctrl.log_alpha, log_alpha.detach(), rtol=0, atol=1e-6)
    # Guard against a vacuous comparison: alpha did move.
    assert abs(ctrl.log_alpha.item() - math.log(initial_alpha)) > 10 * lr * 0.5


def test_auto_alpha_direction():
    low = AutoTemperature(-1.0, lr=0.01)
    high = AutoTemperature(-1.0, lr=0.01)
    for _ in range(5):
        low.update(entropy=torch.full((16,), -3.0))  # below target: more exploration needed
        high.update(entropy=torch.full((16,), 2.0))
    assert low.value.item() > 1.0 > high.value.item()


def test_auto_value_and_attributes():
    ctrl = AutoTemperature(-6.0, initial_alpha=0.5)
    value = ctrl.value
    assert value.shape == () and value.dtype == torch.float32 and not value.requires_grad
    assert value.item() == pytest.approx(0.5)
    assert ctrl.target_entropy == -6.0
    torch.testing.assert_close(ctrl.log_alpha, torch.tensor(math.log(0.5)))
    ctrl.update(entropy=torch.tensor(0.0))
    assert value.item() == pytest.approx(0.5)  # an earlier value is a snapshot
    assert ctrl.value.item() < 0.5


def test_auto_entropy_is_detached_and_step_ignored():
    ctrl = AutoTemperature(-1.0, lr=0.1)
    h = torch.tensor([0.5, 1.5], requires_grad=True)
    loss = ctrl.update(entropy=h, step=123)
    assert not loss.requires_grad and h.grad is None
    assert loss.item() == pytest.approx(0.0)  # log(1) * (1 - (-1))


def test_auto_state_dict_round_trip():
    ctrl = AutoTemperature(-3.0, initial_alpha=0.7, lr=0.02)
    hs = entropies(20, seed=1)
    for h in hs[:10]:
        ctrl.update(entropy=h)
    state = ctrl.state_dict()
    assert_checkpointable(state)
    assert set(state) == {"log_alpha", "exp_avg", "exp_avg_sq", "step", "target_entropy", "lr"}
    assert state["step"].item() == 10

    fresh = AutoTemperature(0.0, initial_alpha=5.0, lr=1.0)
    fresh.load_state_dict(state)
    assert fresh.target_entropy == -3.0 and fresh.lr == 0.02
    for h in hs[10:]:
        assert torch.equal(ctrl.update(entropy=h), fresh.update(entropy=h))
        assert torch.equal(ctrl.log_alpha, fresh.log_alpha)
    # The saved state is a copy, untouched by later updates.
    assert state["step"].item() == 10


def test_auto_bad_args():
    with pytest.raises(ValueError, match="initial_alpha"):
        AutoTemperature(-1.0, initial_alpha=0.0)
    with pytest.raises(ValueError, match="lr"):
        AutoTemperature(-1.0, lr=-1e-3)
    with pytest.raises(ValueError, match="target_entropy"):
        AutoTemperature(float("nan"))
    with pytest.raises(ValueError, match="betas"):
        AutoTemperature(-1.0, betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="entropy="):
        AutoTemperature(-1.0).update()
    with pytest.raises(ValueError, match="missing"):
        AutoTemperature(-1.0).load_state_dict({"log_alpha": torch.tensor(0.0)})


def test_fixed():
    ctrl = FixedTemperature(0.2)
    assert ctrl.update(entropy=torch.tensor(1.0), step=5) is None
    assert ctrl.value.dtype == torch.float32 and ctrl.value.shape == ()
    assert ctrl.value.item() == pytest.approx(0.2)
    assert_checkpointable(ctrl.state_dict())
    other = FixedTemperature(0.0)
    other.load_state_dict(ctrl.state_dict())
    assert other.value.item() == pytest.approx(0.2)
    with pytest.raises(ValueError, match="alpha"):
        FixedTemperature(-0.1)


SCHEDULE_CASES = {
    # schedule: (value at 0, at T/2, at T)
    "linear": (1.0, 0.55, 0.1),
    "exponential": (1.0, math.sqrt(0.1), 0.1),
    "cosine": (1.0, 0.55, 0.1),
}


@pytest.mark.parametrize("schedule", list(SCHEDULE_CASES))
def test_scheduled_values(schedule):
    ctrl = ScheduledTemperature(1.0, 0.1, 100, schedule=schedule)
    at0, mid, end = SCHEDULE_CASES[schedule]
    assert ctrl.value.item() == pytest.approx(at0)
    for step, expected in ((0, at0), (50, mid), (100, end), (1000, end), (-5, at0)):
        assert ctrl.update(step=step) is None
        assert ctrl.value.item() == pytest.approx(expected, rel=1e-6), step
    assert ctrl.value.dtype == torch.float32 and ctrl.value.shape == ()


def test_scheduled_shapes_differ_between_schedules():
    values = {}
    for schedule in SCHEDULE_CASES:
        ctrl = ScheduledTemperature(1.0, 0.1, 100, schedule=schedule)
        ctrl.update(step=25)
        values[schedule] = ctrl.value.item()
    assert values["linear"] == pytest.approx(0.775)
    assert values["exponential"] == pytest.approx(0.1**0.25)
    assert values["cosine"] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 4)))


def test_scheduled_state_dict_round_trip():
    ctrl = ScheduledTemperature(0.5, 0.01, 10, schedule="exponential")
    ctrl.update(step=3)
    state = ctrl.state_dict()
    assert_checkpointable(state)
    fresh = ScheduledTemperature(9.0, 9.0, 1)
    fresh.load_state_dict(state)
    assert torch.equal(fresh.value, ctrl.value)
    for step in range(4, 12):
        ctrl.update(step=step)
        fresh.update(step=step)
        assert torch.equal(fresh.value, ctrl.value)


def test_scheduled_bad_args():
    with pytest.raises(ValueError, match="linear"):
        ScheduledTemperature(1.0, 0.1, 10, schedule="step")
    with pytest.raises(ValueError, match="start > 0"):
        ScheduledTemperature(1.0, 0.0, 10, schedule="exponential")
    with pytest.raises(ValueError, match="duration"):
        ScheduledTemperature(1.0, 0.1, 0)
    with pytest.raises(ValueError, match=">= 0"):
        ScheduledTemperature(-1.0, 0.1, 10)
    with pytest.raises(ValueError, match="step="):
        ScheduledTemperature(1.0, 0.1, 10).update(entropy=torch.tensor(1.0))


def test_make_temperature_and_protocol():
    made = [
        make_temperature("fixed", alpha=0.1),
        make_temperature("auto", target_entropy=-2.0, lr=1e-3),
        make_temperature("scheduled", start=1.0, end=0.0, duration=5, schedule="cosine"),
    ]
    assert [type(c) for c in made] == [FixedTemperature, AutoTemperature, ScheduledTemperature]
    for ctrl in made:
        assert isinstance(ctrl, TemperatureController)
    assert not isinstance(object(), TemperatureController)
    with pytest.raises(ValueError, match="fixed"):
        make_temperature("adaptive")


def test_entropy_target_controller_raises_coef_below_target_and_caps_it():
    from maxent.entropy.temperature import EntropyTargetController

    ctl = EntropyTargetController(0.5, initial_coef=1e-3, lr=0.1, max_coef=0.05)
    first = float(ctl.value)
    for _ in range(10):
        ctl.update(entropy=torch.tensor([0.1, 0.2]))  # below target: the bonus must grow
    assert float(ctl.value) > first
    for _ in range(200):
        ctl.update(entropy=torch.tensor(0.0))
    assert float(ctl.value) == pytest.approx(0.05, rel=1e-6)  # capped
    for _ in range(100):
        ctl.update(entropy=torch.tensor(2.0))  # above target: the bonus must shrink
    assert float(ctl.value) < 0.05
    clone = EntropyTargetController(0.5)
    clone.load_state_dict(ctl.state_dict())
    assert float(clone.value) == float(ctl.value) and clone.max_coef == 0.05
    with pytest.raises(ValueError, match="target_entropy must be > 0"):
        EntropyTargetController(-1.0)
    with pytest.raises(ValueError, match="max_coef must exceed"):
        EntropyTargetController(0.5, initial_coef=0.2, max_coef=0.1)


# --------------------------------------------------------------------------- QARL curricula



def test_gamma_kl_matches_torch():
    for kp, kq in ((50.0, 1.0), (3.0, 7.5), (1.0, 1.0)):
        expected = torch.distributions.kl_divergence(
            torch.distributions.Gamma(torch.tensor(kp, dtype=torch.float64), torch.tensor(1000.0, dtype=torch.float64)),
            torch.distributions.Gamma(torch.tensor(kq, dtype=torch.float64), torch.tensor(1000.0, dtype=torch.float64)))
        assert gamma_kl(kp, kq) == pytest.approx(float(expected), abs=1e-9)


def test_gamma_sampling_mean():
    teacher = GammaCurriculum()
    draws = teacher.sample(np.random.default_rng(0), 20_000)
    assert draws.mean() == pytest.approx(0.05, rel=0.02)       # k / rate = 50 / 1000
    assert float(teacher.value) == pytest.approx(0.05)


def test_gamma_teacher_frozen_below_the_performance_bound():
    teacher = GammaCurriculum(performance_bound=10.0, samples_per_update=30)
    rng = np.random.default_rng(1)
    for _ in range(29):
        assert not teacher.observe(teacher.sample(rng), 5.0)
    assert teacher.observe(teacher.sample(rng), 5.0)           # the 30th pair triggers an update
    assert teacher.concentration == 50.0 and teacher.n_updates == 1
    assert teacher.last_info["reason"].startswith("frozen")


def test_gamma_teacher_moves_towards_target_within_the_kl_step():
    teacher = GammaCurriculum(performance_bound=1.0, max_kl=0.5)
    rng = np.random.default_rng(2)
    ks = [teacher.concentration]
    while teacher.concentration > 1.0 and len(ks) < 50:
        alphas = teacher.sample(rng, 30)
        old = teacher.concentration
        info = teacher.update_distribution(alphas, np.full(30, 2.0))
        assert info["moved"]
        assert gamma_kl(teacher.concentration, old) <= 0.5 + 1e-9
        assert teacher.target_kl() < gamma_kl(old, 1.0)
        ks.append(teacher.concentration)
    assert teacher.concentration == 1.0 and 5 < len(ks) < 50
    # The first step is KL-bound: exactly on the boundary, not a jump to the target.
    assert gamma_kl(ks[1], ks[0]) == pytest.approx(0.5, abs=1e-4)


def test_gamma_teacher_respects_the_performance_constraint():
    # Return grows with alpha (a weaker adversary): moving to lower alpha costs return, so a bound
    # just under the current mean return binds before the KL step does.
    alphas = GammaCurriculum().sample(np.random.default_rng(3), 30)
    returns = 1000.0 * alphas                 # mean about 50; a KL-0.5 step would cost about 7
    bound = returns.mean() - 2.0
    teacher = GammaCurriculum(performance_bound=bound)
    info = teacher.update_distribution(alphas, returns)
    assert info["moved"] and 1.0 < teacher.concentration < 50.0
    assert info["expected_performance"] >= bound - 1e-6
    assert info["kl_step"] < 0.5 - 1e-3   # stopped by the performance bound, not the KL step
    # Once below the bound again, the teacher holds.
    held = teacher.concentration
    teacher.update_distribution(teacher.sample(np.random.default_rng(4), 30), np.full(30, 10.0))
    assert teacher.concentration == held and teacher.last_info["reason"].startswith("held")


def test_gamma_teacher_unconstrained_near_the_target():
    teacher = GammaCurriculum(initial_concentration=1.1, performance_bound=1e9)
    assert teacher.target_kl() <= 0.01
    teacher.update_distribution([0.001] * 30, [0.0] * 30)      # far below the bound: still moves
    assert teacher.concentration == 1.0


def test_curricula_checkpoint_and_factory():
    teacher = make_temperature("gamma_curriculum", performance_bound=3.0, samples_per_update=4)
    assert isinstance(teacher, TemperatureController) and isinstance(teacher, TemperatureCurriculum)
    rng = np.random.default_rng(0)
    for _ in range(6):
        teacher.observe(teacher.sample(rng), 4.0)
    state = teacher.state_dict()
    assert_checkpointable(state)
    other = GammaCurriculum()
    other.load_state_dict(state)
    assert other.concentration == teacher.concentration < 50.0
    assert other._alphas == teacher._alphas and len(other._alphas) == 2
    linear = make_temperature("linear_curriculum", duration=100)
    linear.update(step=50)
    assert linear.sample(rng) == pytest.approx(0.05 + (0.001 - 0.05) * 0.5)
    assert np.all(linear.sample(rng, 3) == linear.sample(rng))
    restored = LinearCurriculum()
    restored.load_state_dict(linear.state_dict())
    assert restored.sample(rng) == linear.sample(rng)
    fixed = FixedCurriculum(0.02)
    assert fixed.sample(rng) == pytest.approx(0.02) and not fixed.observe(0.02, 1.0)


@pytest.mark.parametrize("kwargs,match", [
    ({"rate": 0.0}, "rate must be > 0"),
    ({"max_kl": -1.0}, "max_kl must be > 0"),
    ({"samples_per_update": 1}, "samples_per_update must be an int >= 2"),
    ({"alpha_bounds": (0.1, 0.05)}, "alpha_bounds"),
])
def test_gamma_curriculum_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GammaCurriculum(**kwargs)
