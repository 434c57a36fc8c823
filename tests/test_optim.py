"""maxent/training/optim.py: Adam as tensor ops on torch.optim.Adam's own state takes exactly the steps
torch's Adam takes, so eager, compiled and resumed runs share one optimizer."""

import pytest
import torch

from maxent.training.optim import adam_step_, init_adam_state


def _params(seed: int) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(4, 3, generator=g)),
            torch.nn.Parameter(torch.randn(3, generator=g))]


@pytest.mark.parametrize("fused", [False, True])
def test_adam_step_matches_torch_adam(fused):
    ours, theirs = _params(0), _params(0)
    groups = lambda ps: [{"params": [ps[0]], "lr": 1e-2}, {"params": [ps[1]], "lr": 3e-3}]
    opt_ours = torch.optim.Adam(groups(ours), betas=(0.8, 0.99), eps=1e-6)
    opt_theirs = torch.optim.Adam(groups(theirs), betas=(0.8, 0.99), eps=1e-6, fused=fused)
    init_adam_state(opt_ours)
    g = torch.Generator().manual_seed(1)
    for _ in range(30):
        grads = [torch.randn(p.shape, generator=g) for p in ours]
        adam_step_(opt_ours, grads)
        for p, grad in zip(theirs, grads):
            p.grad = grad.clone()
        opt_theirs.step()
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    # The state is torch's own: the other implementation continues from it seamlessly.
    opt_theirs.load_state_dict(opt_ours.state_dict())
    assert opt_ours.state_dict()["state"][0]["step"].item() == 30
    assert set(opt_ours.state[ours[0]]) == {"step", "exp_avg", "exp_avg_sq"}


def test_adam_step_rejects_what_it_does_not_implement():
    with pytest.raises(ValueError, match="weight_decay"):
        init_adam_state(torch.optim.Adam(_params(0), weight_decay=0.1))
    with pytest.raises(TypeError, match="torch.optim.Adam"):
        init_adam_state(torch.optim.SGD(_params(0), lr=0.1))
    opt = torch.optim.Adam(_params(0))
    init_adam_state(opt)
    with pytest.raises(ValueError, match="1 gradients for 2 parameters"):
        adam_step_(opt, [torch.zeros(4, 3)])
