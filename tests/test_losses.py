"""Losses against values worked out on paper.

The 2×3 case used throughout: q1 = (1, 0), q2 = (0, 2) (not unit length: the loss normalises),
d1 = (1, 0), d2 = (0, 1), d3 = (3, 4) → unit (0.6, 0.8), so the cosines are

    s = [[1, 0, 0.6],
         [0, 1, 0.8]].
"""

import math

import pytest
import torch
import torch.nn.functional as F

from pairrel.losses import PairRelevanceBCELoss, SoftmaxLoss, build_loss

Q = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
D = torch.tensor([[1.0, 0.0], [0.0, 1.0], [3.0, 4.0]])
ONE_HOT = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


# --- softmax -------------------------------------------------------------------------------


def test_softmax_one_hot_by_hand():
    # τ = 0.5 → logits [[2, 0, 1.2], [0, 2, 1.6]]; row i: log Σ_j e^{z_ij} − z_i,pos
    loss = SoftmaxLoss(temperature=0.5)(Q, D, ONE_HOT)
    row1 = math.log(math.e**2 + 1 + math.exp(1.2)) - 2  # 0.460372…
    row2 = math.log(1 + math.e**2 + math.exp(1.6)) - 2  # 0.590923…
    assert loss.item() == pytest.approx((row1 + row2) / 2, abs=1e-6)
    assert loss.item() == pytest.approx(0.5256480714, abs=1e-6)


def test_softmax_soft_targets_and_excluded_row():
    # Row 1 targets (1, 0, 0.5) → p = (2/3, 0, 1/3); row 2 has no positive and is left out.
    loss_fn = SoftmaxLoss(temperature=0.5)
    targets = torch.tensor([[1.0, 0.0, 0.5], [0.0, 0.0, 0.0]])
    loss = loss_fn(Q, D, targets)
    log_z = math.log(math.e**2 + 1 + math.exp(1.2))
    expected = -(2 / 3 * (2 - log_z) + 1 / 3 * (1.2 - log_z))
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    assert loss.item() == pytest.approx(0.7270392202, abs=1e-6)
    assert loss_fn.counted_rows(targets).item() == 1
    assert loss_fn.log_values(targets) == {"temperature": 0.5, "rows_excluded": 1.0}
    # the mean runs over the counted row only: the zero row does not halve the loss
    assert SoftmaxLoss(0.5)(Q[:1], D, targets[:1]).item() == pytest.approx(expected, abs=1e-6)


def test_counted_rows_are_a_pure_function_of_the_targets():
    targets = torch.tensor([[0.0, 0.0, 0.0], [0.0, 1 / 3, 0.0], [0.0, 0.0, 0.0], [1.0, 0.0, 1.0]])
    assert SoftmaxLoss.counted_rows(targets).item() == 2  # rows 1 and 3 have a positive
    assert PairRelevanceBCELoss.counted_rows(targets).item() == 4  # every row
    loss_fn = SoftmaxLoss(0.5)
    before = dict(vars(loss_fn))
    loss_fn(torch.randn(4, 2), D, targets)
    assert dict(vars(loss_fn)) == before  # forward stores nothing on the module


def test_softmax_one_positive_equals_cross_entropy():
    torch.manual_seed(0)
    q, d = torch.randn(6, 8), torch.randn(10, 8)
    positives = torch.tensor([3, 0, 9, 3, 5, 1])
    targets = F.one_hot(positives, 10).float()
    logits = F.normalize(q, dim=-1) @ F.normalize(d, dim=-1).T / 0.02
    expected = F.cross_entropy(logits, positives)
    assert SoftmaxLoss(0.02)(q, d, targets).item() == pytest.approx(expected.item(), rel=1e-6)


