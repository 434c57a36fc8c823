"""maxent.entropy.token.policy_loss against TRL's own GRPOTrainer._compute_loss (TRL 1.16).

TRL's loss is called on identical tensors through its real code path: a minimal trainer-like
object carries the attributes ``_compute_loss`` reads, and its forward pass
(``_get_per_token_logps_and_entropies``) returns our log-probs instead of running a model. So the
comparison is with TRL, not with a copy of our formula: loss and gradient must agree to 1e-6.

Mapping: grpo -> "seq-mean-token-mean", dapo / bnpo -> "token-mean", dr_grpo ->
"seq-mean-token-sum-norm" with max_length = max_completion_length. Under gradient accumulation TRL
divides grpo/bnpo/dr_grpo by the accumulation steps and dapo by num_items_in_batch (the
generation batch's token count, per process): our ``normalizer`` reproduces each.
"""

from __future__ import annotations

from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

from maxent.entropy.token import LossSettings, policy_loss

trl = pytest.importorskip("trl")
from trl import GRPOConfig
from trl.trainer.grpo_trainer import GRPOTrainer

AGG = {"grpo": "seq-mean-token-mean", "bnpo": "token-mean", "dapo": "token-mean",
       "dr_grpo": "seq-mean-token-sum-norm"}
MAX_COMPLETION_LENGTH = 11


@pytest.fixture(scope="module")
def configs(tmp_path_factory):
    out = tmp_path_factory.mktemp("trl")
    made = {}

    def get(loss_type, beta=0.0, entropy_coef=0.0, ga=1, bias_correction=True):
        key = (loss_type, beta, entropy_coef, ga, bias_correction)
        if key not in made:
            made[key] = GRPOConfig(
                output_dir=str(out), loss_type=loss_type, beta=beta, epsilon=0.2,
                epsilon_high=0.28, entropy_coef=entropy_coef, use_cpu=True, report_to=[],
                max_completion_length=MAX_COMPLETION_LENGTH, gradient_accumulation_steps=ga,
                steps_per_generation=ga, per_device_train_batch_size=4, num_generations=4,
                use_bias_correction_kl=bias_correction)
        return made[key]
    return get


def trl_loss(cfg, log_probs, entropies, inputs, ga=1, **attributes):
    """TRL's own GRPOTrainer._compute_loss on a trainer-like object whose forward pass is ours;
    ``attributes`` set further trainer attributes (importance level, entropy quantile)."""
    accelerator = SimpleNamespace(num_processes=1, sync_gradients=True, gather=lambda x: x,
                                  gather_for_metrics=lambda x: x,
                                  reduce=lambda x, reduction="sum": x,
                                  pad_across_processes=lambda x, dim=0, pad_index=0: x)
    fake = SimpleNamespace(
        args=cfg, loss_type=cfg.loss_type, beta=cfg.beta, epsilon_low=cfg.epsilon,
        epsilon_high=cfg.epsilon_high, importance_sampling_level="token",
        top_entropy_quantile=1.0, off_policy_mask_threshold=None, use_vllm=False,
        vllm_importance_sampling_correction=False, aux_loss_enabled=False,
        max_completion_length=cfg.max_completion_length, accelerator=accelerator,
        current_gradient_accumulation_steps=ga, model=SimpleNamespace(training=True),
        entropy_coef=cfg.entropy_coef, use_adaptive_entropy=False,
        _entropy_bonus_enabled=cfg.entropy_coef != 0.0,
        _metrics={"train": defaultdict(list)},
        _get_per_token_logps_and_entropies=lambda *a, **k: (log_probs, entropies, None),
    )
    for name, value in attributes.items():
        setattr(fake, name, value)
    fake.get_high_entropy_mask = lambda e, m, t: GRPOTrainer.get_high_entropy_mask(fake, e, m, t)
    return GRPOTrainer._compute_loss(fake, None, inputs)


