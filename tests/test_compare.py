"""The grid runner (jaxlm.tools.compare): every cell once, a finished grid reruns nothing, a killed cell
reruns alone, pre-training first, and the table's numbers are the cells' own."""

import csv
import dataclasses
import functools
import json
import math
import os
import shutil
import signal
import threading
import time

import numpy as np
import pytest
from scipy import stats as scipy_stats

from configs import compare_ru
from jaxlm.tools.compare import cell_configs, cluster, processes, result_files, scheduler, table
from jaxlm.tools.compare import grid as grid_lib
from task_fixtures import write_classification, write_treebank

# The smoke grid's tasks on tests/task_fixtures.py's files (their names, not RuCoLA's and Taiga's).
FIXTURE_FILES = {
    "rucola": ("task.files.train=train.csv", "task.files.valid=dev.csv", "task.files.valid_out_of_domain=ood.csv",
               "task.files.test=test.csv"),
    "upos": ("task.files.train=train.conllu", "task.files.valid=dev.conllu", "task.files.test=test.conllu"),
}


def smoke_grid(tmp_path):
  """configs/compare_ru.py:smoke (2 tasks x 2 bodies x scratch x 2 seeds) on fixture files."""
  config = compare_ru.get_config("smoke")
  folders = {"rucola": write_classification(str(tmp_path / "sentences")),
             "upos": write_treebank(str(tmp_path / "treebank"))}
  for task, folder in folders.items():
    config.task[task].overrides = (f"task.path={folder}",) + FIXTURE_FILES[task]
  config.task.rucola.also_metrics = ("accuracy",)  # shown beside MCC; UPOS has none
  return grid_lib.expand(config, str(tmp_path / "grid"))


class CountingRunner:
  """The in-process runner, counting which cells it ran."""

  def __init__(self):
    self.calls = []

  def __call__(self, cell, cores, children):
    self.calls.append(cell.name)
    return processes.run_in_process(cell, cores, children)


def test_smoke_grid_runs_once_resumes_and_tabulates(tmp_path):
  grid = smoke_grid(tmp_path)
  names = [cell.name for cell in grid.cells]
  assert len(names) == 8 and all(cell.kind == "finetune" for cell in grid.cells)

  runner = CountingRunner()
  report = scheduler.run_grid(grid, runner=runner, log=lambda line: None)
  assert sorted(runner.calls) == sorted(names) and sorted(report["ran"]) == sorted(names)
  assert scheduler.exit_status(report) == 0

  runner.calls.clear()
  report = scheduler.run_grid(grid, runner=runner, log=lambda line: None)
  assert runner.calls == [] and sorted(report["finished_before"]) == sorted(names)

  # A cell killed before its result was written: its workdir (checkpoints, metrics) stays, the
  # result goes. It alone runs again, resuming its finished checkpoint, with the same numbers.
  killed = grid.cell("upos/transformer/scratch/seed1")
  before = result_files.read_result(killed)
  os.remove(os.path.join(killed.workdir, result_files.RESULT_FILE))
  report = scheduler.run_grid(grid, runner=runner, log=lambda line: None)
  assert runner.calls == [killed.name] and report["ran"] == [killed.name]
  after = result_files.read_result(killed)
  assert after["dev"] == pytest.approx(before["dev"]) and after["best_step"] == before["best_step"]
  assert after["examples_seen"] == 6 * 8  # the smoke budget: 6 steps of 8 examples

  paths = table.write_all(grid, str(tmp_path / "grid"))
  with open(paths["csv"], encoding="utf-8") as handle:
    rows = list(csv.DictReader(handle))
  assert len(rows) == 4 and os.path.getsize(paths["svg"]) > 0 and os.path.getsize(paths["curves"]) > 0
  # Each cell's learning curve is its validations: examples seen, CPU-seconds so far, dev metric.
  cell = grid.cell("rucola/transformer/scratch/seed0")
  records = [json.loads(line) for line in open(os.path.join(cell.workdir, "metrics.jsonl"))]
  curve = table.learning_curve(cell)
  assert curve == [(record["examples_seen"], record["cpu_seconds"], record["mcc"]) for record in records
                   if record["kind"] == "valid"]
  assert [examples for examples, _, _ in curve] == [3 * 8, 6 * 8] and curve[0][1] < curve[1][1]
  for row in rows:
    seeds = [result_files.read_result(grid.cell(f"{row['task']}/{row['body']}/{row['start']}/seed{seed}"))
             for seed in (0, 1)]
    dev = [result["dev"] for result in seeds]
    assert float(row["dev_mean"]) == pytest.approx(np.mean(dev))
    assert float(row["dev_std"]) == pytest.approx(np.std(dev, ddof=1))
    half = scipy_stats.t.ppf(0.975, 1) * np.std(dev, ddof=1) / math.sqrt(2)  # Student's t, 2 seeds
    assert (float(row["dev_ci_low"]), float(row["dev_ci_high"])) == pytest.approx((np.mean(dev) - half,
                                                                                   np.mean(dev) + half))
    assert int(row["seeds"]) == 2
    # Taiga's test split; RuCoLA's labelled out-of-domain dev (its test.csv has no labels).
    test_split = "test" if row["task"] == "upos" else "valid_out_of_domain"
    test = [result["splits"][test_split][row["metric"]] for result in seeds]
    assert float(row["test_mean"]) == pytest.approx(np.mean(test))
    assert float(row["test_std"]) == pytest.approx(np.std(test, ddof=1))
    # A task's also_metrics: dev at the same checkpoints (RuCoLA's accuracy here); empty for UPOS.
    if row["task"] == "rucola":
      accuracy = [result["splits"]["valid"]["accuracy"] for result in seeds]
      assert float(row["dev_accuracy_mean"]) == pytest.approx(np.mean(accuracy))
      assert float(row["dev_accuracy_std"]) == pytest.approx(np.std(accuracy, ddof=1))
    else:
      assert row["dev_accuracy_mean"] == row["dev_accuracy_std"] == ""
  # The per-split numbers come from the best checkpoint's evaluation, the dev one included.
  result = result_files.read_result(grid.cell("rucola/transformer/scratch/seed0"))
  assert result["dev"] == result["splits"]["valid"]["mcc"] and "valid_out_of_domain" in result["splits"]
  # Each result names the code it ran on, and the table counts the cells per version: a grid run
  # over several sittings says which cells ran on which commit.
  assert result["code"] == result_files.code_version()
  with open(paths["md"], encoding="utf-8") as handle:
    text = handle.read()
  assert f"Code: {result['code'] or 'not recorded'} (8 cells)." in text
  assert "other dev metrics, mean ± sd" in text and "| accuracy " in text
  # A metric the task's summaries do not have: an error naming the key and what there is.
  mistyped = grid_lib.Grid(cells=[dataclasses.replace(cell, also_metrics=("acuracy",)) for cell in grid.cells],
                           not_applicable=[])
  with pytest.raises(grid_lib.GridError, match=r"also_metrics names \['acuracy'\].*'accuracy'"):
    table.write_all(mistyped, str(tmp_path / "grid"))

  # The same command, but the config file's default changed since the cell trained (here: its saved
  # learning rate is not today's): its result is refused, never reused, and nothing is deleted.
  stale = grid.cell("rucola/fasttext/scratch/seed1")
  config_path = os.path.join(stale.workdir, "config.json")
  with open(config_path, encoding="utf-8") as handle:
    saved = json.load(handle)
  saved["optim"]["lr"] *= 10
  with open(config_path, "w", encoding="utf-8") as handle:
    json.dump(saved, handle)
  with pytest.raises(grid_lib.GridError, match=r"optim\.lr.*Move .*seed1 aside"):
    scheduler.run_grid(grid, runner=runner, log=lambda line: None)
  assert os.path.exists(os.path.join(stale.workdir, result_files.RESULT_FILE))


