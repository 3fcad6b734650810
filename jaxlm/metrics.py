"""Metrics kept as sums plus counts and divided only when reported, and read back from metrics.jsonl."""

import json
import math
import os
from typing import Mapping

from jaxlm import errors

# A record's clock readings (the loop's): they differ between two runs of the same steps.
CLOCK_KEYS = ("training_seconds", "cpu_seconds")


def safe_count(sums: Mapping[str, float], key: str = "count") -> float:
  """sums[key], kept above 0 so that an empty evaluation divides to 0, not NaN."""
  return max(sums[key], 1e-9)


def loss_summary(sums: Mapping[str, float], count_name: str) -> dict:
  """{"loss": the mean loss, count_name: the count}: how every task's summary begins."""
  return {"loss": sums["loss_sum"] / safe_count(sums), count_name: sums["count"]}


def summarise(sums: Mapping[str, float]) -> dict:
  """Turns loss_sum/count sums into mean loss and perplexity, plus accuracy and
  accuracy_top5 where correct / correct_top5 are present (evaluation of every head, and
  training of a softmax head; embedding losses report none while training)."""
  count = safe_count(sums)
  loss = sums["loss_sum"] / count
  summary = {"loss": loss, "perplexity": math.exp(min(loss, 700.0)), "tokens": sums["count"]}
  if "correct" in sums:
    summary["accuracy"] = sums["correct"] / count
  if "correct_top5" in sums:
    summary["accuracy_top5"] = sums["correct_top5"] / count
  return summary


def read_records(metrics_path: str) -> list[dict]:
  """metrics.jsonl's records, ordered by step (read_metrics without the clock restarts)."""
  return read_metrics(metrics_path)[0]


def read_metrics(metrics_path: str) -> tuple[list[dict], list[int]]:
  """(records ordered by step, steps after which the training clock restarted).

  A record of a (kind, step) written again after a resume replaces the earlier one.
  `training_seconds` is made continuous over restarts: the loop counts it per process,
  from 0 again after a resume, so where it falls the earlier total is added to the rest
  (a restart whose first log comes later than the earlier total cannot be seen).
  """
  if not os.path.exists(metrics_path):
    raise errors.MissingFileError(f"{metrics_path} does not exist: give a workdir that has been trained "
                                  f"(it writes metrics.jsonl)")
  records, restarts, offset, last = {}, [], 0.0, None  # last: (step, seconds) as written
  with open(metrics_path, encoding="utf-8") as handle:
    for line_number, line in enumerate(handle, 1):
      if not line.strip():
        continue
      try:
        record = json.loads(line)
      except json.JSONDecodeError as error:
        raise errors.DataError(f"{metrics_path}:{line_number} is not a JSON line ({error})") from error
      if not isinstance(record, dict) or "step" not in record or "kind" not in record:
        raise errors.DataError(f"{metrics_path}:{line_number} is not a jaxlm metrics record (no step or kind)")
      seconds = record.get("training_seconds")
      if isinstance(seconds, (int, float)):
        if last is not None and seconds < last[1]:  # a new process: its clock started at 0
          offset += last[1]
          restarts.append(last[0])
        last = (record["step"], seconds)
        record["training_seconds"] = seconds + offset
      records.pop((record["kind"], record["step"]), None)  # re-inserted last: file order kept
      records[(record["kind"], record["step"])] = record
  return sorted(records.values(), key=lambda record: record["step"]), restarts
