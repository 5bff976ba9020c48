"""Members: gate assignments that pick one deterministic subnetwork each.

A :class:`Members` container stores the edge-gate keep bits of ``M`` members
packed eight to a byte, gate ``g`` having weight ``2**g`` in a member's
integer :attr:`Member.code`. Members drawn or enumerated by a
:class:`~layershare.Sampler` are in canonical form: a gate on an edge that no
active input-to-output path uses is stored as 0, so two assignments that
activate the same subgraph are stored identically.

Schemes with unit gates (swapout) give each member a 63-bit seed as well. The
member's masks are a pure function of that seed, the join and the unit count
(see :func:`layershare.unit_gates.member_masks`), so they are the same on every
device and for every batch size, and a member stays a few bytes.

Containers are immutable: :attr:`Members.bits` returns a new tensor on each
access, so members can be hashed by content and used as dictionary keys.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from os import PathLike

import numpy as np
import torch
from torch import Tensor

from layershare.errors import MemberError

__all__ = ["Member", "Members"]

_FORMAT_VERSION = 2


@dataclass(frozen=True)
class Member:
    """One gate assignment, hashable and comparable.

    Attributes:
        code: Integer with bit ``g`` set when gate ``g`` is kept.
        num_gates: Number of edge gates of the graph it belongs to.
        seed: Seed of the member's unit-gate masks, or ``None`` for schemes
            without unit gates.
    """

    code: int
    num_gates: int
    seed: int | None = None

    @property
    def bits(self) -> Tensor:
        """Keep bits as a boolean tensor ``[num_gates]``."""
        return torch.tensor([(self.code >> g) & 1 == 1 for g in range(self.num_gates)])

    def to_members(self) -> Members:
        """Return a one-member :class:`Members`."""
        seeds = None if self.seed is None else torch.tensor([self.seed])
        return Members(self.bits.reshape(1, self.num_gates), seeds)

    def __repr__(self) -> str:
        kept = "".join(
            "1" if (self.code >> g) & 1 else "0" for g in range(self.num_gates)
        )
        seed = "" if self.seed is None else f", seed={self.seed}"
        return f"Member(gates={kept!r}{seed})"


class Members:
    """An immutable, indexable, hashable set of members of one graph.

    Args:
        bits: Keep bits ``[M, num_gates]`` (a tensor or a numpy array; any
            dtype, nonzero meaning kept).
        seeds: Unit-gate seeds ``[M]``, integers in ``[0, 2**63)``, or ``None``
            when the scheme has no unit gates (default: ``None``).

    Example:
        >>> members = Members(torch.tensor([[True, False], [True, True]]))
        >>> len(members), members[1].code
        (2, 3)
    """

    def __init__(
        self, bits: Tensor | np.ndarray, seeds: Tensor | np.ndarray | None = None
    ) -> None:
        if isinstance(bits, Tensor):
            bits = bits.detach().cpu().numpy()
        if not isinstance(bits, np.ndarray) or bits.ndim != 2:
            raise TypeError(
                f"members need a 2-d boolean tensor [members, gates], but got "
                f"{type(bits).__name__} with shape {getattr(bits, 'shape', None)}"
            )
        self._size, self._num_gates = bits.shape
        packed = np.packbits(bits.astype(bool), axis=1, bitorder="little")
        packed.flags.writeable = False
        self._packed = packed
        self._seeds = None if seeds is None else self._check_seeds(seeds)
        self._hash: int | None = None

    def _check_seeds(self, seeds: Tensor | np.ndarray) -> np.ndarray:
        if isinstance(seeds, Tensor):
            seeds = seeds.detach().cpu().numpy()
        seeds = np.asarray(seeds)
        if seeds.shape != (self._size,) or not np.issubdtype(seeds.dtype, np.integer):
            raise TypeError(
                f"seeds must be integers of shape [{self._size}], one per member, "
                f"but got dtype {seeds.dtype} and shape {list(seeds.shape)}"
            )
        if (seeds < 0).any():
            raise ValueError(f"seeds must be non-negative, but got {seeds.min()}")
        seeds = seeds.astype(np.int64)
        seeds.flags.writeable = False
        return seeds

    # ------------------------------------------------------------ build

    @classmethod
    def from_codes(
        cls,
        codes: Sequence[int],
        num_gates: int,
        seeds: Sequence[int] | None = None,
    ) -> Members:
        """Build members from integer codes (bit ``g`` is gate ``g``)."""
        codes = [int(c) for c in codes]
        for c in codes:
            if c < 0 or c >> num_gates:
                raise MemberError(
                    f"member code {c} does not fit {num_gates} gates; codes range "
                    f"from 0 to {2**num_gates - 1}"
                )
        bits = np.zeros((len(codes), num_gates), dtype=bool)
        if num_gates <= 63:
            array = np.asarray(codes, dtype=np.int64).reshape(-1, 1)
            bits[:] = (array >> np.arange(num_gates, dtype=np.int64)) & 1
        else:
            for row, c in enumerate(codes):
                bits[row] = [(c >> g) & 1 for g in range(num_gates)]
        return cls(bits, None if seeds is None else np.asarray(seeds, dtype=np.int64))

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
            with_seed = {m.seed is not None for m in members}
            if len(with_seed) > 1:
                raise MemberError(
                    "some members have unit-gate seeds and some do not; use "
                    "members drawn by one sampler"
                )
            seeds = [m.seed for m in members] if with_seed.pop() else None
            return cls.from_codes([m.code for m in members], num_gates.pop(), seeds)
        raise TypeError(
            f"expected Members, a Member or a list of Member, but got "
            f"{type(members).__name__}"
        )

    # ------------------------------------------------------------ access

    @property
    def bits(self) -> Tensor:
        """Keep bits ``[M, num_gates]``, a new boolean tensor on each access."""
        return torch.from_numpy(self.numpy())

    def numpy(self) -> np.ndarray:
        """Return the keep bits as a new boolean numpy array ``[M, num_gates]``."""
        bits = np.unpackbits(
            self._packed, axis=1, count=self._num_gates, bitorder="little"
        )
        return bits.astype(bool).reshape(self._size, self._num_gates)

    @property
    def seeds(self) -> Tensor | None:
        """Unit-gate seeds ``[M]`` (int64), a new tensor, or ``None``."""
        return None if self._seeds is None else torch.from_numpy(self._seeds.copy())

    @property
    def num_gates(self) -> int:
        """Number of edge gates per member."""
        return self._num_gates

    def codes(self) -> list[int]:
        """Return each member's integer code."""
        bits = self.numpy()
        if self._num_gates <= 63:
            weights = np.int64(1) << np.arange(self._num_gates, dtype=np.int64)
            return (bits.astype(np.int64) @ weights).tolist()
        return [sum(1 << g for g in np.flatnonzero(row).tolist()) for row in bits]

    def __len__(self) -> int:
        return self._size

    def __getitem__(
        self, index: int | slice | Tensor | np.ndarray | Sequence[int]
    ) -> Member | Members:
        if isinstance(index, int | np.integer):
            index = int(index)
            if not -self._size <= index < self._size:
                raise IndexError(
                    f"member index {index} out of range for {self._size} members"
                )
            row = np.unpackbits(
                self._packed[index], count=self._num_gates, bitorder="little"
            )
            code = sum(1 << g for g in np.flatnonzero(row).tolist())
            seed = None if self._seeds is None else int(self._seeds[index])
            return Member(code, self._num_gates, seed)
        if isinstance(index, Tensor):
            index = index.cpu().numpy()
        bits = self.numpy()[index].reshape(-1, self._num_gates)
        seeds = None if self._seeds is None else self._seeds[index].reshape(-1)
        return Members(bits, seeds)

    def __iter__(self) -> Iterator[Member]:
        seeds = [None] * self._size if self._seeds is None else self._seeds.tolist()
        for code, seed in zip(self.codes(), seeds, strict=True):
            yield Member(code, self._num_gates, seed)

    # ---------------------------------------------------------- identity

    def _key(self) -> tuple:
        seeds = None if self._seeds is None else self._seeds.tobytes()
        return (self._size, self._num_gates, self._packed.tobytes(), seeds)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Members):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(self._key())
        return self._hash

    def cat(self, other: Members) -> Members:
        """Return the members of ``self`` followed by those of ``other``."""
        if other.num_gates != self.num_gates:
            raise MemberError(
                f"cannot concatenate members with {self.num_gates} and "
                f"{other.num_gates} gates"
            )
        if (self._seeds is None) != (other._seeds is None):
            raise MemberError(
                "cannot concatenate members with and without unit-gate seeds"
            )
        seeds = None
        if self._seeds is not None:
            seeds = np.concatenate([self._seeds, other._seeds])
        return Members(np.concatenate([self.numpy(), other.numpy()]), seeds)

    # ------------------------------------------------------------- files

    def save(self, path: str | PathLike) -> None:
        """Save the members to a file readable by :meth:`load`."""
        state = {
            "version": _FORMAT_VERSION,
            "num_gates": self._num_gates,
            "packed": torch.from_numpy(self._packed.copy()),
            "seeds": self.seeds,
        }
        torch.save(state, path)

    @classmethod
    def load(cls, path: str | PathLike) -> Members:
        """Load members saved by :meth:`save` (with ``weights_only=True``).

        Files of format version 1 (unpacked ``bits`` only) are read too.
        """
        state = torch.load(path, weights_only=True)
        version = state.get("version") if isinstance(state, dict) else None
        if version == 1:
            return cls(state["bits"])
        if version != _FORMAT_VERSION:
            raise MemberError(
                f"{path} is not a layershare members file of format version 1 or "
                f"{_FORMAT_VERSION}"
            )
        packed = state["packed"].numpy()
        bits = np.unpackbits(
            packed, axis=1, count=state["num_gates"], bitorder="little"
        ).reshape(packed.shape[0], state["num_gates"])
        return cls(bits, state["seeds"])

    def __repr__(self) -> str:
        seeds = "" if self._seeds is None else ", with unit-gate seeds"
        return f"Members({self._size} members, {self._num_gates} gates{seeds})"
