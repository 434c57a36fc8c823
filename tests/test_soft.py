"""Tests for maxent/entropy/soft.py: SAC's soft Bellman target, losses and Polyak update
(Haarnoja et al. 2018) on hand-computed cases."""

import pytest
import torch
import torch.nn.functional as F

from maxent.entropy.soft import polyak_update, soft_bellman_target, soft_policy_loss, soft_q_loss


def test_soft_bellman_target_hand_case():
    reward = torch.tensor([1.0, 2.0, -1.0])
    next_q = torch.tensor([10.0, 4.0, 3.0])
    next_log_prob = torch.tensor([-2.0, 1.0, 0.5])
    # y = r + 0.9 (1 - d) (q - 0.5 log_pi)
    expected = torch.tensor([1.0 + 0.9 * 11.0, 2.0, -1.0 + 0.9 * 2.75])
    for terminated in (torch.tensor([0.0, 1.0, 0.0]), torch.tensor([False, True, False])):
        for alpha in (0.5, torch.tensor(0.5)):
            y = soft_bellman_target(reward, terminated, next_q, next_log_prob, alpha, 0.9)
            torch.testing.assert_close(y, expected)


def test_soft_bellman_target_terminated_zeroes_bootstrap():
    reward = torch.tensor([0.3, -0.7])
    y = soft_bellman_target(
        reward, torch.ones(2), torch.tensor([1e6, -1e6]), torch.tensor([5.0, -5.0]), 2.0, 0.99
    )
    torch.testing.assert_close(y, reward)


def test_soft_bellman_target_gamma_zero_and_alpha_zero():
    reward, q, lp = torch.randn(4), torch.randn(4), torch.randn(4)
    done = torch.zeros(4)
    torch.testing.assert_close(soft_bellman_target(reward, done, q, lp, 1.0, 0.0), reward)
    torch.testing.assert_close(soft_bellman_target(reward, done, q, lp, 0.0, 0.5), reward + 0.5 * q)


def test_soft_bellman_target_bad_args():
    r = torch.zeros(4)
    with pytest.raises(ValueError, match="same shape"):
        soft_bellman_target(r, r, torch.zeros(4, 1), r, 0.1, 0.99)
    with pytest.raises(ValueError, match="gamma"):
        soft_bellman_target(r, r, r, r, 0.1, 1.5)


def test_soft_q_loss_sb3_convention():
    q = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 6.0]], requires_grad=True)
    target = torch.tensor([1.0, 1.0, 1.0])
    # critic 1: mse = (0 + 1 + 4) / 3; critic 2: (1 + 1 + 25) / 3
    loss = soft_q_loss(q, target)
    assert loss.shape == ()
    assert loss.item() == pytest.approx(0.5 * (5 / 3 + 27 / 3))
    sb3 = 0.5 * sum(F.mse_loss(qj, target) for qj in q)
    torch.testing.assert_close(loss, sb3)
    loss.backward()
    torch.testing.assert_close(q.grad, (q.detach() - target) / 3)


def test_soft_q_loss_does_not_backprop_into_target():
    target = torch.randn(5, requires_grad=True)
    soft_q_loss(torch.randn(2, 5, requires_grad=True), target).backward()
    assert target.grad is None


def test_soft_q_loss_bad_shapes():
    with pytest.raises(ValueError, match="n_critics"):
        soft_q_loss(torch.zeros(2, 5, 1), torch.zeros(5))
    with pytest.raises(ValueError, match="n_critics"):
        soft_q_loss(torch.zeros(2, 5), torch.zeros(5, 1))


def test_soft_policy_loss():
    log_prob = torch.tensor([-1.0, 2.0], requires_grad=True)
    q = torch.tensor([3.0, -1.0])
    for alpha in (0.5, torch.tensor(0.5)):
        loss = soft_policy_loss(log_prob, q, alpha)
        assert loss.item() == pytest.approx(((-0.5 - 3.0) + (1.0 + 1.0)) / 2)
    loss.backward()
    torch.testing.assert_close(log_prob.grad, torch.tensor([0.25, 0.25]))
    with pytest.raises(ValueError, match="same shape"):
        soft_policy_loss(log_prob, q.unsqueeze(-1), 0.5)


def test_polyak_hand_case():
    target = [torch.tensor([0.0, 10.0]), torch.tensor([[4.0]])]
    source = [torch.tensor([2.0, 0.0]), torch.tensor([[0.0]])]
    polyak_update(target, source, 0.25)
    torch.testing.assert_close(target[0], torch.tensor([0.5, 7.5]))
    torch.testing.assert_close(target[1], torch.tensor([[3.0]]))
    torch.testing.assert_close(source[0], torch.tensor([2.0, 0.0]))  # source untouched


def test_polyak_tau_one_copies_modules_in_place():
    torch.manual_seed(0)
    net, target_net = torch.nn.Linear(3, 4), torch.nn.Linear(3, 4)
    weight = target_net.weight
    polyak_update(target_net.parameters(), net.parameters(), 1.0)
    assert target_net.weight is weight  # updated in place
    for t, s in zip(target_net.parameters(), net.parameters()):
        assert torch.equal(t, s)
        assert t.grad_fn is None
    # Small tau moves only part of the way.
    net2 = torch.nn.Linear(3, 4)
    before = target_net.weight.detach().clone()
    polyak_update(target_net.parameters(), net2.parameters(), 0.005)
    torch.testing.assert_close(target_net.weight, 0.995 * before + 0.005 * net2.weight)


def test_polyak_bad_args():
    a = [torch.zeros(2)]
    for tau in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="tau"):
            polyak_update(a, a, tau)
    with pytest.raises(ValueError, match="pair up"):
        polyak_update(a, a + a, 0.5)
