"""Members: gate assignments that pick one deterministic subnetwork each.

A :class:`Members` container stores edge-gate keep bits as a boolean tensor
``[M, num_gates]`` in canonical form: a gate on an edge that no active
input-to-output path uses is stored as 0, so two assignments that activate the
same subgraph are stored identically. Gate ``g`` has weight ``2**g`` in a
member's integer :attr:`Member.code`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from os import PathLike

import torch
from torch import Tensor

from layershare.errors import MemberError

__all__ = ["Member", "Members"]

_FORMAT_VERSION = 1


@dataclass(frozen=True)
class Member:
    """One gate assignment, hashable and comparable.

    Attributes:
        code: Integer with bit ``g`` set when gate ``g`` is kept.
        num_gates: Number of edge gates of the graph it belongs to.
    """

    code: int
    num_gates: int

    @property
    def bits(self) -> Tensor:
        """Keep bits as a boolean tensor ``[num_gates]``."""
        return torch.tensor([(self.code >> g) & 1 == 1 for g in range(self.num_gates)])

    def to_members(self) -> Members:
        """Return a one-member :class:`Members`."""
        return Members(self.bits.unsqueeze(0))

    def __repr__(self) -> str:
        kept = "".join(
            "1" if (self.code >> g) & 1 else "0" for g in range(self.num_gates)
        )
        return f"Member(gates={kept!r})"


class Members:
    """An indexable set of members of one graph.

    Args:
        bits: Boolean keep bits ``[M, num_gates]``.

    Example:
        >>> members = Members(torch.tensor([[True, False], [True, True]]))
        >>> len(members), members[1].code
        (2, 3)
    """

    def __init__(self, bits: Tensor) -> None:
        if not isinstance(bits, Tensor) or bits.dim() != 2:
            raise TypeError(
                f"members need a 2-d boolean tensor [members, gates], but got "
                f"{type(bits).__name__} with shape {getattr(bits, 'shape', None)}"
            )
        self.bits = bits.to(dtype=torch.bool, device="cpu")

    @classmethod
    def from_codes(cls, codes: Sequence[int], num_gates: int) -> Members:
        """Build members from integer codes (bit ``g`` is gate ``g``)."""
        rows = [[(int(c) >> g) & 1 == 1 for g in range(num_gates)] for c in codes]
        for c in codes:
            if int(c) < 0 or int(c) >> num_gates:
                raise MemberError(
                    f"member code {c} does not fit {num_gates} gates; codes range "
                    f"from 0 to {2**num_gates - 1}"
                )
        return cls(torch.tensor(rows, dtype=torch.bool).reshape(len(rows), num_gates))

    @classmethod
    def coerce(cls, members: Members | Member | Sequence[Member]) -> Members:
        """Return ``members`` as a :class:`Members`, accepting one member or a list."""
        if isinstance(members, Members):
            return members
        if isinstance(members, Member):
            return members.to_members()
        if isinstance(members, Sequence) and all(
            isinstance(m, Member) for m in members
        ):
            if not members:
                raise MemberError("no members given; pass at least one member")
            num_gates = {m.num_gates for m in members}
            if len(num_gates) > 1:
                raise MemberError(
                    f"members come from graphs with {sorted(num_gates)} gates"
                )
            return cls.from_codes([m.code for m in members], num_gates.pop())
        raise TypeError(
            f"expected Members, a Member or a list of Member, but got {type(members).__name__}"
        )

    @property
    def num_gates(self) -> int:
        """Number of edge gates per member."""
        return self.bits.shape[1]

    def codes(self) -> list[int]:
        """Return each member's integer code."""
        weights = [1 << g for g in range(self.num_gates)]
        return [
            sum(w for w, b in zip(weights, row, strict=True) if b)
            for row in self.bits.tolist()
        ]

    def __len__(self) -> int:
        return self.bits.shape[0]

    def __getitem__(
        self, index: int | slice | Tensor | Sequence[int]
    ) -> Member | Members:
        if isinstance(index, int):
            if not -len(self) <= index < len(self):
                raise IndexError(
                    f"member index {index} out of range for {len(self)} members"
                )
            row = self.bits[index].tolist()
            return Member(sum(1 << g for g, b in enumerate(row) if b), self.num_gates)
        return Members(self.bits[index].reshape(-1, self.num_gates))

    def __iter__(self) -> Iterator[Member]:
        for code in self.codes():
            yield Member(code, self.num_gates)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Members):
            return NotImplemented
        return self.bits.shape == other.bits.shape and bool(
            torch.equal(self.bits, other.bits)
        )

    __hash__ = None  # mutable container, like a tensor

    def cat(self, other: Members) -> Members:
        """Return the members of ``self`` followed by those of ``other``."""
        if other.num_gates != self.num_gates:
            raise MemberError(
                f"cannot concatenate members with {self.num_gates} and {other.num_gates} gates"
            )
        return Members(torch.cat([self.bits, other.bits]))

    def save(self, path: str | PathLike) -> None:
        """Save the members to a file readable by :meth:`load`."""
        torch.save({"version": _FORMAT_VERSION, "bits": self.bits}, path)

    @classmethod
    def load(cls, path: str | PathLike) -> Members:
        """Load members saved by :meth:`save` (with ``weights_only=True``)."""
        state = torch.load(path, weights_only=True)
        if not isinstance(state, dict) or state.get("version") != _FORMAT_VERSION:
            raise MemberError(
                f"{path} is not a layershare members file of format version "
                f"{_FORMAT_VERSION}"
            )
        return cls(state["bits"])

    def __repr__(self) -> str:
        return f"Members({len(self)} members, {self.num_gates} gates)"