class InterruptingRunner(CountingRunner):
  """The in-process runner, but the named cells stop as a SIGTERM'd command would (exit 143), or fail (exit 1)."""

  def __init__(self, interrupt=(), fail=()):
    super().__init__()
    self.interrupt, self.fail = set(interrupt), set(fail)

  def __call__(self, cell, cores, children):
    if cell.name in self.interrupt:
      self.interrupt.discard(cell.name)
      self.calls.append(cell.name)
      raise processes.CellFailed(f"{cell.name} stopped", 143)
    if cell.name in self.fail:
      self.calls.append(cell.name)
      raise processes.CellFailed(f"{cell.name} diverged", 1)
    return super().__call__(cell, cores, children)


def search_grid(tmp_path):
  """RuCoLA x {FastText baseline, transformer} x scratch, a 2-trial search, 2 seeds."""
  config = compare_ru.get_config("smoke")
  config.tasks = ("rucola",)
  config.task.rucola.overrides = (f"task.path={write_classification(str(tmp_path / 'sentences'))}",
                                  ) + FIXTURE_FILES["rucola"]
  config.search.trials = 2
  config.search.startup_trials = 1
  # The smoke grid's bodies: no LSTM or TCN dropout keys; batch sizes the 4 test devices divide.
  config.search.space = dict(lr=dict(kind="log", low=1e-3, high=1e-1, keys=("optim.lr",)),
                             dropout=dict(kind="uniform", low=0.0, high=0.3, keys=("model.transformer.dropout",)),
                             batch_size=dict(kind="choice", choices=(4, 8), keys=("train.batch_size",)))
  return grid_lib.expand(config, str(tmp_path / "grid"))


def trials_of(grid, row):
  study = grid.search.study(row, create=False)
  return {trial.user_attrs["cell"]: trial for trial in study.trials} if study is not None else {}


def test_a_search_gives_each_row_its_trials_resumes_after_a_kill_and_its_best_settings_reach_the_seeds(tmp_path):
  grid = search_grid(tmp_path)
  rows = ["rucola/fasttext/scratch", "rucola/transformer/scratch"]
  trial_names = [f"{row}/trial{k}" for k in (0, 1) for row in rows]
  assert [cell.name for cell in grid.cells if cell.kind == "trial"] == trial_names  # trial-major
  # The search's seed trains the trials; the seed cells wait for their row's trials.
  assert all(cell.overrides[-1] == "seed=100" for cell in grid.cells if cell.kind == "trial")
  assert grid.cell("rucola/transformer/scratch/seed0").needs == ("rucola/transformer/scratch/trial0",
                                                                "rucola/transformer/scratch/trial1")
  # Before a trial is asked its command is incomplete, and --dry_run says so.
  assert "# + the settings its row's search decides" in "\n".join(scheduler.status_lines(grid))

  # A kill in the transformer row's second trial: the grid stops there; that trial's settings are
  # stored, so the same command resumes it with them, and no finished trial runs again.
  stopped = InterruptingRunner(interrupt={"rucola/transformer/scratch/trial1"})
  report = scheduler.run_grid(grid, runner=stopped, log=lambda line: None)
  assert report["interrupted"] == ["rucola/transformer/scratch/trial1"] and scheduler.exit_status(report) == 1
  asked = trials_of(grid, "rucola/transformer/scratch")["rucola/transformer/scratch/trial1"]
  assert asked.state.name == "RUNNING" and set(asked.params) == {"lr", "dropout", "batch_size"}
  # The FastText baseline has no dropout key: its trials search lr and batch size only.
  assert set(trials_of(grid, "rucola/fasttext/scratch")["rucola/fasttext/scratch/trial0"].params) == {"lr", "batch_size"}

  runner = CountingRunner()
  report = scheduler.run_grid(grid, runner=runner, log=lambda line: None)
  assert scheduler.exit_status(report) == 0
  assert "rucola/transformer/scratch/trial1" in runner.calls
  assert not set(runner.calls) & (set(trial_names) - {"rucola/transformer/scratch/trial1"})  # finished ones skipped
  for row in rows:
    trials = trials_of(grid, row)
    assert sorted(trials) == [f"{row}/trial0", f"{row}/trial1"]  # two trials, none asked twice
    assert all(trial.state.name == "COMPLETE" for trial in trials.values())
    for name, trial in trials.items():  # each trial's told value is its result's dev score
      assert trial.value == pytest.approx(result_files.read_grid_result(grid, grid.cell(name))["dev"])
    resumed = trials.get("rucola/transformer/scratch/trial1")
    if resumed is not None:
      assert resumed.params == asked.params
    best = max(trials.values(), key=lambda trial: (trial.value, -trial.number))
    for seed in (0, 1):  # the seed cells trained with the best trial's settings
      cell = grid.cell(f"{row}/seed{seed}")
      with open(os.path.join(cell.workdir, "config.json"), encoding="utf-8") as handle:
        saved = json.load(handle)
      assert saved["optim"]["lr"] == pytest.approx(best.params["lr"]) and saved["seed"] == seed
      assert saved["train"]["batch_size"] == best.params["batch_size"]
      if "dropout" in best.params:
        assert saved["model"]["transformer"]["dropout"] == pytest.approx(best.params["dropout"])
  # Nothing runs twice; the table names each row's tuned settings and what its trials cost.
  runner.calls.clear()
  report = scheduler.run_grid(grid, runner=runner, log=lambda line: None)
  assert runner.calls == [] and len(report["finished_before"]) == 8
  text = open(table.write_all(grid, str(tmp_path / "grid"))["md"], encoding="utf-8").read()
  assert "Tuning: 2 trials per row" in text and "- rucola/transformer/scratch: 2 of 2 trials finished; best trial" in text


