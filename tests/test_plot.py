"""Curves from metrics.jsonl drawn with matplotlib, for BENCHMARKS.md's plots and run reports."""

import json
import xml.etree.ElementTree as ElementTree

import pytest

from jaxlm import metrics
from jaxlm.tools import plot

SVG = "{http://www.w3.org/2000/svg}"


def write_metrics(path, records):
  path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
  return str(path)


def test_a_curve_keeps_its_kind_and_lets_a_rewritten_record_win(tmp_path):
  path = write_metrics(tmp_path / "metrics.jsonl", [
      {"step": 10, "kind": "train", "loss": 9.0},
      {"step": 10, "kind": "valid", "loss": 5.0, "training_seconds": 3.0},
      {"step": 20, "kind": "valid", "loss": 4.0, "training_seconds": 6.0},
      {"step": 20, "kind": "valid", "loss": 3.5, "training_seconds": 6.5},  # written again
  ])
  assert plot.read_curve(path, kind="valid", x="step", y="loss") == [(10.0, 5.0), (20.0, 3.5)]
  assert plot.read_curve(path, kind="valid", x="training_seconds", y="loss") == [(3.0, 5.0), (6.5, 3.5)]


def test_a_resumed_runs_clock_continues_from_the_total_before_it(tmp_path):
  # The loop counts training_seconds per process: a run resumed from step 20 starts again at 0.
  path = write_metrics(tmp_path / "metrics.jsonl", [
      {"step": 10, "kind": "train", "loss": 5.0, "training_seconds": 3.0},
      {"step": 20, "kind": "valid", "loss": 4.0, "training_seconds": 6.0},
      {"step": 30, "kind": "train", "loss": 3.0, "training_seconds": 2.5},
      {"step": 30, "kind": "valid", "loss": 2.9, "training_seconds": 3.0},
  ])
  records, restarts = metrics.read_metrics(path)
  assert restarts == [20]
  assert [record["training_seconds"] for record in records] == [3.0, 6.0, 8.5, 9.0]
  assert plot.curve(records, kind="valid", x="training_seconds", y="loss") == [(6.0, 4.0), (9.0, 2.9)]


def test_missing_files_keys_and_bad_lines_are_clear_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match="nowhere"):
    plot.read_curve(str(tmp_path / "nowhere" / "metrics.jsonl"), kind="valid", x="step", y="loss")
  path = write_metrics(tmp_path / "metrics.jsonl", [{"step": 1, "kind": "valid", "loss": 2.0}])
  with pytest.raises(ValueError, match="'accuracy'"):
    plot.read_curve(path, kind="valid", x="step", y="accuracy")
  bad = tmp_path / "bad.jsonl"
  bad.write_text('{"step": 1, "kind": "train"}\nnot json\n', encoding="utf-8")
  with pytest.raises(ValueError, match="bad.jsonl:2"):
    plot.read_curve(str(bad), kind="valid", x="step", y="loss")
  bad.write_text('{"loss": 1.0}\n', encoding="utf-8")
  with pytest.raises(ValueError, match="bad.jsonl:1 is not a jaxlm metrics record"):
    metrics.read_records(str(bad))


def test_run_arguments_split_at_the_last_equals_sign():
  assert plot.parse_run("lr=3e-4=runs/a") == ("lr=3e-4", "runs/a")
  for spec in ("runs/a", "=runs/a", "name="):
    with pytest.raises(ValueError, match="must be NAME=WORKDIR"):
      plot.parse_run(spec)


def test_the_plot_has_one_line_and_legend_entry_per_series_in_png_and_svg(tmp_path):
  series = {"a & b": [(0, 1.0), (10, 0.5)], "c": [(0, 2.0), (5, 1.5), (10, 1.0)]}
  figure = plot.line_plot(series, x_label="step", y_label="loss", title="t")
  (axes,) = figure.axes
  assert [line.get_label() for line in axes.get_lines()] == ["a & b", "c"]
  assert [len(line.get_xdata()) for line in axes.get_lines()] == [2, 3]
  assert [text.get_text() for text in axes.get_legend().get_texts()] == ["a & b", "c"]
  assert axes.get_yscale() == "linear"
  root = ElementTree.fromstring(plot.encode(figure, "svg"))  # well-formed XML, labels kept as (escaped) text
  texts = {"".join(text.itertext()).strip() for text in root.iter(f"{SVG}text")}
  assert {"a & b", "c", "step", "loss", "t"} <= texts
  assert plot.encode(figure, "png").startswith(b"\x89PNG\r\n\x1a\n")
  redraw = plot.line_plot(series, x_label="step", y_label="loss", title="t")
  assert plot.encode(redraw, "svg") == plot.encode(plot.line_plot(series, x_label="step", y_label="loss", title="t"),
                                                   "svg")  # no date, fixed ids: a redrawn figure diffs cleanly
  plot.save(figure, str(tmp_path / "sub" / "f.svg"))
  assert (tmp_path / "sub" / "f.svg").read_bytes().startswith(b"<?xml")
  with pytest.raises(ValueError, match="f.pdf: give a .png or .svg"):
    plot.save(figure, str(tmp_path / "f.pdf"))
  assert plot.line_plot({"p": [(1, 900.0), (2, 300.0)]}, x_label="x", y_label="perplexity",
                        log_y=True).axes[0].get_yscale() == "log"
  with pytest.raises(ValueError, match="at least one"):
    plot.line_plot({}, x_label="x", y_label="y")
