import pytest
import torch

from layershare import metrics


def test_lesion_table_drop():
    predictions = torch.tensor([[0, 1, 1, 0], [1, 1, 1, 1]])
    labels = torch.tensor([0, 1, 1, 0])
    reference = torch.tensor([0, 1, 1, 1])
    table = metrics.lesion_table(
        predictions, labels, [(0,), [1, 2]], reference=reference
    )
    assert list(table.columns) == ["removed", "accuracy", "drop"]
    assert table["removed"].tolist() == [(0,), (1, 2)]
    assert table["accuracy"].tolist() == pytest.approx([1.0, 0.5])
    assert table["drop"].tolist() == pytest.approx([-0.25, 0.25])


def test_lesion_table_logits_no_reference():
    logits = torch.tensor([[[2.0, 0.0], [0.0, 1.0]]])
    table = metrics.lesion_table(logits, torch.tensor([0, 0]), [()])
    assert list(table.columns) == ["removed", "accuracy"]
    assert table["accuracy"][0] == pytest.approx(0.5)


def test_lesion_table_count_mismatch():
    with pytest.raises(ValueError, match="removed lists 1 lesions"):
        metrics.lesion_table(torch.zeros(2, 3, dtype=torch.long), [0, 0, 0], [(0,)])


def test_column_table_drop():
    predictions = torch.tensor([[0, 1, 0, 0], [0, 1, 1, 0], [1, 1, 1, 1]])
    labels = torch.tensor([0, 1, 1, 0])
    reference = torch.tensor([0, 1, 1, 1])
    table = metrics.column_table(predictions, labels, reference=reference)
    assert list(table.columns) == ["column", "accuracy", "drop"]
    assert table["column"].tolist() == [0, 1, 2]
    assert table["accuracy"].tolist() == pytest.approx([0.75, 1.0, 0.5])
    assert table["drop"].tolist() == pytest.approx([0.0, -0.25, 0.25])
