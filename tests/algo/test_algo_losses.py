"""Hand-computed checks of the policy losses, KL estimators and aggregation (METHOD.md §7, §8)."""

from __future__ import annotations

import math

import pytest
import torch

from skillmaster.algo.losses import (
    AGGREGATIONS,
    LOSSES,
    LossInputs,
    LossSettings,
    Norm,
    aggregate,
    entropy_from_logprobs,
    get_loss_fn,
    grpo_loss,
    kl_penalty,
    ppo_clip_loss,
    sft_loss,
)
from skillmaster.errors import ConfigError

VALUES = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]])
MASK = torch.tensor([[1, 1, 1], [1, 0, 0]], dtype=torch.bool)


# --------------------------------------------------------------------------- aggregation
def test_aggregations_by_hand():
    assert float(aggregate(VALUES, MASK, "token-mean")) == pytest.approx(10 / 4)
    assert float(aggregate(VALUES, MASK, "seq-mean-token-mean")) == pytest.approx((2 + 4) / 2)
    assert float(aggregate(VALUES, MASK, "seq-mean-token-sum")) == pytest.approx((6 + 4) / 2)


def test_masked_positions_never_leak_even_if_not_finite():
    values = VALUES.clone()
    values[1, 1:] = float("inf")
    for mode in AGGREGATIONS:
        assert math.isfinite(float(aggregate(values, MASK, mode)))
    assert float(aggregate(values, MASK, "token-mean")) == pytest.approx(2.5)


@pytest.mark.parametrize("mode", list(AGGREGATIONS))
def test_micro_batches_with_the_batch_norm_add_up_to_the_batch_value(mode):
    values = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0], [5.0, 6.0, 0.0], [7.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0], [1, 1, 0], [1, 0, 0]], dtype=torch.bool)
    whole = aggregate(values, mask, mode)
    norm = Norm(tokens=float(mask.sum()), seqs=4.0)
    parts = aggregate(values[:1], mask[:1], mode, norm) + aggregate(values[1:], mask[1:], mode, norm)
    assert float(parts) == pytest.approx(float(whole))
    # the mean of micro-batch means is NOT the token mean (3 tokens + 4 tokens here)
    if mode == "token-mean":
        naive = (aggregate(values[:1], mask[:1], mode) + aggregate(values[1:], mask[1:], mode)) / 2
        assert float(naive) != pytest.approx(float(whole))


def test_unknown_aggregation_is_a_config_error():
    with pytest.raises(ConfigError, match="loss_agg"):
        aggregate(VALUES, MASK, "sum")


# --------------------------------------------------------------------------- KL
def test_kl_estimators_by_hand():
    logp = torch.log(torch.tensor([[0.5]]))
    ref = torch.log(torch.tensor([[0.25]]))
    log2 = math.log(2)
    assert float(kl_penalty(logp, ref, "k1")) == pytest.approx(log2)
    assert float(kl_penalty(logp, ref, "k2")) == pytest.approx(0.5 * log2**2)
    assert float(kl_penalty(logp, ref, "k3")) == pytest.approx(0.5 + log2 - 1)  # e^d − d − 1, d = −log 2


def test_k3_is_zero_for_identical_policies_and_positive_otherwise():
    logp = torch.log_softmax(torch.randn(4, 7, generator=torch.Generator().manual_seed(0)), -1)
    assert torch.equal(kl_penalty(logp, logp, "k3"), torch.zeros_like(logp))
    other = logp + 0.3 * torch.randn(4, 7, generator=torch.Generator().manual_seed(1))
    assert bool((kl_penalty(logp, other, "k3") > 0).all())


def test_k3_is_clamped():
    assert float(kl_penalty(torch.tensor([[-100.0]]), torch.tensor([[0.0]]), "k3")) == 10.0


def test_unknown_kl_is_a_config_error():
    with pytest.raises(ConfigError, match="kl_estimator"):
        kl_penalty(VALUES, VALUES, "k9")


# --------------------------------------------------------------------------- entropy
def _entropy(logits: torch.Tensor) -> torch.Tensor:
    return entropy_from_logprobs(torch.log_softmax(logits, dim=-1))


def test_entropy_from_logprobs():
    assert float(_entropy(torch.zeros(4))) == pytest.approx(math.log(4))
    assert float(_entropy(torch.tensor([100.0, 0.0, 0.0]))) == pytest.approx(0.0, abs=1e-6)
    assert float(_entropy(torch.tensor([math.log(3.0), 0.0]))) == pytest.approx(
        -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    )


def test_entropy_matches_the_categorical_entropy_per_token_and_has_a_gradient():
    logits = (torch.randn(2, 3, 50, generator=torch.Generator().manual_seed(0)) * 4).requires_grad_()
    ent = _entropy(logits / 0.7)  # (B, R, V) -> (B, R), as the trainer calls it
    assert ent.shape == (2, 3)
    expected = torch.distributions.Categorical(logits=logits.detach() / 0.7).entropy()
    torch.testing.assert_close(ent.detach(), expected, rtol=1e-5, atol=1e-5)
    ent.sum().backward()  # the entropy bonus trains through it
    assert logits.grad is not None and bool(logits.grad.abs().sum() > 0)