def test_a_failed_trial_is_a_finished_trial_without_a_score(tmp_path):
  """A trial whose command fails (its settings diverged) is told as failed: the row's seeds run with
  the best of the others; a row whose trials all failed blocks its seeds, naming why."""
  grid = search_grid(tmp_path)
  failing = {"rucola/fasttext/scratch/trial0", "rucola/transformer/scratch/trial0", "rucola/transformer/scratch/trial1"}
  runner = InterruptingRunner(fail=failing)
  report = scheduler.run_grid(grid, runner=runner, log=lambda line: None)
  assert set(failing) <= set(report["ran"]) and not report["failed"]
  fasttext = trials_of(grid, "rucola/fasttext/scratch")
  assert fasttext["rucola/fasttext/scratch/trial0"].state.name == "FAIL"
  best = fasttext["rucola/fasttext/scratch/trial1"]
  with open(os.path.join(grid.cell("rucola/fasttext/scratch/seed0").workdir, "config.json"), encoding="utf-8") as handle:
    assert json.load(handle)["optim"]["lr"] == pytest.approx(best.params["lr"])
  assert sorted(report["blocked"]) == ["rucola/transformer/scratch/seed0", "rucola/transformer/scratch/seed1"]
  assert scheduler.exit_status(report) == 1


def test_a_search_key_no_row_has_stops_the_grid_before_anything_runs(tmp_path):
  config = compare_ru.get_config("smoke")
  config.search.trials = 2
  config.search.space = dict(lr=dict(kind="log", low=1e-3, high=1e-1, keys=("optim.lrr",)))
  grid = grid_lib.expand(config, str(tmp_path / "grid"))
  with pytest.raises(grid_lib.GridError, match=r"search\.space\.lr: no row's config has the key 'optim\.lrr'"):
    scheduler.run_grid(grid, runner=lambda cell, cores, children: None, log=lambda line: None)
  config.search.space = dict(lr=dict(kind="loguniform", low=1e-3, high=1e-1, keys=("optim.lr",)))
  with pytest.raises(grid_lib.GridError, match=r"search\.space\.lr\.kind='loguniform': give one of"):
    grid_lib.expand(config, str(tmp_path / "grid"))
  assert not os.path.exists(tmp_path / "grid")


def test_pre_training_runs_first_and_a_failed_one_blocks_its_cells(tmp_path):
  config = compare_ru.get_config()
  config.tasks, config.bodies, config.starts, config.seeds = ("rucola",), ("lstm",), ("scratch", "mlm"), (0,)
  config.task.rucola.extra_starts = ()
  grid = grid_lib.expand(config, str(tmp_path))
  assert [cell.name for cell in grid.cells] == ["pretrain/ru/fasttext", "pretrain/ru/mlm_lstm",
                                                "rucola/lstm/scratch/seed0", "rucola/lstm/mlm/seed0"]
  assert grid.cell("rucola/lstm/mlm/seed0").needs == ("pretrain/ru/mlm_lstm",)
  assert f"init.checkpoint={tmp_path}/pretrain/ru/mlm_lstm:best" in grid.cell("rucola/lstm/mlm/seed0").overrides
  calls = []

  def failing(cell, cores, children):
    calls.append(cell.name)
    raise processes.CellFailed(f"{cell.name}: simulated")

  report = scheduler.run_grid(grid, runner=failing, log=lambda line: None)
  assert calls == ["pretrain/ru/fasttext", "rucola/lstm/scratch/seed0"]
  assert report["blocked"] == ["pretrain/ru/mlm_lstm", "rucola/lstm/mlm/seed0"]
  assert scheduler.exit_status(report) == 1  # a scheduler should not take it as done
  # A cell another process is running (its workdir locked) is left alone.
  calls.clear()
  with processes.cell_lock(grid.cell("rucola/lstm/scratch/seed0")) as locked:
    assert locked
    report = scheduler.run_grid(grid, runner=failing, only=["*/scratch/*"], log=lambda line: None)
  assert calls == [] and report["busy"] == ["rucola/lstm/scratch/seed0"]
  # --only picks cells by name and brings what they need.
  assert [cell.name for cell in grid_lib.select(grid, ["*/mlm/*"])] == [
      "pretrain/ru/fasttext", "pretrain/ru/mlm_lstm", "rucola/lstm/mlm/seed0"]
  with pytest.raises(grid_lib.GridError, match="matches no cell"):
    grid_lib.select(grid, ["sst3/*"])


def test_every_cell_of_the_full_grid_is_a_config_that_builds():
  """Each cell's config and overrides build (keys exist, values parse), data unread."""
  for variant in (None, "small"):
    grid = grid_lib.expand(compare_ru.get_config(variant), "runs/compare_ru")
    for cell in grid.cells:
      config = cell_configs.load_config(cell.config, cell.overrides)
      if cell.kind == "finetune":
        assert config.seed == cell.seed and config.train.steps == 400
  grid = grid_lib.expand(compare_ru.get_config(), "runs/compare_ru")
  assert len([cell for cell in grid.cells if cell.kind == "finetune"]) == 4 * (3 + 4 + 4 + 5) * 3 + 4 * 3
  # RuCoLA's extra row: each body's BPE pieces from the FastText vectors, and no other task's.
  bpe_cells = [cell for cell in grid.cells if cell.start == "bpe_fasttext"]
  assert {cell.task for cell in bpe_cells} == {"rucola"} and len(bpe_cells) == 4 * 3
  assert all(",input=bpe,start=fasttext" in cell.config and cell.needs == ("pretrain/ru/fasttext",)
             for cell in bpe_cells)


