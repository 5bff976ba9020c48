"""Joins: the graph nodes where edges meet and gates act.

A join combines several incoming tensors by a rule:

* ``"sum"``: ``y = sum_i w_i * x_i``, the residual addition. With one gated
  branch this is stochastic depth (Huang et al. 2016, arXiv 1603.09382); with
  unit-level weights on both inputs it is swapout,
  ``y = Θ1 ⊙ x + Θ2 ⊙ F(x)`` (Singh, Hoiem and Forsyth 2016,
  arXiv 1605.06465).
* ``"mean"``: the element-wise mean over the surviving inputs,
  ``y = sum_i w_i * x_i / sum_i w_i``, the FractalNet join (Larsson, Maire
  and Shakhnarovich 2016, arXiv 1605.07648).

Each input has a role. ``"skip"`` is an identity path that no edge gate
drops; ``"branch"`` (a residual branch) and ``"column"`` (a FractalNet column)
are gateable. The weights come from the engine, which reads them off the
member or the scheme; a join called outside the engine keeps every input.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = ["ROLES", "RULES", "Join", "combine"]

RULES = ("sum", "mean")
ROLES = ("skip", "branch", "column")


def combine(
    inputs: Sequence[Tensor], rule: str, weights: Sequence[Tensor | None]
) -> Tensor:
    """Combine the inputs of a join under its rule.

    Args:
        inputs: The incoming tensors, all of one shape ``[B, *]``.
        rule: ``"sum"`` or ``"mean"``.
        weights: One entry per input: ``None`` for weight 1, or a tensor that
            broadcasts against the input (a scalar, ``[B, 1, ...]`` for one
            gate per sample, or ``[B, *]`` for unit gates).

    Returns:
        The combined tensor, shape ``[B, *]``. Under ``"mean"``, a sample
        whose weights are all zero gets zeros rather than NaN.
    """
    total = None
    norm = None
    for x, w in zip(inputs, weights, strict=True):
        term = x if w is None else x * w
        total = term if total is None else total + term
        if rule == "mean":
            w_term = torch.ones((), dtype=x.dtype, device=x.device) if w is None else w
            norm = w_term if norm is None else norm + w_term
    if rule == "sum":
        return total

    # Mean over survivors. A zero denominator comes only with a zero total, so
    # it is replaced by 1 (not masked afterwards, which would leak NaN into
    # gradients).
    safe = torch.where(norm > 0, norm, torch.ones_like(norm))
    return total / safe


class Join(nn.Module):
    """Combine several incoming edges by a rule; the place where gates act.

    Args:
        num_inputs: Number of incoming edges (at least 2).
        rule: ``"sum"`` (residual addition) or ``"mean"`` (FractalNet mean over
            surviving inputs) (default: ``"sum"``).
        roles: The role of each input: ``"skip"``, ``"branch"`` or
            ``"column"`` (default: ``("skip", "branch")`` for two inputs,
            otherwise ``"column"`` for each).
        columns: Column index of each input for column-structured graphs such
            as FractalNet, or ``None`` (default: ``None``).

    Shape:
        - Inputs: ``num_inputs`` tensors of one shape ``[B, *]``.
        - Output: ``[B, *]``.

    Example:
        >>> join = Join(2)
        >>> x = torch.ones(3, 4)
        >>> join(x, 2 * x).sum().item()
        36.0
    """

    layershare_leaf = True

    def __init__(
        self,
        num_inputs: int = 2,
        rule: str = "sum",
        roles: Sequence[str] | None = None,
        columns: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        if (
            isinstance(num_inputs, bool)
            or not isinstance(num_inputs, int)
            or num_inputs < 2
        ):
            raise ValueError(
                f"a join needs at least 2 inputs, but got num_inputs={num_inputs!r}"
            )
        if rule not in RULES:
            raise ValueError(f"join rule must be one of {RULES}, but got {rule!r}")

        # A two-input sum is a residual join; anything else joins columns.
        if roles is None:
            residual = num_inputs == 2 and rule == "sum"
            roles = ("skip", "branch") if residual else ("column",) * num_inputs
        roles = tuple(roles)
        if len(roles) != num_inputs:
            raise ValueError(
                f"roles has {len(roles)} entries but the join has {num_inputs} inputs"
            )
        for role in roles:
            if role not in ROLES:
                raise ValueError(f"input role must be one of {ROLES}, but got {role!r}")

        if columns is not None:
            columns = tuple(int(c) for c in columns)
            if len(columns) != num_inputs:
                raise ValueError(
                    f"columns has {len(columns)} entries but the join has "
                    f"{num_inputs} inputs"
                )

        self.num_inputs = num_inputs
        self.rule = rule
        self.roles = roles
        self.columns = columns

    def forward(self, *inputs: Tensor) -> Tensor:
        if len(inputs) != self.num_inputs:
            raise ValueError(
                f"{type(self).__name__} expects {self.num_inputs} inputs, "
                f"but got {len(inputs)}"
            )
        return combine(inputs, self.rule, [None] * len(inputs))

    def extra_repr(self) -> str:
        text = f"num_inputs={self.num_inputs}, rule={self.rule!r}, roles={self.roles}"
        if self.columns is not None:
            text += f", columns={self.columns}"
        return text