# --------------------------------------------------------------------------- clipped loss
def _one_token(adv: float, ratio: float):
    logp = torch.tensor([[math.log(ratio)]], requires_grad=True)
    old = torch.zeros(1, 1)
    loss, metrics = ppo_clip_loss(
        logp, old, torch.tensor([adv]), torch.ones(1, 1, dtype=torch.bool), 0.2, 3.0
    )
    loss.backward()
    return float(loss.detach()), metrics, float(logp.grad)


@pytest.mark.parametrize(
    ("adv", "ratio", "loss", "clipped", "dual", "has_grad"),
    [
        (1.0, 1.0, -1.0, 0.0, 0.0, True),  # on-policy: −A
        (1.0, 1.5, -1.2, 1.0, 0.0, False),  # A>0, ρ>1+ε: clipped at 1.2, no gradient
        (1.0, 0.5, -0.5, 0.0, 0.0, True),  # A>0, ρ<1−ε: pessimistic unclipped term wins
        (-1.0, 1.5, 1.5, 0.0, 0.0, True),  # A<0, ρ>1+ε but below c: unclipped
        (-1.0, 0.5, 0.8, 1.0, 0.0, False),  # A<0, ρ<1−ε: clipped at 0.8
        (-1.0, 5.0, 3.0, 0.0, 1.0, False),  # A<0, ρ>c: dual clip bounds the loss at c·|A|
        (-2.0, 5.0, 6.0, 0.0, 1.0, False),
    ],
)
def test_clip_and_dual_clip_regions(adv, ratio, loss, clipped, dual, has_grad):
    value, metrics, grad = _one_token(adv, ratio)
    assert value == pytest.approx(loss)
    assert float(metrics["clip_frac"]) == clipped
    assert float(metrics["dual_clip_frac"]) == dual
    assert (grad != 0.0) == has_grad


def test_dual_clip_off():
    logp = torch.tensor([[math.log(5.0)]])
    loss, metrics = ppo_clip_loss(logp, torch.zeros(1, 1), torch.tensor([-1.0]), torch.ones(1, 1), 0.2, None)
    assert float(loss) == pytest.approx(5.0)
    assert "dual_clip_frac" not in metrics


def test_token_mean_over_masked_tokens_and_approx_kl():
    logp = torch.tensor([[0.0, 0.0, 9.0], [0.0, 9.0, 9.0]])
    old = torch.tensor([[0.0, 0.1, 0.0], [0.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]], dtype=torch.bool)
    adv = torch.tensor([1.0, -1.0])
    loss, metrics = ppo_clip_loss(logp, old, adv, mask, 0.2, 3.0)
    r = math.exp(-0.1)  # in the clip range
    assert float(loss) == pytest.approx((-1.0 - r + 1.0) / 3)
    assert float(metrics["approx_kl"]) == pytest.approx(0.1 / 3)


# --------------------------------------------------------------------------- trainer losses
def test_grpo_loss_on_policy_combines_terms_by_hand():
    logp = torch.tensor([[-1.0, -2.0], [-0.5, 0.0]], requires_grad=True)
    ref = torch.tensor([[-1.5, -2.0], [-0.5, 0.0]])
    ent = torch.tensor([[2.0, 1.0], [3.0, 0.0]])
    mask = torch.tensor([[1, 1], [1, 0]], dtype=torch.bool)
    adv = torch.tensor([2.0, -1.0])
    s = LossSettings(clip_eps=0.2, dual_clip=3.0, kl_coef=0.1, entropy_coef=0.01)
    loss, m = grpo_loss(LossInputs(logp=logp, mask=mask, advantages=adv, ref_logp=ref, entropy=ent), s)
    pg = (-2.0 - 2.0 + 1.0) / 3  # ratio 1 → −A per token
    kl = (math.exp(-0.5) + 0.5 - 1) / 3  # only the first token differs
    assert float(m["pg_loss"]) == pytest.approx(pg)
    assert float(m["kl"]) == pytest.approx(kl)
    assert float(m["entropy"]) == pytest.approx(6.0 / 3)
    assert float(loss.detach()) == pytest.approx(pg + 0.1 * kl - 0.01 * 2.0)
    assert float(m["clip_frac"]) == 0.0
    loss.backward()
    # ∂pg/∂logp = −A/N; ∂(0.1·k3)/∂logp at d = ref − logp: 0.1·(1 − e^d)/N
    expected = [-2 / 3 + 0.1 * (1 - math.exp(-0.5)) / 3, -2 / 3, 1 / 3, 0.0]
    assert logp.grad.flatten().tolist() == pytest.approx(expected, abs=1e-6)


def test_grpo_loss_needs_advantages():
    with pytest.raises(ValueError, match="advantages"):
        grpo_loss(LossInputs(logp=torch.zeros(1, 1), mask=torch.ones(1, 1)), LossSettings())


def test_sft_loss_is_token_mean_nll():
    logp = torch.tensor([[-1.0, -3.0], [-2.0, -100.0]])
    mask = torch.tensor([[1, 1], [1, 0]], dtype=torch.bool)
    loss, m = sft_loss(LossInputs(logp=logp, mask=mask), LossSettings())
    assert float(loss) == pytest.approx(2.0)
    assert float(m["nll"]) == pytest.approx(2.0)


def test_loss_registry():
    assert get_loss_fn("grpo") is grpo_loss and get_loss_fn("sft") is sft_loss
    assert set(LOSSES) == {"grpo", "sft"}
    with pytest.raises(ConfigError):
        get_loss_fn("dpo")
