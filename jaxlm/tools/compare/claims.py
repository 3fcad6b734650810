"""The grid's reading of the Russian pre-training report's claims, each with the test behind its word.

Every verdict compares two rows of one task by Welch's t-test over their seeds
(jaxlm.tools.compare.statistics.welch, two-sided, ALPHA = 0.05):
  holds       the rows differ as the claim says, at p < ALPHA
  fails       they differ the other way, at p < ALPHA
  undecided   p >= ALPHA: not separable from seed noise at this budget (never "equal")
A claim about a family ("no transformer beat FastText") compares that family's best row by dev
mean, which favours the family: picking the best of several rows before testing makes a
difference look larger than it is, so "fails" against a family is the weaker verdict of the two.
No correction for the number of claims tested.
"""

import math

from jaxlm.tools.compare import grid as grid_lib
from jaxlm.tools.compare import statistics

BASELINE = ("fasttext", "fasttext")  # (body, start): the bodiless FastText baseline
RECURRENT = ("lstm", "tcn")  # "conventional RNNs / CNNs / TCNs"


def _verdict(better, worse) -> tuple[str, float]:
  """("holds" | "fails" | "undecided", p) for the claim that row `better` beats row `worse`."""
  p = statistics.welch(better["devs"], worse["devs"])
  if math.isnan(p):
    return "undecided", p
  if p < statistics.ALPHA:
    return ("holds" if better["dev_mean"] > worse["dev_mean"] else "fails"), p
  return "undecided", p


def _row(row: dict) -> str:
  return f"{row['body']}/{row['start']} {row['dev_mean']:.3f} (n={row['seeds']})"


def _best(rows, bodies) -> dict | None:
  candidates = [row for row in rows if row["body"] in bodies]
  return max(candidates, key=lambda row: row["dev_mean"]) if candidates else None


def _pre_trained(start: str) -> bool:
  return grid_lib.STARTS[grid_lib.start_kind(start)[0]][1] is not None


def task_claims(rows: list[dict]) -> list[dict]:
  """[{"claim", "verdict", "p", "detail"}] for one task's rows (table.rows' dicts; dev higher is better)."""
  by_key = {(row["body"], row["start"]): row for row in rows}
  claims = []
  baseline, transformer = by_key.get(BASELINE), _best(rows, ("transformer",))
  if baseline is not None and transformer is not None:
    # The claim is that the baseline is at least as good: it holds when the baseline is better.
    verdict, p = _verdict(baseline, transformer)
    claims.append(dict(claim="No transformer beat FastText", verdict=verdict, p=p,
                       detail=f"the FastText baseline {_row(baseline)} vs the best transformer row {_row(transformer)}"))
  recurrent = _best(rows, RECURRENT)
  if recurrent is not None and transformer is not None:
    verdict, p = _verdict(recurrent, transformer)
    claims.append(dict(claim="Conventional RNNs / TCNs beat transformers", verdict=verdict, p=p,
                       detail=f"the best BiLSTM/TCN row {_row(recurrent)} vs the best transformer row {_row(transformer)}"))
  for body in dict.fromkeys(row["body"] for row in rows):
    fasttext, frozen = by_key.get((body, "fasttext")), by_key.get((body, "frozen"))
    if fasttext is not None and frozen is not None:
      verdict, p = _verdict(fasttext, frozen)
      claims.append(dict(claim=f"Freezing FastText costs ({body})", verdict=verdict, p=p,
                         detail=f"{_row(fasttext)} vs {_row(frozen)}: {frozen['dev_mean'] - fasttext['dev_mean']:+.3f}"))
  # "Pre-training is not a silver bullet": it fails if every pre-trained row beats its body's scratch
  # row at p < ALPHA; it holds if some pre-trained row falls below its scratch row at p < ALPHA.
  pairs = [(row, by_key[(row["body"], "scratch")]) for row in rows
           if row["start"] != "scratch" and _pre_trained(row["start"]) and (row["body"], "scratch") in by_key]
  if pairs:
    outcomes = [(row, scratch, *_verdict(row, scratch)) for row, scratch in pairs]
    gains = [row for row, _, verdict, _ in outcomes if verdict == "holds"]
    losses = [row for row, _, verdict, _ in outcomes if verdict == "fails"]
    verdict = "fails" if len(gains) == len(outcomes) else "holds" if losses else "undecided"
    detail = (f"{len(gains)} of {len(outcomes)} pre-trained rows beat their body's scratch row at p < "
              f"{statistics.ALPHA}, {len(losses)} fall below it, the rest are not separable: " + "; ".join(
                  f"{row['body']}/{row['start']} {row['dev_mean'] - scratch['dev_mean']:+.3f} ({statistics.p_text(p)})"
                  for row, scratch, _, p in outcomes))
    claims.append(dict(claim="Pre-training is not a silver bullet", verdict=verdict, p=math.nan, detail=detail))
  # What more pre-training buys: each start read along its pre-training against the same
  # pre-training's best checkpoint (the claim: the longer pre-training scores higher).
  for row in rows:
    kind, step = grid_lib.start_kind(row["start"])
    full = by_key.get((row["body"], kind))
    if step is not None and full is not None:
      verdict, p = _verdict(full, row)
      claims.append(dict(claim=f"More pre-training pays ({row['body']}, {kind}: step {step} -> its best)",
                         verdict=verdict, p=p,
                         detail=f"{_row(full)} vs {_row(row)}: {full['dev_mean'] - row['dev_mean']:+.3f}"))
  return claims


def reading(table: list[dict]) -> list[str]:
  """Markdown lines: per task, each claim the grid's rows can test, its verdict and its test."""
  lines = []
  for task in dict.fromkeys(row["task"] for row in table):
    rows = [row for row in table if row["task"] == task]
    claims = task_claims(rows)
    if not claims:
      continue
    lines.append(f"- **{task}** (dev {rows[0]['metric']}):")
    for claim in claims:
      test = "" if math.isnan(claim["p"]) else f", Welch's t-test {statistics.p_text(claim['p'])}"
      lines.append(f"  - {claim['claim']}: **{claim['verdict']}** ({claim['detail']}{test}).")
  if lines:
    lines = [f"Reading: each claim, per task, by Welch's t-test over seeds (holds / fails at p < {statistics.ALPHA}, "
             "undecided otherwise; a family's best row by dev mean; no correction for multiple claims):"] + lines
  return lines
