"""The grid's statistics over seeds: a row's mean with its 95% interval, and Welch's t-test between rows.

A row's seeds are treated as independent draws of the cell's score. The interval is Student's t
interval for the mean (mean ± t(0.975, n - 1) * sd / sqrt(n)); the comparison of two rows is
Welch's unequal-variance t-test (scipy.stats.ttest_ind, equal_var=False), two-sided. Neither
corrects for the number of comparisons a table makes: of 20 true nulls, one is expected at
p < 0.05. With 3 seeds the test has little power: a large p says "not separable at this
budget", never "equal".
"""

import math
import warnings

import numpy as np
from scipy import stats

LEVEL = 0.95  # the intervals' coverage
ALPHA = 0.05  # a difference with p below it is called separable in the table's words


def mean_and_std(values) -> tuple[float, float]:
  """(mean, sample standard deviation, n - 1 in the denominator); the deviation of one value is nan."""
  values = np.asarray([float(value) for value in values], np.float64)
  return float(values.mean()), (float(values.std(ddof=1)) if values.size > 1 else math.nan)


def interval(values) -> tuple[float, float]:
  """(low, high): Student's t interval for the mean at LEVEL; (nan, nan) for fewer than 2 values."""
  mean, std = mean_and_std(values)
  if math.isnan(std):
    return math.nan, math.nan
  half = float(stats.t.ppf(0.5 + LEVEL / 2, len(values) - 1)) * std / math.sqrt(len(values))
  return mean - half, mean + half


def welch(first, second) -> float:
  """Two-sided p-value of Welch's t-test that the two rows' means are equal; nan for fewer than 2
  values in either. Two rows whose seeds all scored alike (sd 0 in both, a run stuck at the
  majority class, say) have no spread to test against: p is 1 for equal means, 0 for different ones."""
  first, second = np.asarray(first, np.float64), np.asarray(second, np.float64)
  if first.size < 2 or second.size < 2:
    return math.nan
  if first.std() == 0 and second.std() == 0:
    return 1.0 if first.mean() == second.mean() else 0.0
  with warnings.catch_warnings():
    # scipy warns of "catastrophic cancellation" for a row whose seeds scored exactly alike; its
    # variance is then exactly 0, which Welch's statistic takes as it is.
    warnings.filterwarnings("ignore", "Precision loss occurred", RuntimeWarning)
    return float(stats.ttest_ind(first, second, equal_var=False).pvalue)


def p_text(p: float) -> str:
  """"p 0.031", "p < 0.001", or "p -" for an untested difference: how tables and readings print a p-value."""
  return "p -" if math.isnan(p) else ("p < 0.001" if p < 0.001 else f"p {p:.3f}")
