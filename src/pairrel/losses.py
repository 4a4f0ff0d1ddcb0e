"""The two losses of the study, with one call: ``loss(query_emb[Q, d], doc_emb[D, d], targets[Q, D])``.

Notation: q_i, d_j are the embeddings, L2-normalised here,
s_ij = cos(q_i, d_j), and y_ij ∈ [0, 1] the relevance target of document j for query i
(0 when unjudged or irrelevant). Every loss is query → documents only.

Each loss also states, as a pure function of the targets, how many rows its mean runs over
(``counted_rows(targets)``, a tensor: nothing is stored by ``forward``, and nothing is read back
to the host, so a step never waits for the device); ``log_values(targets)`` gives the scalars
for metrics.jsonl. Cross-process training weights each rank's loss by its counted rows
(``pairrel.distributed``).

The constructors' default arguments are the schema's defaults of the same keys (``losses:`` in
``pairrel/schema/config.schema.yaml``), for library use; ``tests/test_losses.py`` checks that they
agree. Training builds its loss from the run's settings (:func:`build_loss` with a
:mod:`pairrel.settings` loss), never from these defaults.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _cosine(query_emb: torch.Tensor, doc_emb: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """s_ij = (q_i · d_j) / (‖q_i‖ ‖d_j‖), after checking the shapes agree.

    Dividing the [Q, D] dot products by the outer product of the norms touches Q·D numbers;
    normalising the embeddings first would touch (Q + D)·d, more for wide LLM embeddings.
    """
    if query_emb.dim() != 2 or doc_emb.dim() != 2 or query_emb.shape[1] != doc_emb.shape[1]:
        raise ValueError(f"expected query_emb [Q, d] and doc_emb [D, d], got {tuple(query_emb.shape)} and {tuple(doc_emb.shape)}")
    if targets.shape != (query_emb.shape[0], doc_emb.shape[0]):
        raise ValueError(f"targets must be [Q, D] = {(query_emb.shape[0], doc_emb.shape[0])}, got {tuple(targets.shape)}")
    query_emb, doc_emb = query_emb.float(), doc_emb.float()
    # clamp: a zero embedding gets cosine 0 with everything (as F.normalize would give), not NaN.
    inv_q = query_emb.norm(dim=1).clamp_min(1e-12).reciprocal()
    inv_d = doc_emb.norm(dim=1).clamp_min(1e-12).reciprocal()
    return (query_emb @ doc_emb.T) * torch.outer(inv_q, inv_d)


class SoftmaxLoss(nn.Module):
    """InfoNCE with (soft) targets, the LLM2Vec baseline (BehnamGhader et al. 2024, arXiv 2404.05961).

    With τ = ``temperature`` (fixed; 0.02 = LLM2Vec's scale 50) and p_ij = y_ij / Σ_k y_ik,

        loss = −(1/|R|) Σ_{i∈R} Σ_j p_ij · log softmax_j(s_ij / τ),    R = {i : Σ_j y_ij > 0}.

    One positive per row gives the usual one-hot cross-entropy; several or graded positives give
    the relevance-weighted soft-target variant. Rows with no positive (i ∉ R) carry no target
    distribution and are left out (``counted_rows`` = |R|). If every row is left out the loss is 0
    (still connected to the graph, so backward runs and gives zero gradients). The mean over R
    is computed as a masked sum divided by max(|R|, 1), so no branch depends on the data.

    Args:
        temperature: τ > 0 dividing the cosine similarities.
    """

    def __init__(self, temperature: float = 0.02) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)

    @staticmethod
    def counted_rows(targets: torch.Tensor) -> torch.Tensor:
        """|R| = number of rows with Σ_j y_ij > 0 (0-dim long tensor on the targets' device)."""
        return (targets.sum(dim=1) > 0).sum()

    def forward(self, query_emb: torch.Tensor, doc_emb: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """query_emb [Q, d], doc_emb [D, d], targets [Q, D] in [0, 1] → scalar loss."""
        logits = _cosine(query_emb, doc_emb, targets) / self.temperature
        targets = targets.to(logits.dtype)
        row_mass = targets.sum(dim=1, keepdim=True)
        # A row without a positive gets p = 0 everywhere: it adds exactly 0 (and 0 gradient).
        target_dist = targets / torch.where(row_mass > 0, row_mass, torch.ones_like(row_mass))
        per_row = -(target_dist * F.log_softmax(logits, dim=1)).sum(dim=1)
        return per_row.sum() / self.counted_rows(targets).clamp_min(1)

    def log_values(self, targets: torch.Tensor) -> dict[str, float]:
        """Scalars for metrics.jsonl; ``targets`` [Q, D] of the (global) batch."""
        excluded = targets.shape[0] - self.counted_rows(targets)
        return {"temperature": self.temperature, "rows_excluded": float(excluded)}


class PairRelevanceBCELoss(nn.Module):
    """Pair relevance classification: binary cross-entropy on every (query, document) pair.

    Logits z_ij = t · s_ij + b with t = exp(t′) (t′ and b learnable or fixed), σ the sigmoid:

        loss = −(1/Q) Σ_i Σ_j [ y_ij log σ(z_ij) + (1 − y_ij) log(1 − σ(z_ij)) ],

    summed over candidates, averaged over queries. With binary y this is SigLIP's sigmoid loss
    (Zhai et al. 2023, arXiv 2303.15343): −(1/Q) Σ_ij log σ(ℓ_ij z_ij) with ℓ_ij = 2y_ij − 1.
    Computed with ``binary_cross_entropy_with_logits`` (log-sum-exp form), stable for any z.
    Every row counts (a row without positives is still informative): ``counted_rows`` is Q.

    Args:
        temperature_init: initial t > 0 (SigLIP: 10); stored as t′ = log t.
        bias_init: initial b (SigLIP: −10; prior log-odds of 1 positive in D is ≈ −log(D − 1)).
        learn_temperature: whether t′ is trained.
        learn_bias: whether b is trained.
    """

    def __init__(
        self,
        temperature_init: float = 10.0,
        bias_init: float = -10.0,
        learn_temperature: bool = True,
        learn_bias: bool = True,
    ) -> None:
        super().__init__()
        if temperature_init <= 0:
            raise ValueError(f"temperature_init must be > 0, got {temperature_init}")
        self.log_temperature = nn.Parameter(torch.tensor(math.log(temperature_init)), requires_grad=learn_temperature)
        self.bias = nn.Parameter(torch.tensor(float(bias_init)), requires_grad=learn_bias)

    @staticmethod
    def counted_rows(targets: torch.Tensor) -> torch.Tensor:
        """Q, every row (0-dim long tensor on the targets' device)."""
        # new_full is a fill on the device; torch.tensor(..., device=cuda) would copy from the host
        # and wait for the queued work.
        return targets.new_full((), targets.shape[0], dtype=torch.long)

    @property
    def temperature(self) -> torch.Tensor:
        """t = exp(t′)."""
        return self.log_temperature.exp()

    def forward(self, query_emb: torch.Tensor, doc_emb: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """query_emb [Q, d], doc_emb [D, d], targets [Q, D] in [0, 1] → scalar loss."""
        logits = self.temperature * _cosine(query_emb, doc_emb, targets) + self.bias
        per_pair = F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype), reduction="none")
        if targets.shape[0] == 0:  # (a shape, not a value: no device sync)
            return 0.0 * logits.sum()
        return per_pair.sum(dim=1).mean()

    def log_values(self, targets: torch.Tensor) -> dict[str, float]:
        """Scalars for metrics.jsonl; ``targets`` [Q, D] of the (global) batch (every row counts)."""
        return {
            "temperature": float(self.temperature.detach()),
            "bias": float(self.bias.detach()),
            "rows_excluded": 0.0,
        }


LOSSES = {"softmax": SoftmaxLoss, "bce": PairRelevanceBCELoss}


def build_loss(name_or_type, **kwargs) -> nn.Module:
    """``"softmax"`` → SoftmaxLoss(**kwargs), ``"bce"`` → PairRelevanceBCELoss(**kwargs).

    A loss's settings (:class:`pairrel.settings.SoftmaxLossSettings` or ``BCELossSettings``,
    what training passes) give the type and every argument. A config entry can also be passed
    whole: ``build_loss(entry["type"], **entry)`` (the ``type`` key is dropped from the keyword
    arguments).
    """
    if hasattr(name_or_type, "arguments"):  # a loss's settings
        if kwargs:
            raise ValueError("build_loss: give a loss's settings or keyword arguments, not both")
        name_or_type, kwargs = name_or_type.type, name_or_type.arguments()
    kwargs.pop("type", None)
    if name_or_type not in LOSSES:
        raise ValueError(f"unknown loss type {name_or_type!r}: expected one of {', '.join(LOSSES)}")
    try:
        return LOSSES[name_or_type](**kwargs)
    except TypeError as err:
        raise ValueError(f"loss {name_or_type!r}: {err}") from None