def test_softmax_scale_of_targets_does_not_matter():
    # p_ij = y_ij / Σ_j y_ij: graded targets (2/3, 1/3) and (1, 0.5) give the same distribution.
    a = SoftmaxLoss(0.5)(Q, D, torch.tensor([[2 / 3, 0.0, 1 / 3], [0.0, 1.0, 0.0]]))
    b = SoftmaxLoss(0.5)(Q, D, torch.tensor([[1.0, 0.0, 0.5], [0.0, 0.3, 0.0]]))
    assert a.item() == pytest.approx(b.item(), abs=1e-6)


def test_softmax_all_rows_excluded_is_zero_with_grad():
    q = Q.clone().requires_grad_()
    loss_fn = SoftmaxLoss(0.5)
    loss = loss_fn(q, D, torch.zeros(2, 3))
    assert loss.item() == 0.0 and loss_fn.log_values(torch.zeros(2, 3))["rows_excluded"] == 2.0
    loss.backward()
    assert torch.equal(q.grad, torch.zeros_like(q))


# --- BCE -----------------------------------------------------------------------------------


def test_bce_binary_by_hand_and_parameter_gradients():
    # t = 2, b = −1 → z = 2s − 1 = [[1, −1, 0.2], [−1, 1, 0.6]].
    # −log σ(z) = softplus(−z), −log(1 − σ(z)) = softplus(z).
    loss_fn = PairRelevanceBCELoss(temperature_init=2.0, bias_init=-1.0)
    loss = loss_fn(Q, D, ONE_HOT)
    row1 = softplus(-1) + softplus(-1) + softplus(0.2)
    row2 = softplus(-1) + softplus(-1) + softplus(0.6)
    assert loss.item() == pytest.approx((row1 + row2) / 2, abs=1e-6)
    assert loss.item() == pytest.approx(1.5443367850, abs=1e-6)
    loss.backward()
    # ∂L/∂b = (1/Q) Σ_ij (σ(z_ij) − y_ij);  ∂L/∂t′ = t · (1/Q) Σ_ij (σ(z_ij) − y_ij) s_ij.
    z = [[1, -1, 0.2], [-1, 1, 0.6]]
    s = [[1, 0, 0.6], [0, 1, 0.8]]
    y = ONE_HOT.tolist()
    grad_b = sum(sigmoid(z[i][j]) - y[i][j] for i in range(2) for j in range(3)) / 2
    grad_t = 2 * sum((sigmoid(z[i][j]) - y[i][j]) * s[i][j] for i in range(2) for j in range(3)) / 2
    assert loss_fn.bias.grad.item() == pytest.approx(grad_b, abs=1e-6)  # 0.597745…
    assert loss_fn.log_temperature.grad.item() == pytest.approx(grad_t, abs=1e-6)  # 0.308542…


def test_bce_graded_targets_by_hand():
    # y = [[1, 0, 1/3], [0, 2/3, 0]] (graded-linear of grades [[3, 0, 1], [-1, 2, 0]], max 3)
    y = [[1.0, 0.0, 1 / 3], [0.0, 2 / 3, 0.0]]
    z = [[1, -1, 0.2], [-1, 1, 0.6]]
    expected = sum(y[i][j] * softplus(-z[i][j]) + (1 - y[i][j]) * softplus(z[i][j]) for i in range(2) for j in range(3)) / 2
    loss = PairRelevanceBCELoss(2.0, -1.0)(Q, D, torch.tensor(y))
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    assert loss.item() == pytest.approx(1.6776701183, abs=1e-6)


def test_bce_binary_equals_siglip_formula():
    # SigLIP: labels ℓ = +1 on positives, −1 elsewhere; −Σ_j log σ(ℓ_ij (t s_ij + b)), mean over i.
    torch.manual_seed(1)
    q, d = torch.randn(5, 16), torch.randn(9, 16)
    targets = (torch.rand(5, 9) < 0.3).float()
    t, b = 10.0, -10.0
    logits = t * F.normalize(q, dim=-1) @ F.normalize(d, dim=-1).T + b
    signs = 2 * targets - 1
    siglip = -F.logsigmoid(signs * logits).sum() / q.shape[0]
    ours = PairRelevanceBCELoss(t, b)(q, d, targets)
    assert ours.item() == pytest.approx(siglip.item(), rel=1e-6)


