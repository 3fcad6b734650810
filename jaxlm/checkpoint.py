"""Orbax checkpoints that resume themselves, and the guard against mixing runs.

Layout of a workdir:
  config.json      the full config of the run (written once, before any checkpoint)
  checkpoints/N/   Orbax checkpoints: the last `keep_checkpoints` plus the best by
                   validation perplexity (kept by Orbax's preservation policies)
  metrics.jsonl, events.out.tfevents.*   logs
Checkpoints are restored against an abstract target carrying shardings, so a run
saved on 4 devices restores on 1 (and vice versa).
"""

import json
import os

import jax
import ml_collections
import orbax.checkpoint as ocp
from orbax.checkpoint.checkpoint_managers import preservation_policy

CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"


class IncompatibleWorkdirError(ValueError):
  """The workdir holds a run whose model differs from the requested one."""


def signature(config: ml_collections.ConfigDict) -> dict:
  """What must match for a checkpoint to be resumed: the model and the corpus.

  Through JSON, as config.json stores it, so a tuple in the config equals the list saved.
  """
  return json.loads(json.dumps({"model": config.model.to_dict(), "corpus": config.data.corpus}))


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


def manager(workdir: str, keep: int, *, read_only: bool = False) -> ocp.CheckpointManager:
  policy = preservation_policy.AnyPreservationPolicy([
      preservation_policy.LatestN(n=keep),
      # Orbax keeps the last n after sorting; reverse=True puts the lowest perplexity last.
      preservation_policy.BestN(get_metric_fn=lambda metrics: metrics["valid_perplexity"], reverse=True, n=1),
  ])
  # best_fn also makes Orbax write each step's metrics beside it (read back by best_step).
  options = ocp.CheckpointManagerOptions(preservation_policy=policy, best_fn=lambda m: m["valid_perplexity"],
                                         best_mode="min", create=not read_only,
                                         read_only=read_only, enable_async_checkpointing=False)
  return ocp.CheckpointManager(os.path.abspath(os.path.join(workdir, CHECKPOINT_DIR)), options=options)


def save(checkpoint_manager: ocp.CheckpointManager, step: int, state, valid_perplexity: float) -> None:
  checkpoint_manager.save(step, args=ocp.args.StandardSave(state),
                          metrics={"valid_perplexity": float(valid_perplexity)})
  checkpoint_manager.wait_until_finished()


def best_step(checkpoint_manager: ocp.CheckpointManager) -> int | None:
  """The kept step with the lowest validation perplexity."""
  return checkpoint_manager.best_step()


def restore(checkpoint_manager: ocp.CheckpointManager, step: int, abstract_state):
  """abstract_state: jax.ShapeDtypeStruct leaves with shardings (see train.abstract_state)."""
  try:
    return checkpoint_manager.restore(step, args=ocp.args.StandardRestore(abstract_state))
  except (ValueError, KeyError) as error:
    raise IncompatibleWorkdirError(
        f"checkpoint {checkpoint_manager.directory}/{step} does not match the model and optimiser built "
        f"from the config (model, optim.name and optim.clip_norm must match the run's): {error}") from error