def test_every_pre_trained_encoder_fits_the_cells_that_start_from_it():
  """Input layer and body shapes of each pre-training cell's model equal its fine-tuning cells' (traced only)."""
  import jax
  import jax.numpy as jnp
  from jaxlm.models import build_model
  from jaxlm.models.heads import tagging

  def encoder_shapes(config):
    # A fine-tuning config names no language-model head; any task head leaves the encoder's shapes as they are.
    head = None if "head" in config.model else tagging.TaggingHead(num_tags=3)
    model = build_model(config.model, 33_278, subword_width=8, head=head)
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 16), jnp.int32), train=False))
    return jax.tree.map(lambda leaf: leaf.shape, {scope: variables["params"][scope] for scope in ("input_layer", "body")})

  config = compare_ru.get_config()
  config.starts = config.starts + ("mlm_vmf",)  # not a default start
  grid = grid_lib.expand(config, "runs/compare_ru")
  checked = set()
  for cell in grid.cells:
    if cell.kind != "finetune" or cell.start not in ("mlm", "mlm_vmf", "clm") or cell.needs[0] in checked:
      continue
    pre_trained = grid.cell(cell.needs[0])
    pre_training = cell_configs.load_config(pre_trained.config, pre_trained.overrides)
    assert encoder_shapes(pre_training) == encoder_shapes(cell_configs.load_config(cell.config, cell.overrides)), (
        pre_trained.name, cell.name)
    if cell.start == "mlm_vmf":  # the head's targets: the FastText cell's vectors, as wide as the model
      fasttext = grid.cell(pre_trained.needs[0])
      assert pre_training.model.head == "vmf" and pre_training.model.target_vectors == fasttext.output
      assert pre_training.model.target_dim == pre_training.model.width == 128
    checked.add(pre_trained.name)
  # ru and en: masked LMs of 3 bodies with a softmax head and 3 with the vMF head, a causal transformer
  assert len(checked) == 14


def test_a_result_from_another_command_is_refused(tmp_path):
  grid = smoke_grid(tmp_path)
  cell = grid.cells[0]
  os.makedirs(cell.workdir)
  with open(os.path.join(cell.workdir, result_files.RESULT_FILE), "w", encoding="utf-8") as handle:
    json.dump({"command": "python launch/train.py --config=configs/other.py"}, handle)
  with pytest.raises(grid_lib.GridError, match="delete"):
    result_files.read_result(cell)


def welch_by_hand(first, second) -> float:
  """The two-sided p-value of Welch's t-test, from its formulas (the statistic and the
  Welch-Satterthwaite degrees of freedom), for checking jaxlm's use of scipy."""
  first, second = np.asarray(first), np.asarray(second)
  a, b = first.var(ddof=1) / first.size, second.var(ddof=1) / second.size
  statistic = (first.mean() - second.mean()) / math.sqrt(a + b)
  degrees = (a + b) ** 2 / (a ** 2 / (first.size - 1) + b ** 2 / (second.size - 1))
  return 2 * scipy_stats.t.sf(abs(statistic), degrees)


def test_rows_give_intervals_and_welch_p_values_against_scratch_and_the_fasttext_baseline():
  devs = {("b", "scratch"): (0.10, 0.20, 0.30), ("b", "fasttext"): (0.25, 0.26, 0.27), ("b", "frozen"): (0.60, 0.61, 0.62),
          ("fasttext", "fasttext"): (0.20, 0.24, 0.22, 0.23), ("b", "clm"): (0.4,)}
  results = [dict(task="t", body=body, start=start, metric="mcc", dev=dev, test=None, wall_seconds=1.0,
                  cpu_seconds=1.0, examples_seen=10, best_step=5)
             for (body, start), values in devs.items() for dev in values]
  grid = grid_lib.Grid(cells=[grid_lib.Cell(name=f"t/{body}/{start}", kind="finetune", config="", overrides=(),
                                            workdir="", task="t", body=body, start=start)
                              for body, start in devs], not_applicable=[])
  rows = {(row["body"], row["start"]): row for row in table.rows(grid, results)}
  for key, values in devs.items():
    row = rows[key]
    if len(values) > 1:  # Student's t interval: mean -+ t(0.975, n - 1) sd / sqrt(n)
      half = scipy_stats.t.ppf(0.975, len(values) - 1) * np.std(values, ddof=1) / math.sqrt(len(values))
      assert row["dev_ci"] == pytest.approx((np.mean(values) - half, np.mean(values) + half))
    else:
      assert all(math.isnan(bound) for bound in row["dev_ci"])
    for name, reference in (("scratch", ("b", "scratch")), ("baseline", ("fasttext", "fasttext"))):
      if key == reference or (name == "scratch" and key[0] != "b"):
        assert math.isnan(row[f"dev_vs_{name}"]) and math.isnan(row[f"vs_{name}_p"])
        continue
      assert row[f"dev_vs_{name}"] == pytest.approx(np.mean(values) - np.mean(devs[reference]))
      if len(values) > 1:
        assert row[f"vs_{name}_p"] == pytest.approx(welch_by_hand(values, devs[reference]))
      else:  # one seed: no test
        assert math.isnan(row[f"vs_{name}_p"])
  # frozen is far from scratch (p < 0.05: bold); fasttext is not (p ~0.41).
  assert rows[("b", "frozen")]["vs_scratch_p"] < 0.05 < rows[("b", "fasttext")]["vs_scratch_p"]
  text = table.markdown(list(rows.values()), [])
  assert f"+0.060 (p {welch_by_hand(devs[('b', 'fasttext')], devs[('b', 'scratch')]):.3f}) |" in text
  assert "**+0.410 (p " in text and "**0.610 [0.585, 0.635]**" in text
  # Every seed alike in both rows (a run stuck at the majority class): no spread to test against.
  assert table.statistics.welch([0.0, 0.0], [0.0, 0.0]) == 1.0 and table.statistics.welch([0.0, 0.0], [0.1, 0.1]) == 0.0
  for result, code in zip(results, ["2c31993"] * 2 + ["5ab12cd-dirty"] * 6 + [None]):
    result["code"] = code
  assert table.code_versions(results[:9]) == "Code: 2c31993 (2 cells), 5ab12cd-dirty (6 cells), not recorded (1 cell)."