def make_batch(seed, B=4, T=7):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    mask = (torch.arange(T)[None, :] < lengths[:, None]).long()  # right-padded, like TRL
    old = -torch.rand(B, T, generator=g) * 3.0
    log_probs = old + 0.3 * torch.randn(B, T, generator=g)  # ratios well outside [0.8, 1.28]
    ref = old + 0.2 * torch.randn(B, T, generator=g)
    adv = torch.randn(B, generator=g)
    entropies = torch.rand(B, T, generator=g) * 2.0
    return log_probs, old, ref, adv, mask, entropies


def inputs_for(old, ref, adv, mask, num_items):
    B = mask.shape[0]
    return {"prompt_ids": torch.zeros(B, 1, dtype=torch.long),
            "prompt_mask": torch.ones(B, 1, dtype=torch.long),
            "completion_ids": torch.zeros_like(mask), "completion_mask": mask,
            "advantages": adv, "old_per_token_logps": old, "ref_per_token_logps": ref,
            "num_items_in_batch": torch.tensor(float(num_items))}


@pytest.mark.parametrize("loss_type", ["grpo", "dr_grpo", "dapo", "bnpo"])
@pytest.mark.parametrize("beta, bias_correction", [(0.0, True), (0.04, True), (0.04, False)])
def test_loss_and_gradient_equal_trl(configs, loss_type, beta, bias_correction):
    for seed in range(3):
        lp, old, ref, adv, mask, ent = make_batch(seed)
        lp_trl = lp.clone().requires_grad_()
        theirs = trl_loss(configs(loss_type, beta, bias_correction=bias_correction), lp_trl, ent,
                          inputs_for(old, ref, adv, mask, mask.sum()))
        (g_trl,) = torch.autograd.grad(theirs, lp_trl)
        lp_ours = lp.clone().requires_grad_()
        settings = LossSettings(aggregation=AGG[loss_type], max_length=MAX_COMPLETION_LENGTH,
                                clip_low=0.2, clip_high=0.28, kl_coef=beta,
                                kl_importance_correction=bias_correction)
        ours = policy_loss(lp_ours, old, adv, mask, settings, ref_log_probs=ref if beta else None)
        (g_ours,) = torch.autograd.grad(ours.loss, lp_ours)
        assert abs(ours.loss.item() - theirs.item()) < 1e-6, (loss_type, seed)
        torch.testing.assert_close(g_ours, g_trl, atol=1e-6, rtol=0)


def test_clip_metrics_equal_trl(configs):
    lp, old, ref, adv, mask, ent = make_batch(7)
    metrics = {"train": defaultdict(list)}
    cfg = configs("dapo")
    trl_loss(cfg, lp, ent, inputs_for(old, ref, adv, mask, mask.sum()), _metrics=metrics)
    ours = policy_loss(lp, old, adv, mask, entropy=ent).metrics
    assert abs(ours["clip_fraction"].item() - metrics["train"]["clip_ratio/region_mean"][0]) < 1e-6
    assert abs(ours["clip_fraction_low"].item() - metrics["train"]["clip_ratio/low_mean"][0]) < 1e-6
    assert abs(ours["clip_fraction_high"].item()
               - metrics["train"]["clip_ratio/high_mean"][0]) < 1e-6
    assert abs(ours["entropy"].item() - metrics["train"]["entropy"][0]) < 1e-6


@pytest.mark.parametrize("loss_type", ["grpo", "dapo"])
@pytest.mark.parametrize("beta", [0.0, 0.04])
def test_sampler_importance_weights_equal_trl(configs, loss_type, beta):
    """vLLM's importance-sampling correction weighs the policy term only; the KL term is added
    after, unweighted, in TRL (a weighted KL gives another loss as soon as beta > 0)."""
    for seed in range(3):
        lp, old, ref, adv, mask, ent = make_batch(seed)
        weights = 0.5 + torch.rand(lp.shape, generator=torch.Generator().manual_seed(100 + seed))
        inputs = inputs_for(old, ref, adv, mask, mask.sum())
        inputs["importance_sampling_ratio"] = weights
        lp_trl = lp.clone().requires_grad_()
        theirs = trl_loss(configs(loss_type, beta), lp_trl, ent, inputs, use_vllm=True,
                          vllm_importance_sampling_correction=True)
        (g_trl,) = torch.autograd.grad(theirs, lp_trl)
        lp_ours = lp.clone().requires_grad_()
        settings = LossSettings(aggregation=AGG[loss_type], max_length=MAX_COMPLETION_LENGTH,
                                clip_low=0.2, clip_high=0.28, kl_coef=beta,
                                kl_importance_correction=True)
        ours = policy_loss(lp_ours, old, adv, mask, settings, ref_log_probs=ref if beta else None,
                           sampling_weights=weights)
        (g_ours,) = torch.autograd.grad(ours.loss, lp_ours)
        assert abs(ours.loss.item() - theirs.item()) < 1e-6, (loss_type, beta, seed)
        torch.testing.assert_close(g_ours, g_trl, atol=1e-6, rtol=0)


