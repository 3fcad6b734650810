"""Run reports: one HTML page from two smoke runs' workdirs, a language model and a classifier."""

import base64
import html.parser
import io
import json
import os
import shutil
import subprocess
import sys

import matplotlib.image
import pytest

from conftest import REPO_ROOT, smoke_config
from jaxlm.tools import report
from jaxlm.training import loop
from task_fixtures import finetune_config, write_classification

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def two_runs(tiny_corpus, cache_dir, tmp_path_factory):
  """{name: workdir}: the quickstart smoke LM (best by perplexity, lower) and the FastText-baseline
  RuCoLA smoke classifier (best by MCC, higher), 6 steps each."""
  language_model = str(tmp_path_factory.mktemp("language_model"))
  loop.train_and_evaluate(smoke_config(tiny_corpus, cache_dir), language_model, progress=False)
  sentences = write_classification(str(tmp_path_factory.mktemp("sentences")))
  classifier = str(tmp_path_factory.mktemp("classifier"))
  loop.train_and_evaluate(finetune_config("task=rucola,body=fasttext", sentences), classifier, progress=False)
  return {"LM <smoke>": language_model, "RuCoLA": classifier}


class Page(html.parser.HTMLParser):
  """The page's tables ({id: [[(text, attributes), ...] per row]}), images' src and section keys."""

  def __init__(self, text: str):
    super().__init__()
    self.tables, self.images, self.sections = {}, [], []
    self.table = self.row = self.cell = None
    self.feed(text)

  def handle_starttag(self, tag, attrs):
    attrs = dict(attrs)
    if tag == "table":
      self.table = self.tables.setdefault(attrs.get("id"), [])
    elif tag == "tr" and self.table is not None:
      self.row = []
      self.table.append(self.row)
    elif tag in ("td", "th") and self.row is not None:
      self.cell = ["", attrs]
      self.row.append(self.cell)
    elif tag == "img":
      self.images.append(attrs["src"])
    elif tag == "section":
      self.sections.append(attrs.get("data-key"))

  def handle_endtag(self, tag):
    if tag == "table":
      self.table = None
    elif tag in ("td", "th"):
      self.cell = None

  def handle_data(self, data):
    if self.cell is not None:
      self.cell[0] += data


def valid_records(workdir):
  with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as handle:
    return [record for record in map(json.loads, handle) if record["kind"] == "valid"]


def test_the_report_tables_and_images_match_the_runs_records(two_runs):
  page = Page(report.render(report.load_runs([f"{name}={workdir}" for name, workdir in two_runs.items()])))
  header, *rows = page.tables["summary"]
  columns = [text for text, _ in header]
  by_run = {row[0][0]: {column: cell for column, cell in zip(columns, row)} for row in rows}
  assert list(by_run) == list(two_runs)  # in --run order, the name escaped and read back
  # Best by each run's task: the LM's lowest perplexity, the classifier's highest MCC, exactly as recorded.
  language_model, classifier = by_run["LM <smoke>"], by_run["RuCoLA"]
  assert "perplexity" in language_model["metric"][0] and "mcc" in classifier["metric"][0]
  lm_valid, classifier_valid = valid_records(two_runs["LM <smoke>"]), valid_records(two_runs["RuCoLA"])
  assert float(language_model["best valid metric"][1]["data-value"]) == min(r["perplexity"] for r in lm_valid)
  assert float(classifier["best valid metric"][1]["data-value"]) == max(r["mcc"] for r in classifier_valid)
  assert float(language_model["final valid loss"][1]["data-value"]) == lm_valid[-1]["loss"]
  assert language_model["last step"][0] == "6"
  # One figure per quantity; each is a PNG that decodes.
  assert page.sections == ["loss", "perplexity", "mcc", "learning_rate", "grad_norm", "tokens_per_second"]
  assert len(page.images) == 6
  for source in page.images:
    prefix = "data:image/png;base64,"
    assert source.startswith(prefix)
    data = base64.b64decode(source[len(prefix):], validate=True)
    assert data.startswith(PNG_SIGNATURE)
    height, width, _ = matplotlib.image.imread(io.BytesIO(data), format="png").shape
    assert width > height > 200
  # The configs differ in the task, side by side in --run order; keys both share are not repeated.
  differences = {row[0][0]: [text for text, _ in row[1:]] for row in page.tables["config-differences"][1:]}
  assert differences["task.name"] == ['"causal_lm"', '"classification"']
  assert differences["data.corpus"][1] == report.ABSENT
  assert "seed" not in differences and "seed" in {row[0][0] for row in page.tables["config-shared"]}