def test_a_cell_stopped_by_a_signal_stops_the_grid_even_before_its_handler_was_set():
  # 143 / 130: launch/train.py's own exit after saving; -15 / -2: the signal killed it while it still
  # read its data (seen: a SIGTERM'd SST-2 cell counted as failed and the grid went on to the next).
  assert all(processes.CellFailed("stopped", code).interrupted for code in (143, 130, -15, -2))
  assert not any(processes.CellFailed("failed", code).interrupted for code in (1, 2, -9))


def test_each_pre_trained_start_says_what_its_pre_training_cost_and_bought():
  cells = [grid_lib.Cell(name="pretrain/ru/fasttext", kind="fasttext", config="", overrides=(), workdir=""),
           grid_lib.Cell(name="pretrain/ru/mlm_b", kind="pretrain", config="", overrides=(), workdir="",
                         needs=("pretrain/ru/fasttext",)),
           grid_lib.Cell(name="t/b/scratch", kind="finetune", config="", overrides=(), workdir="", task="t", body="b",
                         start="scratch"),
           grid_lib.Cell(name="t/b/mlm", kind="finetune", config="", overrides=(), workdir="", task="t", body="b",
                         start="mlm", needs=("pretrain/ru/mlm_b",))]
  grid = grid_lib.Grid(cells=cells, not_applicable=[])
  results = [dict(task="t", body="b", start=start, metric="mcc", dev=dev, test=None, wall_seconds=1.0,
                  cpu_seconds=1.0, examples_seen=10, best_step=5)
             for start, devs in (("scratch", (0.1, 0.2, 0.3)), ("mlm", (0.5, 0.5, 0.5))) for dev in devs]
  pretrain = [dict(name="pretrain/ru/fasttext", wall_seconds=1.0, cpu_seconds=60.0),
              dict(name="pretrain/ru/mlm_b", wall_seconds=1.0, cpu_seconds=120.0)]
  rows = table.rows(grid, results)
  # The masked LM's own cost and the FastText vectors it started from: 3 CPU-minutes.
  assert table.bought(grid, rows, pretrain) == [
      "- t, b, mlm: pre-training took 3.0 CPU-minutes (ru/mlm_b + ru/fasttext) and bought +0.300 dev mcc over "
      f"scratch (Welch's t-test, p {welch_by_hand((0.5, 0.5, 0.5), (0.1, 0.2, 0.3)):.3f})."]
  # An unfinished pre-training cell: no line rather than a cost that leaves it out.
  assert table.bought(grid, rows, pretrain[1:]) == []


@pytest.mark.slow
def test_the_subprocess_runner_trains_scores_skips_and_compiles_a_row_once(tmp_path, monkeypatch):
  """Production's path: launch/train.py then launch/evaluate.py as pinned subprocesses, sharing one
  persistent compilation cache: the row's second seed compiles nothing the first did not."""
  monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
  grid = smoke_grid(tmp_path)
  cache = tmp_path / "compilation_cache"
  runner = functools.partial(processes.run_subprocess, compilation_cache=str(cache))
  only = ["rucola/fasttext/scratch/seed0"]
  cwd = os.getcwd()
  os.chdir(grid_lib.ROOT)  # commands name launch/*.py relative to the repository root
  try:
    report = scheduler.run_grid(grid, only=only, runner=runner, log=lambda line: None)
    assert report["ran"] == only
    result = result_files.read_result(grid.cell(only[0]))
    assert np.isfinite(result["dev"]) and result["cpu_seconds"] > 0 and result["examples_seen"] == 48
    assert result["command"].startswith("python launch/train.py --config=configs/finetune.py:task=rucola,")
    report = scheduler.run_grid(grid, only=only, runner=runner, log=lambda line: None)
    assert report["finished_before"] == only and not report["ran"]
    entries = set(os.listdir(cache))
    assert entries  # the train step, the evaluation and the scoring programs
    report = scheduler.run_grid(grid, only=["rucola/fasttext/scratch/seed1"], runner=runner, log=lambda line: None)
    assert report["ran"] == ["rucola/fasttext/scratch/seed1"]
    assert set(os.listdir(cache)) == entries  # every program of seed 1 was read from the cache
  finally:
    os.chdir(cwd)
  shutil.rmtree(tmp_path / "grid")


@pytest.mark.slow
def test_cells_run_as_submitit_jobs_with_its_local_executor(tmp_path):
  """--cluster: each cell is a submitit job (SLURM in production; the local executor here runs the
  same job as a process of this machine): trained, scored and recorded as the local runner does."""
  grid = smoke_grid(tmp_path)
  only = ["rucola/fasttext/scratch/seed0"]
  cwd = os.getcwd()
  os.chdir(grid_lib.ROOT)  # commands name launch/*.py relative to the repository root
  try:
    executor = cluster.make_executor("local", str(tmp_path / "submitit"), cluster.parse_parameters(["timeout_min=10"]))
    report = scheduler.run_grid(grid, only=only, runner=cluster.SubmititRunner(executor), slots=[[]],
                                log=lambda line: None)
  finally:
    os.chdir(cwd)
  assert report["ran"] == only and scheduler.exit_status(report) == 0
  result = result_files.read_result(grid.cell(only[0]))
  assert np.isfinite(result["dev"]) and result["cpu_seconds"] > 0 and result["examples_seen"] == 48
  assert set(result["splits"]) == {"valid", "valid_out_of_domain"}
  assert os.listdir(tmp_path / "submitit")  # the job's pickles and logs


def test_cluster_flags_are_checked_before_anything_is_submitted(tmp_path):
  with pytest.raises(grid_lib.GridError, match="--cluster=pbs: give one of"):
    cluster.make_executor("pbs", str(tmp_path), {})
  with pytest.raises(grid_lib.GridError, match="'partition' is not key=value"):
    cluster.parse_parameters(["partition"])
  assert cluster.parse_parameters(["timeout_min=30", "slurm_partition=cpu"]) == {"timeout_min": 30,
                                                                                 "slurm_partition": "cpu"}
  if not shutil.which("srun"):  # not a SLURM node: said in one line, before any job
    with pytest.raises(grid_lib.GridError, match="--cluster=slurm: .*SLURM login node"):
      cluster.make_executor("slurm", str(tmp_path), {})