@pytest.mark.parametrize("loss_type", ["grpo", "dr_grpo", "dapo"])
def test_gradient_accumulation_matches_trl_via_normalizer(configs, loss_type):
    """Two micro-batches of 2 sequences, TRL accumulating 2 steps per generation of 4."""
    lp, old, ref, adv, mask, ent = make_batch(11)
    cfg = configs(loss_type, ga=2)
    n_tokens = int(mask.sum())
    normalizer = {"grpo": 4.0, "dapo": float(n_tokens),
                  "dr_grpo": 4.0 * MAX_COMPLETION_LENGTH}[loss_type]
    settings = LossSettings(aggregation=AGG[loss_type], max_length=MAX_COMPLETION_LENGTH)
    total_trl = 0.0
    for part in (slice(0, 2), slice(2, 4)):
        theirs = trl_loss(cfg, lp[part], ent[part],
                          inputs_for(old[part], ref[part], adv[part], mask[part], n_tokens), ga=2)
        ours = policy_loss(lp[part], old[part], adv[part], mask[part], settings,
                           normalizer=normalizer)
        assert abs(ours.loss.item() - theirs.item()) < 1e-6
        total_trl += theirs.item()
    full = policy_loss(lp, old, adv, mask, settings)
    # Equal-size micro-batches: the accumulated TRL loss is our full-batch loss.
    assert abs(full.loss.item() - total_trl) < 1e-6


@pytest.mark.parametrize("loss_type", ["grpo", "dapo"])
def test_entropy_bonus_matches_trl(configs, loss_type):
    """TRL's bonus is the micro-batch token-mean entropy whatever the loss type."""
    lp, old, ref, adv, mask, ent = make_batch(5)
    lp_trl = lp.clone().requires_grad_()
    ent_trl = ent.clone().requires_grad_()
    theirs = trl_loss(configs(loss_type, entropy_coef=0.05), lp_trl, ent_trl,
                      inputs_for(old, ref, adv, mask, mask.sum()))
    g_trl = torch.autograd.grad(theirs, (lp_trl, ent_trl))
    lp_ours = lp.clone().requires_grad_()
    ent_ours = ent.clone().requires_grad_()
    settings = LossSettings(aggregation=AGG[loss_type], entropy_aggregation="token-mean")
    ours = policy_loss(lp_ours, old, adv, mask, settings, entropy=ent_ours, entropy_coef=0.05)
    g_ours = torch.autograd.grad(ours.loss, (lp_ours, ent_ours))
    assert abs(ours.loss.item() - theirs.item()) < 1e-6
    for a, b in zip(g_ours, g_trl):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


# --------------------------------------------------------------------------- new loss types


def new_config(tmp_path_factory, loss_type, beta=0.0, epsilon_high=0.28, delta=None, bias=True):
    return GRPOConfig(output_dir=str(tmp_path_factory.mktemp("trl2")), loss_type=loss_type,
                      beta=beta, epsilon=0.2, epsilon_high=epsilon_high, delta=delta, use_cpu=True,
                      report_to=[], max_completion_length=MAX_COMPLETION_LENGTH,
                      per_device_train_batch_size=4, num_generations=4, use_bias_correction_kl=bias)


def ours_loss(lp, old, ref, adv, mask, settings, **kwargs):
    return policy_loss(lp, old, adv, mask, settings, ref_log_probs=ref if settings.kl_coef else None,
                       **kwargs)