def test_bce_fixed_parameters_do_not_learn_and_log_values():
    loss_fn = PairRelevanceBCELoss(10.0, -10.0, learn_temperature=False, learn_bias=False)
    assert not loss_fn.log_temperature.requires_grad and not loss_fn.bias.requires_grad
    assert [p for p in loss_fn.parameters() if p.requires_grad] == []
    values = loss_fn.log_values(ONE_HOT)
    assert values["temperature"] == pytest.approx(10.0) and values["bias"] == pytest.approx(-10.0)
    assert values["rows_excluded"] == 0.0


def test_bias_learns_toward_label_prior():
    # With embeddings that carry no signal (s = 0 everywhere) the optimum of b is the log-odds
    # of the positive rate: 1 positive among 4 candidates → b* = log(1/3).
    q = torch.tensor([[1.0, 0.0]] * 4)
    d = torch.tensor([[0.0, 1.0]] * 4)
    loss_fn = PairRelevanceBCELoss(10.0, 0.0, learn_temperature=False)
    opt = torch.optim.SGD(loss_fn.parameters(), lr=0.5)
    for _ in range(300):
        opt.zero_grad()
        loss_fn(q, d, torch.eye(4)).backward()
        opt.step()
    assert loss_fn.bias.item() == pytest.approx(math.log(1 / 3), abs=1e-3)


# --- both ----------------------------------------------------------------------------------


@pytest.mark.parametrize("loss_fn", [SoftmaxLoss(temperature=1e-4), PairRelevanceBCELoss(1e4, 0.0)])
def test_gradients_finite_at_logits_1e4(loss_fn):
    # |s| ≤ 1, so τ = 1e-4 and t = 1e4 drive logits to ±1e4.
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]], requires_grad=True)
    d = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]], requires_grad=True)
    targets = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])  # the worst case: wrong by 1e4
    loss = loss_fn(q, d, targets)
    loss.backward()
    assert torch.isfinite(loss) and loss.item() > 1e3
    assert torch.isfinite(q.grad).all() and torch.isfinite(d.grad).all()
    for param in loss_fn.parameters():
        assert torch.isfinite(param.grad).all()


@pytest.mark.parametrize("make", [lambda: SoftmaxLoss(0.05), lambda: PairRelevanceBCELoss(10.0, -5.0)])
def test_repeated_queries_and_shared_documents(make):
    # Query 0 appears twice (rows 0 and 2, same targets); doc 1 is shared: relevant to rows 0,
    # 1 and 2. Each identical row contributes the same per-row loss, so the mean over
    # [r0, r1, r0] equals (2·r0 + r1) / 3 computed from the rows on their own.
    torch.manual_seed(2)
    q, d = torch.randn(2, 4), torch.randn(3, 4)
    targets = torch.tensor([[0.0, 1.0, 0.5], [1.0, 1.0, 0.0]])
    loss_fn = make()
    r0 = loss_fn(q[:1], d, targets[:1]).item()
    r1 = loss_fn(q[1:], d, targets[1:]).item()
    stacked = loss_fn(q[[0, 1, 0]], d, targets[[0, 1, 0]]).item()
    assert stacked == pytest.approx((2 * r0 + r1) / 3, rel=1e-6)