def test_pre_trained_rows_take_independent_pre_trainings_in_turn(tmp_path):
  config = compare_ru.get_config()
  config.tasks, config.bodies, config.starts, config.seeds = ("rucola",), ("lstm",), ("scratch", "fasttext", "mlm"), (0, 1, 2)
  config.task.rucola.extra_starts = ()
  one = grid_lib.expand(config, str(tmp_path))
  config.pretrain_seeds = (0, 1)
  two = grid_lib.expand(config, str(tmp_path))
  # The first pre-training keeps the names and commands of a grid with one.
  shared = {cell.name: cell for cell in one.cells if cell.kind in ("fasttext", "pretrain")}
  assert sorted(shared) == ["pretrain/ru/fasttext", "pretrain/ru/mlm_lstm"]
  assert all(two.cell(name) == cell for name, cell in shared.items())
  second = {cell.name: cell for cell in two.cells if cell.name not in shared and cell.kind != "finetune"}
  assert sorted(second) == ["pretrain/ru/fasttext_seed1", "pretrain/ru/mlm_lstm_seed1"]
  assert second["pretrain/ru/fasttext_seed1"].overrides[-1] == "fasttext.seed=1"
  assert second["pretrain/ru/mlm_lstm_seed1"].overrides[-1] == "seed=1"
  assert second["pretrain/ru/mlm_lstm_seed1"].needs == ("pretrain/ru/fasttext_seed1",)
  assert any("fasttext_seed1/fasttext.bin" in override for override in second["pretrain/ru/mlm_lstm_seed1"].overrides)
  # Fine-tuning seeds 0, 1, 2 read pre-trainings 0, 1, 0; scratch reads none.
  for start, first, other in (("mlm", "pretrain/ru/mlm_lstm", "pretrain/ru/mlm_lstm_seed1"),
                              ("fasttext", "pretrain/ru/fasttext", "pretrain/ru/fasttext_seed1")):
    assert [two.cell(f"rucola/lstm/{start}/seed{seed}").needs for seed in (0, 1, 2)] == [(first,), (other,), (first,)]
  assert all(not two.cell(f"rucola/lstm/scratch/seed{seed}").needs for seed in (0, 1, 2))
  config.pretrain_seeds = (1, 1)
  with pytest.raises(grid_lib.GridError, match=r"pretrain_seeds=\(1, 1\): give distinct seeds"):
    grid_lib.expand(config, str(tmp_path))


def test_an_override_the_config_does_not_have_stops_the_grid_before_any_cell_runs(tmp_path):
  """Grid keys change on the command line (--grid.pretrain.ru.mlm.overrides=...); a mistyped key or
  value is an error naming the cell, the override and the config, before anything runs, and
  --dry_run shows it too, instead of a cell that fails when the grid reaches it."""
  config = compare_ru.get_config()
  config.tasks, config.bodies, config.starts, config.seeds = ("rucola",), ("lstm",), ("scratch", "mlm"), (0,)
  config.task.rucola.extra_starts = ()
  config.pretrain.ru.mlm.overrides = config.pretrain.ru.mlm.overrides + ("train.stepz=10000",)
  grid = grid_lib.expand(config, str(tmp_path))
  calls = []
  with pytest.raises(grid_lib.GridError, match=r"pretrain/ru/mlm_lstm: config configs/ru_mlm\.py.*--config\.train\.stepz: the config has no "
                     r"key 'stepz' in train; did you mean 'steps'\?"):
    scheduler.run_grid(grid, runner=lambda cell, cores, children: calls.append(cell.name), log=lambda line: None)
  assert calls == [] and not os.path.exists(os.path.join(str(tmp_path), "pretrain"))
  with pytest.raises(grid_lib.GridError, match="train.stepz"):
    scheduler.status_lines(grid)
  # A value that is not of the key's type: the same kind of error.
  config.pretrain.ru.mlm.overrides = config.pretrain.ru.mlm.overrides[:-1] + ("train.steps=ten",)
  with pytest.raises(grid_lib.GridError, match=r"--config\.train\.steps=ten: .*int"):
    scheduler.run_grid(grid_lib.expand(config, str(tmp_path)),
                       runner=lambda cell, cores, children: calls.append(cell.name), only=["*/mlm/*"],
                       log=lambda line: None)
  assert calls == []
  # A config file or variant that does not load is its own error, not blamed on an override.
  with pytest.raises(grid_lib.GridError, match=r"^config configs/finetune.py:task=nope: .*variant task='nope'"):
    cell_configs.load_config("configs/finetune.py:task=nope", ("seed=1",))
  with pytest.raises(grid_lib.GridError, match=r"^config configs/nope.py: config file .*nope.py not found"):
    cell_configs.load_config("configs/nope.py", ("seed=1",))


def test_a_resumed_cell_counts_the_cost_of_its_stopped_attempts(tmp_path):
  """A grid stopped between sittings resumes its running cells from their checkpoints; the cost a
  result reports must include the attempt that was stopped (seen: an SST-2 cell resumed at step
  368 of 400 reported 30 CPU-seconds, the resumed part only)."""
  config = compare_ru.get_config()
  config.tasks, config.bodies, config.starts, config.seeds = ("rucola",), ("lstm",), ("fasttext",), (0,)
  config.task.rucola.extra_starts = ()
  grid = grid_lib.expand(config, str(tmp_path))
  attempts = []

  def stopped_then_finished(cell, cores, children):
    attempts.append(cell.name)
    if len(attempts) == 1:
      raise processes.CellFailed(f"{cell.name}: stopped", -15, cpu_seconds=30.0)
    return {"cpu_seconds": 12.0}

  only = ["pretrain/ru/fasttext"]
  report = scheduler.run_grid(grid, runner=stopped_then_finished, only=only, log=lambda line: None)
  assert report["interrupted"] == only and result_files.read_result(grid.cell(only[0])) is None
  report = scheduler.run_grid(grid, runner=stopped_then_finished, only=only, log=lambda line: None)
  result = result_files.read_result(grid.cell(only[0]))
  assert report["ran"] == only and attempts == only * 2
  assert result["cpu_seconds"] == 42.0 and result["attempts"] == 2


# A cell's command as far as stopping goes: says it is ready, then on each SIGTERM notes it (and its
# process group) and exits 143 after a moment, as launch/train.py does once its checkpoint is saved.
STOPPABLE_COMMAND = """
import os, pathlib, signal, sys, time
workdir = pathlib.Path(sys.argv[1])
def stop(number, frame):
  with open(workdir / "signals.txt", "a") as handle:
    handle.write(f"{number} {os.getpgrp()}\\n")
  time.sleep(0.5)  # a second signal passed on would be noted too
  sys.exit(128 + number)
signal.signal(signal.SIGTERM, stop)
(workdir / "ready").touch()
time.sleep(60)
"""


