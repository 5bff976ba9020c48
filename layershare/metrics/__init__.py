"""Measures of implicit ensembles: accuracy, diversity, curves and lesions.

Every measure takes tensors, never models: member outputs as logits
``[members, samples, classes]`` (floating point) or predicted labels
``[members, samples]`` (integer), and labels ``[samples]``, such as the
outputs of :func:`layershare.evaluate`. Results are float64 tensors or
pandas DataFrames. A predicted label is the argmax over classes, and a tie
goes to the first maximal class, the rule ``torch.argmax`` documents.

Pairwise measures return the mean over the ``M * (M - 1) / 2`` pairs of
members, or the ``[M, M]`` matrix with ``matrix=True``.

Example:
    >>> import torch
    >>> import layershare as ls
    >>> predictions = torch.tensor([[0, 1, 0, 0], [0, 2, 0, 1]])
    >>> labels = torch.tensor([0, 1, 2, 0])
    >>> ls.metrics.disagreement(predictions, labels)
    tensor(0.5000, dtype=torch.float64)
"""

from layershare.metrics import probes
from layershare.metrics.accuracy import (
    accuracy,
    ensemble_probabilities,
    majority_vote,
)
from layershare.metrics.calibration import (
    CalibrationCounts,
    brier_score,
    expected_calibration_error,
    nll,
    reliability_table,
)
from layershare.metrics.cka import cka, cka_matrix, hsic
from layershare.metrics.curves import (
    curve_sizes,
    ensemble_curve,
    member_order,
)
from layershare.metrics.diversity import (
    entropy_measure,
    interrater_kappa,
    kw_variance,
    label_disagreement,
)
from layershare.metrics.lesion import column_table, lesion_table
from layershare.metrics.pairwise import (
    PairwiseCounts,
    correlation,
    disagreement,
    double_fault,
    pairwise_kappa,
    q_statistic,
)
from layershare.metrics.paths import (
    accuracy_by_length,
    length_distribution,
    path_gradient_table,
)
from layershare.metrics.probabilistic import (
    Decomposition,
    ambiguity_decomposition,
    js_diversity,
    kl_diversity,
)
from layershare.metrics.tying import (
    Similarity,
    batchnorm_shift,
    block_similarity,
    cosine_similarity,
    parameter_table,
    step_cka,
    step_ratio,
    steps_table,
)

__all__ = [
    "CalibrationCounts",
    "Decomposition",
    "PairwiseCounts",
    "Similarity",
    "accuracy",
    "accuracy_by_length",
    "ambiguity_decomposition",
    "batchnorm_shift",
    "block_similarity",
    "brier_score",
    "cka",
    "cka_matrix",
    "column_table",
    "correlation",
    "cosine_similarity",
    "curve_sizes",
    "disagreement",
    "double_fault",
    "ensemble_curve",
    "ensemble_probabilities",
    "entropy_measure",
    "expected_calibration_error",
    "hsic",
    "interrater_kappa",
    "js_diversity",
    "kl_diversity",
    "kw_variance",
    "label_disagreement",
    "length_distribution",
    "lesion_table",
    "majority_vote",
    "member_order",
    "nll",
    "pairwise_kappa",
    "parameter_table",
    "path_gradient_table",
    "probes",
    "q_statistic",
    "reliability_table",
    "step_cka",
    "step_ratio",
    "steps_table",
]