def test_bce_duplicate_column_adds_its_pairs_once_more():
    # BCE sums over columns: a document present twice (with its label in both columns) adds
    # its own column's loss once more: L(d0, d1, d2, d1) = L(d0, d1, d2) + L(d1).
    torch.manual_seed(2)
    q, d = torch.randn(2, 4), torch.randn(3, 4)
    targets = torch.tensor([[0.0, 1.0, 0.5], [1.0, 1.0, 0.0]])
    loss_fn = PairRelevanceBCELoss(10.0, -5.0)
    dup = loss_fn(q, d[[0, 1, 2, 1]], targets[:, [0, 1, 2, 1]]).item()
    parts = loss_fn(q, d, targets).item() + loss_fn(q, d[[1]], targets[:, [1]]).item()
    assert dup == pytest.approx(parts, rel=1e-6)


def test_softmax_duplicate_column_matches_formula():
    # Row targets (0, 1, 0, 1) over columns (d0, d1, d2, d1): p = (0, ½, 0, ½), so the loss is
    # −log softmax of d1's logit among 4 columns, with d1 counted twice in the denominator.
    torch.manual_seed(3)
    q, d = torch.randn(1, 4), torch.randn(3, 4)
    cols = d[[0, 1, 2, 1]]
    logits = (F.normalize(q, dim=-1) @ F.normalize(cols, dim=-1).T / 0.1)[0]
    expected = -(logits[1] - torch.logsumexp(logits, dim=0))
    got = SoftmaxLoss(0.1)(q, cols, torch.tensor([[0.0, 1.0, 0.0, 1.0]]))
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)


def test_shape_errors_and_build_loss():
    with pytest.raises(ValueError, match="targets must be"):
        SoftmaxLoss()(Q, D, torch.zeros(2, 2))
    with pytest.raises(ValueError, match="expected query_emb"):
        SoftmaxLoss()(Q, torch.zeros(3, 5), ONE_HOT)
    assert isinstance(build_loss("softmax", temperature=0.02), SoftmaxLoss)
    bce = build_loss("bce", type="bce", temperature_init=10.0, bias_init=-10.0, learn_temperature=True, learn_bias=False)
    assert isinstance(bce, PairRelevanceBCELoss) and not bce.bias.requires_grad
    with pytest.raises(ValueError, match="unknown loss type 'mse'"):
        build_loss("mse")
    with pytest.raises(ValueError, match="softmax"):
        build_loss("softmax", bias_init=0.0)


def test_zero_embedding_has_cosine_zero_not_nan():
    q = torch.tensor([[0.0, 0.0], [0.0, 2.0]], requires_grad=True)
    loss = PairRelevanceBCELoss(2.0, -1.0)(q, D, ONE_HOT)
    # row 1: z = 2·0 − 1 = −1 everywhere → softplus(1) + 2·softplus(−1); row 2 as before
    row1 = softplus(1) + 2 * softplus(-1)
    row2 = softplus(-1) + softplus(-1) + softplus(0.6)
    assert loss.item() == pytest.approx((row1 + row2) / 2, abs=1e-6)
    loss.backward()
    assert torch.isfinite(q.grad).all()


def test_constructor_defaults_are_the_schema_defaults():
    """The constructors' defaults (library use) may not drift from the schema, which owns them."""
    import inspect

    from tests.test_settings import _loss_branch

    for loss_type, cls in (("softmax", SoftmaxLoss), ("bce", PairRelevanceBCELoss)):
        properties = _loss_branch(loss_type)
        for name, parameter in inspect.signature(cls).parameters.items():
            assert parameter.default == properties[name]["default"], (cls.__name__, name)


def test_build_loss_from_settings():
    from pairrel.settings import loss_settings

    settings = loss_settings({"type": "bce", "temperature_init": 2.0, "bias_init": -1.0, "learn_temperature": False,
                              "learn_bias": True, "learning_rate": None})
    bce = build_loss(settings)
    assert isinstance(bce, PairRelevanceBCELoss) and not bce.log_temperature.requires_grad
    assert float(bce.temperature.detach()) == pytest.approx(2.0) and float(bce.bias.detach()) == -1.0
    assert build_loss(loss_settings({"type": "softmax", "temperature": 0.5})).temperature == 0.5
