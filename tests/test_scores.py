"""Classification scores from summed confusion counts, against hand-computed values."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlm.tasks import scores


def confusion_of(labels, predictions, num_classes, weights=None):
  labels, predictions = jnp.asarray(labels), jnp.asarray(predictions)
  weights = jnp.ones(labels.shape) if weights is None else jnp.asarray(weights)
  return np.asarray(scores.confusion_counts(predictions, labels, weights, num_classes))


# Binary: gold 0 x4 predicted 0,0,0,1 (TN 3, FP 1); gold 1 x8 predicted 0,0 then 1 x6 (FN 2, TP 6).
BINARY_LABELS = [0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1]
BINARY_PREDICTIONS = [0, 0, 0, 1, 0, 0, 1, 1, 1, 1, 1, 1]

# Three classes; rows gold, columns predicted:
#   gold 0: 2 1 0      gold counts t = (3, 2, 4), predicted counts p = (3, 2, 4), correct 6 of 9.
#   gold 1: 0 1 1
#   gold 2: 1 0 3
THREE_LABELS = [0, 0, 0, 1, 1, 2, 2, 2, 2]
THREE_PREDICTIONS = [0, 0, 1, 1, 2, 2, 2, 2, 0]


def test_confusion_counts_rows_gold_columns_predicted():
  np.testing.assert_array_equal(confusion_of(BINARY_LABELS, BINARY_PREDICTIONS, 2), [[3, 1], [2, 6]])
  np.testing.assert_array_equal(confusion_of(THREE_LABELS, THREE_PREDICTIONS, 3), [[2, 1, 0], [0, 1, 1], [1, 0, 3]])


def test_weight_zero_rows_count_nothing_under_jit():
  # [2, 6]: a tagging-shaped batch whose second half is padding with wrong predictions
  # and out-of-range labels (-1, 5); weight 0 must remove them entirely.
  labels = jnp.array([[0, 1, 1, -1, 5, 1], [2, 2, 0, 0, 1, 2]])
  predictions = jnp.array([[0, 1, 2, 0, 0, 0], [2, 0, 0, 1, 1, 2]])
  weights = jnp.array([[1, 1, 1, 0, 0, 0], [1, 1, 1, 0, 0, 0]], jnp.float32)
  confusion = jax.jit(scores.confusion_counts, static_argnums=3)(predictions, labels, weights, 3)
  assert confusion.dtype == jnp.float32 and confusion.shape == (3, 3)
  # Counted pairs (gold, predicted): (0,0) (1,1) (1,2) (2,2) (2,0) (0,0).
  np.testing.assert_array_equal(confusion, [[2, 0, 0], [0, 1, 1], [1, 0, 1]])
  # Summing per-batch matrices equals one matrix over the unpadded examples.
  halves = [scores.confusion_counts(predictions[row], labels[row], weights[row], 3) for row in range(2)]
  np.testing.assert_array_equal(halves[0] + halves[1], confusion)


def test_binary_scores_by_hand():
  confusion = confusion_of(BINARY_LABELS, BINARY_PREDICTIONS, 2)
  # (TP TN - FP FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)) = (18 - 2) / sqrt(7 * 8 * 4 * 5)
  assert scores.matthews_correlation(confusion) == pytest.approx(16 / math.sqrt(1120))
  assert scores.matthews_correlation(confusion) == pytest.approx(0.478091, abs=1e-6)
  assert scores.accuracy(confusion) == pytest.approx(9 / 12)
  # F1 = 2TP / (2TP + FP + FN): class 1: 12 / 15; class 0 (TP 3, FP 2, FN 1): 6 / 9.
  np.testing.assert_allclose(scores.per_class_f1(confusion), [6 / 9, 12 / 15])
  assert scores.macro_f1(confusion) == pytest.approx(11 / 15)


def test_all_one_class_prediction_has_zero_correlation():
  confusion = confusion_of([0, 1, 1, 0, 1], [1, 1, 1, 1, 1], 2)  # [[0, 2], [0, 3]]
  assert scores.matthews_correlation(confusion) == 0.0
  assert scores.accuracy(confusion) == pytest.approx(3 / 5)
  # Class 0 never predicted: F1 0 / 2 = 0; class 1: 6 / (6 + 2 + 0).
  np.testing.assert_allclose(scores.per_class_f1(confusion), [0.0, 0.75])
  assert scores.matthews_correlation(confusion_of([1, 1, 1], [0, 1, 0], 2)) == 0.0  # one gold class


def test_perfect_and_inverted_predictions():
  assert scores.matthews_correlation(confusion_of([0, 1, 1, 0], [0, 1, 1, 0], 2)) == pytest.approx(1.0)
  assert scores.matthews_correlation(confusion_of([0, 1, 1, 0], [1, 0, 0, 1], 2)) == pytest.approx(-1.0)
  perfect = confusion_of([0, 1, 2, 2], [0, 1, 2, 2], 3)
  assert (scores.matthews_correlation(perfect), scores.accuracy(perfect), scores.macro_f1(perfect)) == (
      pytest.approx(1.0), 1.0, pytest.approx(1.0))


def test_three_class_scores_by_hand():
  confusion = confusion_of(THREE_LABELS, THREE_PREDICTIONS, 3)
  # R_K = (c s - sum p_k t_k) / sqrt((s^2 - sum p_k^2)(s^2 - sum t_k^2))
  #     = (6 * 9 - (9 + 4 + 16)) / sqrt((81 - 29)(81 - 29)) = 25 / 52
  assert scores.matthews_correlation(confusion) == pytest.approx(25 / 52)
  assert scores.accuracy(confusion) == pytest.approx(6 / 9)
  # class 0: TP 2, FP 1, FN 1 -> 4/6; class 1: TP 1, FP 1, FN 1 -> 2/4; class 2: TP 3, FP 1, FN 1 -> 6/8.
  np.testing.assert_allclose(scores.per_class_f1(confusion), [2 / 3, 1 / 2, 3 / 4])
  assert scores.macro_f1(confusion) == pytest.approx(23 / 36)  # (8 + 6 + 9) / 12 / 3


def test_class_absent_from_gold_and_predictions_counts_zero_in_macro_f1():
  confusion = confusion_of(THREE_LABELS, THREE_PREDICTIONS, 4)  # class 3: a training label this split lacks
  np.testing.assert_allclose(scores.per_class_f1(confusion), [2 / 3, 1 / 2, 3 / 4, 0.0])
  assert scores.macro_f1(confusion) == pytest.approx(23 / 48)  # (23 / 12) / 4: the empty class is in the mean
  assert scores.matthews_correlation(confusion) == pytest.approx(25 / 52)  # an empty class changes no sum
  assert scores.accuracy(confusion) == pytest.approx(6 / 9)


def test_empty_and_malformed_matrices():
  empty = np.zeros((3, 3))
  assert (scores.accuracy(empty), scores.matthews_correlation(empty), scores.macro_f1(empty)) == (0.0, 0.0, 0.0)
  with pytest.raises(ValueError, match=r"\[num_classes, num_classes\]"):
    scores.accuracy(np.zeros((2, 3)))