def test_a_quantity_no_run_recorded_is_said_not_drawn(two_runs, tmp_path):
  workdir = tmp_path / "old_run"
  workdir.mkdir()
  for name in ("config.json", "run.json"):
    shutil.copy(os.path.join(two_runs["LM <smoke>"], name), workdir)
  records = [{"step": 2, "kind": "train", "loss": 4.0, "perplexity": 54.6, "training_seconds": 1.0},
             {"step": 3, "kind": "valid", "loss": 3.9, "perplexity": 49.4, "training_seconds": 1.5},
             {"step": 4, "kind": "train", "loss": 3.0, "perplexity": 20.1, "training_seconds": 0.5}]  # resumed
  (workdir / "metrics.jsonl").write_text("".join(json.dumps(record) + "\n" for record in records))
  text = report.render([report.load_run("old", str(workdir))])
  page = Page(text)
  assert "grad_norm" not in page.sections and "Not recorded by any run" in text and "'grad_norm'" in text
  assert "old was resumed after step(s) 3" in text


def test_bad_runs_are_clear_errors_naming_them(two_runs, tmp_path):
  with pytest.raises(ValueError, match="must be NAME=WORKDIR"):
    report.load_runs(["no_workdir"])
  with pytest.raises(ValueError, match="at least one"):
    report.load_runs([])
  with pytest.raises(ValueError, match=r"repeated: \['a'\]"):
    report.load_runs([f"a={two_runs['RuCoLA']}", f"a={two_runs['RuCoLA']}"])
  with pytest.raises(FileNotFoundError, match=f"run 'gone': workdir {tmp_path}/gone does not exist"):
    report.load_run("gone", str(tmp_path / "gone"))
  # A folder that is no jaxlm run is named as such before anything else is looked for.
  with pytest.raises(FileNotFoundError, match="run 'empty': .*config.json not found"):
    report.load_run("empty", str(tmp_path))
  (tmp_path / "config.json").write_text('{"foo": 1}')
  with pytest.raises(ValueError, match="run 'empty': .*config.json is not a jaxlm config"):
    report.load_run("empty", str(tmp_path))
  shutil.copy(os.path.join(two_runs["RuCoLA"], "config.json"), tmp_path)
  with pytest.raises(FileNotFoundError, match="run 'empty': .*metrics.jsonl does not exist"):
    report.load_run("empty", str(tmp_path))
  (tmp_path / "metrics.jsonl").write_text(json.dumps({"step": 0, "kind": "config_change", "changes": []}) + "\n")
  with pytest.raises(ValueError, match="run 'empty': .*no train or valid records"):
    report.load_run("empty", str(tmp_path))


@pytest.mark.slow
def test_the_launcher_writes_the_page_and_its_figures(two_runs, tmp_path):
  command = [sys.executable, os.path.join(REPO_ROOT, "launch", "report.py"), f"--output={tmp_path}/report.html",
             f"--figures={tmp_path}/figures", *(f"--run={name}={workdir}" for name, workdir in two_runs.items())]
  result = subprocess.run(command, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr
  assert len(Page((tmp_path / "report.html").read_text(encoding="utf-8")).images) == 6
  assert sorted(os.listdir(tmp_path / "figures"))[0] == "grad_norm.png"
  bad = subprocess.run(command[:2] + [f"--output={tmp_path}/x.html", f"--run=a={tmp_path}/nowhere"],
                       capture_output=True, text=True, timeout=300)
  assert bad.returncode != 0 and f"run 'a': workdir {tmp_path}/nowhere does not exist" in bad.stderr
  assert "Traceback" not in bad.stderr


def test_the_best_validation_is_chosen_as_the_best_checkpoint_is():
  """A validation made off schedule on a stop ("interrupted") is not the best while a scheduled one exists."""
  valid = [{"kind": "valid", "step": 3, "mcc": 0.2}, {"kind": "valid", "step": 4, "mcc": 0.5, "interrupted": True},
           {"kind": "valid", "step": 6, "mcc": 0.3}]
  run = report.Run(name="r", workdir="", config={}, records=valid, task="classification", best_metric="mcc",
                   best_mode="max", clock_restarts=[])
  assert report.best_record(run)["step"] == 6
  run.records = valid[1:2]
  assert report.best_record(run)["step"] == 4
