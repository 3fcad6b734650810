"""Metrics kept as sums plus counts and divided only when reported."""

import math
from typing import Mapping

import numpy as np


def add(totals: Mapping[str, float] | None, update: Mapping[str, float]) -> dict:
  """Adds two dicts of sums key by key (totals may be None)."""
  update = {key: float(np.asarray(value)) for key, value in update.items()}
  if not totals:
    return update
  return {key: totals.get(key, 0.0) + value for key, value in update.items()}


def summarise(sums: Mapping[str, float]) -> dict:
  """Turns loss_sum/count sums into mean loss and perplexity, plus accuracy and
  accuracy_top5 where correct / correct_top5 are present (evaluation of every head, and
  training of a softmax head; embedding losses report none while training)."""
  count = max(sums["count"], 1e-9)
  loss = sums["loss_sum"] / count
  summary = {"loss": loss, "perplexity": math.exp(min(loss, 700.0)), "tokens": sums["count"]}
  if "correct" in sums:
    summary["accuracy"] = sums["correct"] / count
  if "correct_top5" in sums:
    summary["accuracy_top5"] = sums["correct_top5"] / count
  return summary
