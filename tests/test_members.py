"""Members: the compact, immutable container of gate assignments."""

from __future__ import annotations

import pytest
import torch

import layershare as ls
from layershare.graph import Graph


def test_codes_roundtrip():
    members = ls.Members.from_codes([5, 0, 7, 2], 3)
    assert members.codes() == [5, 0, 7, 2]


def test_bits_layout():
    members = ls.Members.from_codes([0b011], 3)
    assert members.bits.tolist() == [[True, True, False]]


def test_many_gates():
    code = (1 << 69) | (1 << 3)
    members = ls.Members.from_codes([code], 70)
    assert members.codes() == [code]
    assert members[0].code == code


def test_code_too_large():
    with pytest.raises(ls.MemberError, match="does not fit 3 gates"):
        ls.Members.from_codes([8], 3)


def test_index_int():
    members = ls.Members.from_codes([1, 2, 3], 2)
    assert members[1] == ls.Member(2, 2)
    assert members[-1] == ls.Member(3, 2)


def test_index_out_of_range():
    with pytest.raises(IndexError, match="out of range for 3 members"):
        ls.Members.from_codes([1, 2, 3], 2)[3]


def test_index_slice_and_mask():
    members = ls.Members.from_codes([1, 2, 3, 0], 2)
    assert members[1:3].codes() == [2, 3]
    assert members[torch.tensor([True, False, False, True])].codes() == [1, 0]
    assert members[[3, 0]].codes() == [0, 1]


def test_iteration():
    members = ls.Members.from_codes([1, 2], 2, seeds=[10, 20])
    assert list(members) == [ls.Member(1, 2, 10), ls.Member(2, 2, 20)]


def test_hash_by_content():
    a = ls.Members.from_codes([1, 2], 2)
    b = ls.Members.from_codes([1, 2], 2)
    assert a == b
    assert hash(a) == hash(b)
    assert len({a, b}) == 1


def test_hash_sees_seeds():
    a = ls.Members.from_codes([1, 2], 2, seeds=[1, 2])
    b = ls.Members.from_codes([1, 2], 2, seeds=[1, 3])
    assert a != b


def test_member_hashable():
    assert len({ls.Member(3, 2), ls.Member(3, 2), ls.Member(3, 2, 5)}) == 2


def test_bits_copy_does_not_mutate():
    members = ls.Members.from_codes([0], 2)
    bits = members.bits
    bits[0, 0] = True
    assert members.codes() == [0]


def test_seeds_copy_does_not_mutate():
    members = ls.Members.from_codes([0], 2, seeds=[4])
    seeds = members.seeds
    seeds[0] = 9
    assert members.seeds.tolist() == [4]


def test_rejects_negative_seed():
    with pytest.raises(ValueError, match="non-negative"):
        ls.Members(torch.ones(1, 2, dtype=torch.bool), torch.tensor([-1]))


def test_rejects_wrong_seed_count():
    with pytest.raises(TypeError, match=r"shape \[2\]"):
        ls.Members(torch.ones(2, 2, dtype=torch.bool), torch.tensor([1]))


def test_save_load(tmp_path):
    members = ls.Members.from_codes([3, 1, 2], 2, seeds=[5, 6, 2**62])
    path = tmp_path / "members.pt"
    members.save(path)
    assert ls.Members.load(path) == members


def test_save_load_without_seeds(tmp_path):
    members = ls.Sampler(Graph.chain(9), ls.StochasticDepth()).sample(100, seed=0)
    path = tmp_path / "members.pt"
    members.save(path)
    loaded = ls.Members.load(path)
    assert loaded == members
    assert loaded.seeds is None


def test_load_version_one(tmp_path):
    path = tmp_path / "old.pt"
    torch.save({"version": 1, "bits": torch.tensor([[True, False]])}, path)
    assert ls.Members.load(path).codes() == [1]


def test_load_rejects_other_file(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, path)
    with pytest.raises(ls.MemberError, match="not a layershare members file"):
        ls.Members.load(path)


def test_cat():
    a = ls.Members.from_codes([1], 2, seeds=[1])
    b = ls.Members.from_codes([2], 2, seeds=[2])
    joined = a.cat(b)
    assert joined.codes() == [1, 2]
    assert joined.seeds.tolist() == [1, 2]


def test_cat_rejects_mixed_seeds():
    with pytest.raises(ls.MemberError, match="seeds"):
        ls.Members.from_codes([1], 2, seeds=[1]).cat(ls.Members.from_codes([2], 2))


def test_coerce_list_keeps_seeds():
    members = ls.Members.coerce([ls.Member(1, 2, 7), ls.Member(3, 2, 8)])
    assert members.codes() == [1, 3]
    assert members.seeds.tolist() == [7, 8]


def test_coerce_rejects_mixed_graphs():
    with pytest.raises(ls.MemberError, match="graphs"):
        ls.Members.coerce([ls.Member(1, 2), ls.Member(1, 3)])


def test_member_to_members():
    assert ls.Member(5, 3, 11).to_members() == ls.Members.from_codes([5], 3, [11])


def test_member_repr():
    assert repr(ls.Member(1, 3)) == "Member(gates='100')"


def test_empty():
    members = ls.Members(torch.zeros(0, 4, dtype=torch.bool))
    assert len(members) == 0
    assert members.codes() == []


def test_no_gates():
    members = ls.Members(torch.zeros(2, 0, dtype=torch.bool))
    assert members.codes() == [0, 0]


def test_model_accepts_member_and_members():
    model = ls.models.ResidualMLP(in_features=4, width=4, blocks=2)
    model.eval()
    members = ls.Sampler(model, ls.StochasticDepth()).enumerate()
    x = torch.randn(3, 4)
    out = ls.evaluate(model, members, x)
    for i, member in enumerate(members):
        torch.testing.assert_close(out[i], model(x, member=member))
