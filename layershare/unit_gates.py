"""Unit gates at run time: member masks from seeds, and the engine's call context.

A scheme with unit gates (see :class:`~layershare.Scheme`) turns uniforms into
masks. When training, the uniforms come from torch's random number generator
on the input's device. When running members, they come from each member's
seed on the CPU, so a member's masks are the same on every device and for
every batch size.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from layershare.errors import MemberError
from layershare.graph import Graph
from layershare.random import derive_seed

if TYPE_CHECKING:
    from layershare.schemes import Scheme

__all__ = ["UnitGateState", "member_masks"]

UNIT_MODES = ("train", "member", "inference")


def member_masks(
    scheme: Scheme, graph: Graph, join: str, seed: int, numel: int
) -> Tensor:
    """Return a member's unit masks at a join, ``[num_inputs, numel]`` boolean.

    The uniforms come from a CPU ``torch.Generator`` seeded with the member
    seed and the join's index among the graph's joins, in float64, so the
    masks depend only on those and on ``numel``, never on the device or the
    batch size.
    """
    index = graph.joins.index(join)
    generator = torch.Generator(device="cpu")
    generator.manual_seed(derive_seed(int(seed), index))
    num_inputs = len(graph.in_edges(join))
    u = torch.rand(
        (num_inputs, numel), generator=generator, dtype=torch.float64, device="cpu"
    )
    return scheme.unit_masks(graph, join, u).to(torch.bool)


class UnitGateState:
    """Unit-gate context of one forward call, passed by the engine to the scheme.

    Args:
        mode: ``"train"`` draws fresh masks from torch's random number
            generator on the input's device, per sample or per batch by the
            scheme's granularity. ``"member"`` builds each member's masks
            from its seed. ``"inference"`` uses the expected masks.
        seeds: Member seeds ``[M]`` (``"member"`` mode only).
        rows_per_member: Consecutive batch rows of each member, the engine
            stacking members member-major (``"member"`` mode only, default: 1).
        cache: Dictionary reused across calls for members' CPU masks, keyed by
            join and seed (default: a new one).
    """

    def __init__(
        self,
        mode: str,
        seeds: Tensor | None = None,
        rows_per_member: int = 1,
        cache: dict | None = None,
    ) -> None:
        if mode not in UNIT_MODES:
            raise ValueError(f"mode must be one of {UNIT_MODES}, but got {mode!r}")
        self.mode = mode
        if mode == "member" and seeds is None:
            raise MemberError(
                "the scheme has unit gates, so members need unit-gate seeds; draw "
                "them with Sampler(model, scheme).sample(n, seed=...)"
            )
        self.seeds = None if seeds is None else [int(s) for s in seeds.tolist()]
        self.rows_per_member = rows_per_member
        self.cache = {} if cache is None else cache
        self._call: dict[str, Tensor] = {}

    def masks(self, scheme: Scheme, graph: Graph, join: str, x: Tensor) -> Tensor:
        """Return the masks of all inputs of a join, ``[num_inputs, B or 1, *]``.

        The masks are made once per join and call, so inputs whose masks are
        coupled (one unit either skips or goes forward) see the same draw.
        """
        if join not in self._call:
            self._call[join] = self._make(scheme, graph, join, x)
        return self._call[join]

    def _make(self, scheme: Scheme, graph: Graph, join: str, x: Tensor) -> Tensor:
        num_inputs = len(graph.in_edges(join))
        if self.mode == "train":
            rows = x.shape[0] if scheme.granularity == "sample" else 1
            u = torch.rand(
                (num_inputs, rows, *x.shape[1:]), device=x.device, dtype=torch.float32
            )
            return scheme.unit_masks(graph, join, u).to(x.dtype)

        # Member mode: one mask per member, repeated over its rows.
        numel = math.prod(x.shape[1:])
        declared = (scheme.unit_counts(graph) or {}).get(join)
        if declared is not None and declared != numel:
            raise MemberError(
                f"{type(scheme).__name__} declares {declared} units at join "
                f"{join!r}, but its input has {numel} per sample (shape "
                f"{list(x.shape[1:])}); pass the right units= or leave it out"
            )
        if x.shape[0] != len(self.seeds) * self.rows_per_member:
            raise MemberError(
                f"join {join!r} gets {x.shape[0]} rows, but {len(self.seeds)} "
                f"members of {self.rows_per_member} rows each make "
                f"{len(self.seeds) * self.rows_per_member}"
            )
        per_member = []
        for seed in self.seeds:
            key = (join, seed, numel)
            if key not in self.cache:
                self.cache[key] = member_masks(scheme, graph, join, seed, numel)
            per_member.append(self.cache[key])
        masks = torch.stack(per_member, dim=1).reshape(
            num_inputs, len(self.seeds), *x.shape[1:]
        )
        masks = masks.repeat_interleave(self.rows_per_member, dim=1)
        return masks.to(device=x.device, dtype=x.dtype)
