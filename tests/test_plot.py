"""SVG curves from metrics.jsonl, for BENCHMARKS.md's plots."""

import json
import xml.etree.ElementTree as ElementTree

import pytest

from jaxlm import plot

SVG = "{http://www.w3.org/2000/svg}"


def write_metrics(path, records):
  path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
  return str(path)


def test_a_curve_keeps_its_kind_and_lets_a_resumed_record_win(tmp_path):
  path = write_metrics(tmp_path / "metrics.jsonl", [
      {"step": 10, "kind": "train", "loss": 9.0},
      {"step": 10, "kind": "valid", "loss": 5.0, "training_seconds": 3.0},
      {"step": 20, "kind": "valid", "loss": 4.0, "training_seconds": 6.0},
      {"step": 20, "kind": "valid", "loss": 3.5, "training_seconds": 2.0},  # after a resume
  ])
  assert plot.read_curve(path, kind="valid", x="step", y="loss") == [(10.0, 5.0), (20.0, 3.5)]
  assert plot.read_curve(path, kind="valid", x="training_seconds", y="loss") == [(3.0, 5.0), (2.0, 3.5)]


def test_missing_files_keys_and_bad_lines_are_clear_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match="nowhere"):
    plot.read_curve(str(tmp_path / "nowhere" / "metrics.jsonl"), kind="valid", x="step", y="loss")
  path = write_metrics(tmp_path / "metrics.jsonl", [{"step": 1, "kind": "valid", "loss": 2.0}])
  with pytest.raises(ValueError, match="'accuracy'"):
    plot.read_curve(path, kind="valid", x="step", y="accuracy")
  bad = tmp_path / "bad.jsonl"
  bad.write_text('{"step": 1}\nnot json\n', encoding="utf-8")
  with pytest.raises(ValueError, match="bad.jsonl:2"):
    plot.read_curve(str(bad), kind="valid", x="step", y="loss")


def test_the_plot_is_svg_with_one_line_and_legend_entry_per_series():
  svg = plot.line_plot({"a & b": [(0, 1.0), (10, 0.5)], "c": [(0, 2.0), (5, 1.5), (10, 1.0)]},
                       x_label="step", y_label="loss", title="t")
  root = ElementTree.fromstring(svg)  # well-formed XML, label escaped
  lines = root.findall(f"{SVG}polyline")
  assert [line.find(f"{SVG}title").text for line in lines] == ["a & b", "c"]
  assert [len(line.get("points").split()) for line in lines] == [2, 3]
  texts = [text.text for text in root.iter(f"{SVG}text")]
  assert "a & b" in texts and "c" in texts and "step" in texts and "loss" in texts
  # The lowest loss is drawn lowest: SVG y grows downward.
  points = [tuple(map(float, point.split(","))) for point in lines[1].get("points").split()]
  assert points[0][1] < points[-1][1]
  with pytest.raises(ValueError, match="at least one"):
    plot.line_plot({}, x_label="x", y_label="y")
