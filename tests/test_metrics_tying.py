import math

import pytest
import torch

from layershare import metrics


def test_step_ratio_hand_example():
    # Step 0: |(3, 4)| / |(6, 8)| = 0.5 and |(0, 1)| / |(0, 4)| = 0.25.
    updates = torch.tensor([[[3.0, 4.0], [0.0, 1.0]]])
    states = torch.tensor([[[6.0, 8.0], [0.0, 4.0]]])
    result = metrics.step_ratio(updates, states)
    assert result.tolist() == pytest.approx([0.375])


def test_step_ratio_zero_state():
    states = torch.tensor([[[1.0]], [[0.0]]])
    with pytest.raises(ValueError, match="sample 0 at step 1 has norm 0"):
        metrics.step_ratio(torch.ones(2, 1, 1), states)


def test_step_cka_scaled_states():
    generator = torch.Generator().manual_seed(0)
    h = torch.randn(8, 3, generator=generator, dtype=torch.float64)
    other = torch.randn(8, 3, generator=generator, dtype=torch.float64)
    result = metrics.step_cka([h, 2 * h, other])
    assert result[0].item() == pytest.approx(1.0)
    assert result[1].item() == pytest.approx(metrics.cka(h, other).item())


def test_steps_table_relative():
    predictions = torch.tensor([[0, 0], [0, 1], [1, 1]])
    table = metrics.steps_table(
        predictions, torch.tensor([0, 1]), [2, 4, 8], trained_steps=4
    )
    assert table["steps"].tolist() == [2, 4, 8]
    assert table["accuracy"].tolist() == pytest.approx([0.5, 1.0, 0.5])
    assert table["relative"].tolist() == [-2, 0, 4]


def test_cosine_hand_example():
    # Sample 0: parallel (1); sample 1: orthogonal (0).
    x = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    y = torch.tensor([[2.0, 0.0], [0.0, 3.0]])
    assert metrics.cosine_similarity(x, y).item() == pytest.approx(0.5)


def test_block_similarity_matrices():
    generator = torch.Generator().manual_seed(1)
    a = torch.randn(10, 4, generator=generator, dtype=torch.float64)
    b = torch.randn(10, 4, generator=generator, dtype=torch.float64)
    result = metrics.block_similarity([a, -a, b])
    assert result.cka[0, 1].item() == pytest.approx(1.0)
    assert result.cosine[0, 1].item() == pytest.approx(-1.0)
    assert result.cka[0, 2].item() == pytest.approx(metrics.cka(a, b).item())
    assert result.cosine[2, 0].item() == pytest.approx(
        torch.nn.functional.cosine_similarity(a, b).mean().item()
    )


def test_parameter_table_sorted():
    table = metrics.parameter_table(
        {"untied": 900, "tied": 300}, {"untied": 0.95, "tied": 0.93}
    )
    assert table["model"].tolist() == ["tied", "untied"]
    assert table["accuracy"].tolist() == pytest.approx([0.93, 0.95])


def test_parameter_table_names_differ():
    with pytest.raises(ValueError, match="same models"):
        metrics.parameter_table({"a": 1}, {"b": 0.5})


def test_batchnorm_shift_hand_example():
    # Channel 0: |1 - 0| / 1 = 1; channel 1: |2 - 2| / 2 = 0. Variance ratios
    # 4 and 4: |log 4|.
    table = metrics.batchnorm_shift(
        torch.tensor([[1.0, 2.0]]),
        torch.tensor([[4.0, 16.0]]),
        torch.tensor([0.0, 2.0]),
        torch.tensor([1.0, 4.0]),
    )
    assert table["mean_shift"].tolist() == pytest.approx([0.5])
    assert table["log_var_ratio"].tolist() == pytest.approx([math.log(4)])