CASES = {  # name: (TRL loss_type, TRL extras, our settings, TRL epsilon_high, delta)
    "gspo_grpo": ("grpo", {"importance_sampling_level": "sequence"},
                  dict(aggregation="seq-mean-token-mean", importance_sampling_level="sequence"), 0.28, None),
    "gspo_dapo": ("dapo", {"importance_sampling_level": "sequence"},
                  dict(aggregation="token-mean", importance_sampling_level="sequence"), 0.28, None),
    "cispo": ("cispo", {}, dict(aggregation="token-mean", surrogate="cispo", clip_high=1.1), 1.1, None),
    "sapo": ("sapo", {}, dict(aggregation="seq-mean-token-mean", surrogate="sapo"), 0.28, None),
    "sapo_sequence": ("sapo", {"importance_sampling_level": "sequence"},
                      dict(aggregation="seq-mean-token-mean", surrogate="sapo",
                           importance_sampling_level="sequence"), 0.28, None),
    "delta": ("dapo", {}, dict(aggregation="token-mean", dual_clip=1.35), 0.28, 1.35),
    "delta_gspo": ("grpo", {"importance_sampling_level": "sequence"},
                   dict(aggregation="seq-mean-token-mean", importance_sampling_level="sequence",
                        dual_clip=1.35), 0.28, 1.35),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("beta, bias", [(0.0, True), (0.04, True), (0.04, False)])
def test_new_loss_types_and_gspo_equal_trl(tmp_path_factory, case, beta, bias):
    loss_type, extras, ours_settings, eps_high, delta = CASES[case]
    cfg = new_config(tmp_path_factory, loss_type, beta, eps_high, delta, bias)
    settings = LossSettings(max_length=MAX_COMPLETION_LENGTH, clip_low=0.2,
                            **{"clip_high": 0.28, **ours_settings}, kl_coef=beta,
                            kl_importance_correction=bias)
    for seed in range(3):
        lp, old, ref, adv, mask, ent = make_batch(seed)
        lp_trl = lp.clone().requires_grad_()
        theirs = trl_loss(cfg, lp_trl, ent, inputs_for(old, ref, adv, mask, mask.sum()), **extras)
        (g_trl,) = torch.autograd.grad(theirs, lp_trl)
        lp_ours = lp.clone().requires_grad_()
        ours = ours_loss(lp_ours, old, ref, adv, mask, settings)
        (g_ours,) = torch.autograd.grad(ours.loss, lp_ours)
        assert abs(ours.loss.item() - theirs.item()) < 1e-6, (case, seed)
        torch.testing.assert_close(g_ours, g_trl, atol=1e-6, rtol=0)


@pytest.mark.parametrize("quantile", [0.2, 0.5, 1.0])
@pytest.mark.parametrize("loss_type", ["grpo", "dapo"])
def test_top_entropy_quantile_equals_trl(tmp_path_factory, quantile, loss_type):
    from maxent.entropy.token import high_entropy_mask

    cfg = new_config(tmp_path_factory, loss_type)
    settings = LossSettings(aggregation=AGG[loss_type], max_length=MAX_COMPLETION_LENGTH)
    for seed in range(3):
        lp, old, ref, adv, mask, ent = make_batch(seed)
        lp_trl = lp.clone().requires_grad_()
        theirs = trl_loss(cfg, lp_trl, ent, inputs_for(old, ref, adv, mask, mask.sum()),
                               top_entropy_quantile=quantile)
        (g_trl,) = torch.autograd.grad(theirs, lp_trl)
        lp_ours = lp.clone().requires_grad_()
        keep = high_entropy_mask(ent, mask, quantile)
        ours = policy_loss(lp_ours, old, adv, mask, settings, entropy_mask=keep)
        (g_ours,) = torch.autograd.grad(ours.loss, lp_ours)
        assert abs(ours.loss.item() - theirs.item()) < 1e-6
        torch.testing.assert_close(g_ours, g_trl, atol=1e-6, rtol=0)
        if quantile < 1:
            assert keep.sum() < mask.sum()  # it does select
