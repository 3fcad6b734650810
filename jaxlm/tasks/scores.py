"""Classification and tagging scores computed from a confusion matrix of summed counts.

Like every jaxlm metric, these are kept as sums and divided only when reported: each
evaluation step returns `confusion_counts` for its batch (padding weighted 0), the
matrices are added across batches, devices and hosts, and accuracy, Matthews
correlation and F1 come from the total. So the scores are exact whatever the batch
size, padding or device count, which averaging per-batch scores would not be.

A confusion matrix is [num_classes, num_classes]: row = gold class, column =
predicted class, entry = (weighted) count. Only `confusion_counts` is jax; the
scores are numpy on the accumulated matrix, in float64.
"""

import jax
import jax.numpy as jnp
import numpy as np


def confusion_counts(predictions, labels, weights, num_classes: int):
  """Weighted counts of (gold, predicted) pairs; works under jit.

  Args:
    predictions: [...] int class ids (e.g. [batch] for sentences, [batch, length] for tags).
    labels: [...] int gold class ids, same shape; any id outside 0..num_classes-1
      (e.g. -1 on padding) counts nowhere.
    weights: [...] float, same shape; 0 on padding, so padded rows count nothing.
    num_classes: K.

  Returns:
    [K, K] float32; entry [g, p] sums the weights of positions with gold g, predicted p.
  """
  gold = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32) * jnp.asarray(weights, jnp.float32)[..., None]
  predicted = jax.nn.one_hot(predictions, num_classes, dtype=jnp.float32)  # [..., K]
  # HIGHEST: on TPU/GPU a default float32 matmul may round its inputs to bfloat16,
  # which would round non-integer weights; counts must be exact.
  return jnp.einsum("...g,...p->gp", gold, predicted, precision=jax.lax.Precision.HIGHEST)


def _as_matrix(confusion) -> np.ndarray:
  confusion = np.asarray(confusion, np.float64)
  if confusion.ndim != 2 or confusion.shape[0] != confusion.shape[1]:
    raise ValueError(f"a confusion matrix is [num_classes, num_classes]; got shape {confusion.shape}")
  return confusion


def accuracy(confusion) -> float:
  """Correct / total (0 for an empty matrix)."""
  confusion = _as_matrix(confusion)
  total = confusion.sum()
  return float(np.trace(confusion) / total) if total > 0 else 0.0


def matthews_correlation(confusion) -> float:
  """Matthews correlation coefficient, multi-class (Gorodkin's R_K, as sklearn computes it).

  With t_k = gold count of class k (row sums), p_k = predicted count (column sums),
  c = correct, s = total:
      MCC = (c s - sum_k p_k t_k) / sqrt((s^2 - sum_k p_k^2) (s^2 - sum_k t_k^2)).
  For two classes this is the binary (TP TN - FP FN) / sqrt(...). In [-1, 1]; 0 when
  the denominator is 0 (every prediction, or every gold label, in one class), as
  in sklearn.
  """
  confusion = _as_matrix(confusion)
  gold_counts = confusion.sum(axis=1)  # [K] t_k
  predicted_counts = confusion.sum(axis=0)  # [K] p_k
  correct, total = np.trace(confusion), confusion.sum()
  covariance = correct * total - predicted_counts @ gold_counts
  predicted_variance = total ** 2 - predicted_counts @ predicted_counts
  gold_variance = total ** 2 - gold_counts @ gold_counts
  denominator = predicted_variance * gold_variance
  return float(covariance / np.sqrt(denominator)) if denominator > 0 else 0.0


def per_class_f1(confusion) -> np.ndarray:
  """[K] F1 of each class, 2 TP / (2 TP + FP + FN).

  A class with no gold and no predicted examples (0 / 0) scores 0, sklearn's
  `zero_division=0` convention.
  """
  confusion = _as_matrix(confusion)
  true_positives = np.diag(confusion)  # [K]
  false_positives = confusion.sum(axis=0) - true_positives  # predicted k, gold another class
  false_negatives = confusion.sum(axis=1) - true_positives  # gold k, predicted another class
  denominator = 2 * true_positives + false_positives + false_negatives
  return np.divide(2 * true_positives, denominator, out=np.zeros_like(true_positives), where=denominator > 0)


def macro_f1(confusion) -> float:
  """Unweighted mean of per_class_f1 over all K classes (0 for K = 0).

  Every class of the matrix is in the mean, including one absent from both gold
  and predictions, which scores 0: sklearn's f1_score(average="macro",
  labels=<all training labels>, zero_division=0), the call this matches, since
  the matrix has a row for every training label. So a split missing a training
  class scores lower than sklearn's default call (labels = those present) would.
  """
  scores = per_class_f1(confusion)
  return float(scores.mean()) if scores.size else 0.0