def test_a_sigterm_to_the_grid_reaches_each_running_cell_once_and_nothing_starts_after(tmp_path):
  """Seen: a SIGTERM'd launch/compare.py died at once; its cells ran on orphaned, unlocked (a rerun
  could train the same workdir twice), and their attempts' cost went unrecorded. Now the grid passes
  the signal on once to each running command (each in its own process group, so a signal to the
  grid's group is not received twice, which launch/train.py takes as "stop unsaved"), records the
  stopped attempts, starts nothing more and returns."""
  config = compare_ru.get_config()
  config.tasks, config.bodies, config.starts, config.seeds = ("rucola",), ("lstm",), ("scratch",), (0, 1, 2)
  config.task.rucola.extra_starts = ()
  grid = grid_lib.expand(config, str(tmp_path))
  seeds = [cell for cell in grid.cells if cell.kind == "finetune"]
  parallel = min(2, len(os.sched_getaffinity(0)))
  running, queued = seeds[:parallel], seeds[parallel:]

  def stoppable(cell, cores, children):
    os.makedirs(cell.workdir, exist_ok=True)
    with open(os.path.join(cell.workdir, "log.txt"), "a", encoding="utf-8") as log:
      code, cpu_seconds, _ = processes._run_pinned(["python", "-c", STOPPABLE_COMMAND, cell.workdir], cores, log,
                                                    children)
    raise processes.CellFailed(f"{cell.name}: exited {code}", code, cpu_seconds)

  def signal_the_grid_once_its_cells_run():
    deadline = time.time() + 60
    while not all(os.path.exists(os.path.join(cell.workdir, "ready")) for cell in running):
      assert time.time() < deadline
      time.sleep(0.05)
    os.kill(os.getpid(), signal.SIGTERM)

  handler_before = signal.getsignal(signal.SIGTERM)
  sender = threading.Thread(target=signal_the_grid_once_its_cells_run)
  sender.start()
  report = scheduler.run_grid(grid, parallel=parallel, only=["rucola/*"], runner=stoppable, log=lambda line: None)
  sender.join()
  assert signal.getsignal(signal.SIGTERM) is handler_before  # this process's own handling is back
  assert sorted(report["interrupted"]) == sorted(cell.name for cell in running)
  assert not report["ran"] and not report["failed"]
  # launch/compare.py exits as launch/train.py does: 128 + the signal, so a scheduler requeues it.
  assert report["stop_signal"] == signal.SIGTERM and scheduler.exit_status(report) == 143
  for cell in running:
    with open(os.path.join(cell.workdir, "signals.txt"), encoding="utf-8") as handle:
      received = handle.read().split()
    assert received[0] == str(int(signal.SIGTERM)) and len(received) == 2  # once, not twice
    assert int(received[1]) != os.getpgrp()  # in its own process group
    assert [attempt["exit_code"] for attempt in result_files._earlier_attempts(cell)] == [143]
  assert queued and not any(os.path.exists(os.path.join(cell.workdir, "log.txt")) for cell in queued)


def test_a_start_along_a_pre_training_reads_the_checkpoint_at_its_step_which_the_pre_training_keeps(tmp_path):
  config = compare_ru.get_config()
  config.tasks, config.bodies, config.seeds = ("rucola",), ("transformer",), (0,)
  config.starts, config.task.rucola.extra_starts = ("scratch", "mlm@1000", "mlm", "mlm@3000"), ()
  grid = grid_lib.expand(config, str(tmp_path))
  masked = grid.cell("pretrain/ru/mlm_transformer")
  assert masked.overrides[-1] == "train.keep_steps=(1000, 3000)"
  for start, which in (("mlm", "best"), ("mlm@1000", "1000"), ("mlm@3000", "3000")):
    cell = grid.cell(f"rucola/transformer/{start}/seed0")
    assert cell.needs == (masked.name,) and cell.start == start
    assert f"init.checkpoint={masked.workdir}:{which}" in cell.overrides
  # Without a start along it, the pre-training's command is the one it has always been.
  config.starts = ("scratch", "mlm")
  assert not any("keep_steps" in override
                 for override in grid_lib.expand(config, str(tmp_path)).cell(masked.name).overrides)
  for wrong in ("mlm@", "mlm@x", "fasttext@100", "scratch@5", "bert@100"):
    config.starts = ("scratch", wrong)
    with pytest.raises(grid_lib.GridError, match="is not one of"):
      grid_lib.expand(config, str(tmp_path))


def test_the_converged_grid_has_the_budget_it_states():
  config = compare_ru.get_config("converge")
  grid = grid_lib.expand(config, "/grid")
  finetune = [cell for cell in grid.cells if cell.kind == "finetune"]
  assert sorted({cell.task for cell in finetune}) == ["rucola", "squad_en", "sst2", "upos"]
  rows = {(cell.task, cell.body, cell.start) for cell in finetune}
  for task, body, start in rows:
    seeds = [cell for cell in finetune if (cell.task, cell.body, cell.start) == (task, body, start)]
    assert len(seeds) >= 5
    trials = [cell for cell in grid.cells if cell.kind == "trial" and cell.search_row == f"{task}/{body}/{start}"]
    assert len(trials) == 8  # the same tuning budget for every row
    if start != "scratch":  # pre-trained rows draw on 2 independent pre-trainings
      assert len({cell.needs[0] for cell in seeds}) == 2
  assert {start for _, _, start in rows} >= {"mlm@1000", "mlm@3000", "mlm", "mlm_vmf", "clm", "fasttext", "scratch"}
  # 10x the pre-training (ru_mlm's 1,000 steps and wt2_mlm's 590), keeping the steps read along the way.
  masked = cell_configs.load_config(grid.cell("pretrain/ru/mlm_transformer").config,
                                    grid.cell("pretrain/ru/mlm_transformer").overrides)
  assert masked.train.steps == 10000 and masked.train.keep_steps == (1000, 3000)
  english = grid.cell("pretrain/en/mlm_lstm")
  assert cell_configs.load_config(english.config, english.overrides).train.steps == 5900
  cell = grid.cell("rucola/transformer/scratch/seed0")
  loaded = cell_configs.load_config(cell.config, cell.overrides)
  assert (loaded.train.patience, loaded.train.patience_window, loaded.train.steps) == (6, 3, 4920)


