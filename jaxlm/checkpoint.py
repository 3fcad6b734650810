"""Orbax checkpoints that resume themselves, and the guard against mixing runs.

Layout of a workdir:
  config.json      the full config of the run (written once, before any checkpoint)
  vocabulary.txt   the model's input vocabulary (words or pieces, one per line, in id
                   order), so a fine-tuning run tokenises exactly as this run did
  checkpoints/N/   Orbax checkpoints: the last `keep_checkpoints` plus the best by the
                   task's validation metric (kept by Orbax's preservation policies)
  metrics.jsonl, events.out.tfevents.*   logs
Checkpoints are restored against an abstract target carrying shardings, so a run
saved on 4 devices restores on 1 (and vice versa).
"""

import json
import math
import os

import jax
import ml_collections
import orbax.checkpoint as ocp
from orbax.checkpoint.checkpoint_managers import preservation_policy

CONFIG_FILE = "config.json"
VOCABULARY_FILE = "vocabulary.txt"
CHECKPOINT_DIR = "checkpoints"


class IncompatibleWorkdirError(ValueError):
  """The workdir holds a run whose model differs from the requested one."""


def signature(config: ml_collections.ConfigDict) -> dict:
  """What must match for a checkpoint to be resumed: the model, the task and its data.

  Through JSON, as config.json stores it, so a tuple in the config equals the list saved.
  A config saved before tasks existed has no task section: it was a causal LM.
  """
  from jaxlm import tasks
  identity = {"model": config.model.to_dict(), "task": tasks.task_name(config)}
  if "data" in config:
    identity["corpus"] = config.data.corpus
  return json.loads(json.dumps(identity))


def _differences(saved: dict, requested: dict, prefix: str = "") -> list[str]:
  keys = sorted(set(saved) | set(requested))
  found = []
  for key in keys:
    if key not in saved:
      continue  # a key added to jaxlm after the run was saved; a shape change still fails at restore
    left, right = saved[key], requested.get(key, "<absent>")
    if isinstance(left, dict) and isinstance(right, dict):
      found += _differences(left, right, f"{prefix}{key}.")
    elif left != right:
      found.append(f"{prefix}{key}: saved {left!r}, requested {right!r}")
  return found


def prepare_workdir(workdir: str, config: ml_collections.ConfigDict) -> None:
  """Writes config.json for a new run, or refuses a workdir of an incompatible model.

  Nothing already in the workdir is ever overwritten by a mismatched run.
  """
  os.makedirs(workdir, exist_ok=True)
  config_path = os.path.join(workdir, CONFIG_FILE)
  checkpoints = os.path.join(workdir, CHECKPOINT_DIR)
  has_checkpoints = os.path.isdir(checkpoints) and any(name.isdigit() for name in os.listdir(checkpoints))
  if os.path.exists(config_path):
    saved = load_config(workdir)
    differences = _differences(signature(saved), signature(config))
    if differences and has_checkpoints:
      raise IncompatibleWorkdirError(
          f"workdir {workdir} holds checkpoints of a different model ({'; '.join(differences)}). "
          "Its checkpoints are left untouched: choose a new --workdir, or remove this one yourself.")
  elif has_checkpoints:
    raise IncompatibleWorkdirError(
        f"workdir {workdir} has checkpoints but no {CONFIG_FILE}, so their model is unknown. "
        "Choose a new --workdir.")
  if jax.process_index() == 0:
    temporary = config_path + ".tmp"
    with open(temporary, "w") as handle:
      handle.write(config.to_json(indent=2))
    os.replace(temporary, config_path)


def load_config(workdir: str) -> ml_collections.ConfigDict:
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path} not found: is {workdir} a jaxlm workdir (made by launch/train.py)?")
  with open(path) as handle:
    return ml_collections.ConfigDict(json.load(handle))


def save_words(workdir: str, words: list[str]) -> None:
  """Writes the model's vocabulary beside the checkpoints (process 0, atomically)."""
  if jax.process_index() != 0:
    return
  path = os.path.join(workdir, VOCABULARY_FILE)
  with open(path + ".tmp", "w", encoding="utf-8") as handle:
    handle.write("".join(word + "\n" for word in words))
  os.replace(path + ".tmp", path)


def load_words(workdir: str) -> list[str] | None:
  """The vocabulary saved by save_words, or None for a workdir saved before it existed."""
  path = os.path.join(workdir, VOCABULARY_FILE)
  if not os.path.exists(path):
    return None
  with open(path, encoding="utf-8") as handle:
    return handle.read().split("\n")[:-1]


def metric_key(best_metric: str) -> str:
  """The name a validation metric is saved under beside each checkpoint."""
  return f"valid_{best_metric}"


def manager(workdir: str, keep: int, *, read_only: bool = False, best_metric: str = "perplexity",
            best_mode: str = "min") -> ocp.CheckpointManager:
  """Keeps the last `keep` checkpoints plus the best by validation `best_metric` (lower is
  better for best_mode="min", higher for "max")."""
  if best_mode not in ("min", "max"):
    raise ValueError(f"best_mode={best_mode!r}: use 'min' or 'max'")
  key = metric_key(best_metric)
  worst = math.inf if best_mode == "min" else -math.inf

  def ranked(metrics) -> float:
    """The step's metric, a NaN/Inf one (never saved since issue 12; older workdirs) ranked worst."""
    value = float(metrics[key])
    return value if math.isfinite(value) else worst

  policy = preservation_policy.AnyPreservationPolicy([
      preservation_policy.LatestN(n=keep),
      # Orbax keeps the last n after sorting ascending (reverse=False); reverse=True puts the
      # lowest value last, which is the best for "min".
      preservation_policy.BestN(get_metric_fn=ranked, reverse=best_mode == "min", n=1),
  ])
  # best_fn also makes Orbax write each step's metrics beside it (read back by best_step).
  options = ocp.CheckpointManagerOptions(preservation_policy=policy, best_fn=ranked,
                                         best_mode=best_mode, create=not read_only,
                                         read_only=read_only, enable_async_checkpointing=False)
  return ocp.CheckpointManager(os.path.abspath(os.path.join(workdir, CHECKPOINT_DIR)), options=options)


def save(checkpoint_manager: ocp.CheckpointManager, step: int, state, valid_metrics: dict) -> None:
  """valid_metrics: {metric name: value} of this step's validation (see metric_key)."""
  checkpoint_manager.save(step, args=ocp.args.StandardSave(state),
                          metrics={metric_key(name): float(value) for name, value in valid_metrics.items()})
  checkpoint_manager.wait_until_finished()


def best_step(checkpoint_manager: ocp.CheckpointManager) -> int | None:
  """The kept step with the best validation metric (the manager's best_metric and best_mode)."""
  return checkpoint_manager.best_step()


def restore(checkpoint_manager: ocp.CheckpointManager, step: int, abstract_state):
  """abstract_state: jax.ShapeDtypeStruct leaves with shardings (see train.abstract_state)."""
  try:
    return checkpoint_manager.restore(step, args=ocp.args.StandardRestore(abstract_state))
  except (ValueError, KeyError) as error:
    raise IncompatibleWorkdirError(
        f"checkpoint {checkpoint_manager.directory}/{step} does not match the model and optimiser built "
        f"from the config (model, optim.name and optim.clip_norm must match the run's): {error}") from error