def claim_rows(task="t", curves=False, **devs):
  """table.rows() of one task from {"body__start": dev values}; with `curves`, each seed's learning
  curve is one validation at 4.0 CPU-seconds scoring its final dev."""
  cells, results = [], []
  for key, values in devs.items():
    body, start = key.split("__")
    cells.append(grid_lib.Cell(name=f"{task}/{body}/{start}", kind="finetune", config="", overrides=(), workdir="",
                               task=task, body=body, start=start.replace("_at_", "@")))
    results += [dict(task=task, body=body, start=start.replace("_at_", "@"), metric="mcc", dev=dev, test=None,
                     wall_seconds=1.0, cpu_seconds=1.0, examples_seen=10, best_step=5,
                     **({"curve": [(10, 4.0, dev)]} if curves else {})) for dev in values]
  return table.rows(grid_lib.Grid(cells=cells, not_applicable=[]), results)


def test_each_claim_is_read_by_welchs_test_between_the_rows_it_names():
  rows = claim_rows(fasttext__fasttext=(0.30, 0.31, 0.29, 0.30, 0.32),
                    transformer__scratch=(0.20, 0.22, 0.21, 0.19, 0.20),
                    transformer__fasttext=(0.25, 0.24, 0.26, 0.25, 0.27),
                    transformer__mlm_at_1000=(0.10, 0.25, 0.18, 0.22, 0.12),
                    transformer__mlm=(0.24, 0.26, 0.21, 0.27, 0.22),
                    lstm__scratch=(0.26, 0.27, 0.25, 0.26, 0.28))
  claims = {claim["claim"]: claim for claim in table.claims.task_claims(rows)}
  by = lambda body, start: next(row for row in rows if (row["body"], row["start"]) == (body, start))
  # The baseline beats the best transformer row (fasttext start) at p < 0.05: the claim holds.
  beat = claims["No transformer beat FastText"]
  assert beat["verdict"] == "holds"
  assert beat["p"] == pytest.approx(welch_by_hand(by("fasttext", "fasttext")["devs"], by("transformer", "fasttext")["devs"]))
  # The BiLSTM's 0.264 against the transformer's 0.254: not separable at 5 seeds.
  rnn = claims["Conventional RNNs / TCNs beat transformers"]
  assert rnn["p"] == pytest.approx(welch_by_hand(by("lstm", "scratch")["devs"], by("transformer", "fasttext")["devs"]))
  assert rnn["verdict"] == ("holds" if rnn["p"] < 0.05 else "undecided")
  # Every pre-trained transformer row beats scratch? mlm@1000's spread keeps it inseparable: not all gain.
  silver = claims["Pre-training is not a silver bullet"]
  assert silver["verdict"] == "undecided" and silver["detail"].startswith("2 of 3 pre-trained rows beat")
  more = claims["More pre-training pays (transformer, mlm: step 1000 -> its best)"]
  assert more["p"] == pytest.approx(welch_by_hand(by("transformer", "mlm")["devs"], by("transformer", "mlm@1000")["devs"]))
  # A pre-trained row below scratch at p < 0.05 makes "no silver bullet" hold; all above makes it fail.
  worse = claim_rows(transformer__scratch=(0.20, 0.22, 0.21), transformer__mlm=(0.05, 0.06, 0.04),
                     transformer__fasttext=(0.30, 0.31, 0.32))
  assert {c["claim"]: c["verdict"] for c in table.claims.task_claims(worse)}["Pre-training is not a silver bullet"] == "holds"
  better = claim_rows(transformer__scratch=(0.20, 0.22, 0.21), transformer__mlm=(0.30, 0.31, 0.29))
  assert {c["claim"]: c["verdict"] for c in table.claims.task_claims(better)}["Pre-training is not a silver bullet"] == "fails"
  lines = table.claims.reading(rows)
  assert lines[1] == "- **t** (dev mcc):" and any("No transformer beat FastText: **holds**" in line for line in lines)


def test_the_cost_to_reach_the_baselines_score_is_read_from_the_learning_curves():
  curves = [[(10, 5.0, 0.1), (20, 9.0, 0.3), (30, 12.0, 0.4)], [(10, 4.0, 0.35), (20, 8.0, 0.2)],
            [(10, 6.0, 0.1), (20, 11.0, 0.2)]]
  assert table.seconds_to_reach(curves, 0.3) == (pytest.approx((9.0 + 4.0) / 2), 2)
  seconds, reached = table.seconds_to_reach(curves, 0.9)
  assert math.isnan(seconds) and reached == 0


def test_the_cost_column_says_never_only_where_the_task_has_a_baseline_to_reach():
  with_baseline = claim_rows(curves=True, fasttext__fasttext=(0.30, 0.32), transformer__scratch=(0.20, 0.22))
  transformer = next(row for row in with_baseline if row["body"] == "transformer")
  assert transformer["reached_baseline"] == 0 and "| never (0/2) |" in table.markdown(with_baseline, [])
  # A grid without the FastText baseline row has no target: the column is empty, not "never".
  without = claim_rows(curves=True, fasttext__scratch=(0.30, 0.32), transformer__scratch=(0.20, 0.22))
  assert all(row["reached_baseline"] is None for row in without)
  assert "never" not in table.markdown(without, [])


def test_a_cell_stopped_by_patience_counts_the_steps_up_to_its_last_validation(tmp_path):
  # Patience stops a run at a validation (step 9 here) after its last logged step (8).
  from jaxlm import checkpoint
  config = cell_configs.load_config("configs/finetune.py:task=rucola,body=fasttext,start=scratch,smoke")
  checkpoint.write_workdir(str(tmp_path), config, run={"task": "classification"})
  with open(tmp_path / "metrics.jsonl", "w", encoding="utf-8") as handle:
    for record in ({"step": 8, "kind": "train", "loss": 1.0}, {"step": 6, "kind": "valid", "mcc": 0.1},
                   {"step": 9, "kind": "valid", "mcc": 0.2}):
      handle.write(json.dumps(record) + "\n")
  cell = grid_lib.Cell(name="t/b/s/seed0", kind="finetune", config="", overrides=(), workdir=str(tmp_path))
  assert result_files._steps_and_batch(cell) == (9, {"batch_size": config.train.batch_size,
                                                     "seq_len": config.train.seq_len})
