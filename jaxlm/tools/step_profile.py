"""Where a compiled train step's time goes, instruction by instruction, from jax's profiler.

step_breakdown (jaxlm.tools.benchmark) times the forward pass, the gradient and the optimiser
each as its own program; that misses what only the real step does (its donated buffers updated
in place, or copied where XLA cannot; fusions across the pieces). This runs the compiled step
itself under jax.profiler, reads the trace's per-instruction events (each names its HLO
instruction: args.hlo_op) and labels every instruction of the step's program by the part of
the step its HLO metadata says it comes from:
  forward   under the gradient's linearisation (op_name holds "jvp(")
  backward  its transpose (op_name holds "transpose(")
  outside   neither: the optimiser, the parameter update, a lazy step's row views, metrics
  unlabelled an instruction XLA made without metadata (copies it inserted, for one)
Instructions that only contain others (while, conditional, call) are not summed: their body's
instructions are.
"""

import glob
import gzip
import json
import os
import re
import tempfile
import time

import jax

PARTS = ("forward", "backward", "outside", "unlabelled")
_INSTRUCTION = re.compile(r"^\s*(?:ROOT )?%([\w.\-]+) = (.*)$")
_OP_NAME = re.compile(r'op_name="([^"]*)"')
_CONTAINERS = (" while(", " conditional(", " call(")


def instruction_parts(hlo_text: str) -> dict[str, tuple[str, str]]:
  """{instruction name: (part, op_name)} for every instruction of a compiled program's text
  (compiled.as_text()) that runs as its own event; a container's is left out."""
  parts = {}
  for line in hlo_text.splitlines():
    match = _INSTRUCTION.match(line)
    if not match or any(container in match.group(2) for container in _CONTAINERS):
      continue
    op_name = _OP_NAME.search(match.group(2))
    name = op_name.group(1) if op_name else ""
    part = ("backward" if "transpose(" in name else "forward" if "jvp(" in name
            else "outside" if name else "unlabelled")
    parts[match.group(1)] = (part, name)
  return parts


def _trace_events(folder: str) -> list[dict]:
  """The complete ("X") events of the one perfetto trace jax wrote under `folder`."""
  files = glob.glob(os.path.join(folder, "**", "perfetto_trace.json.gz"), recursive=True)
  if len(files) != 1:
    raise RuntimeError(f"expected one perfetto_trace.json.gz under {folder}, found {files}")
  with gzip.open(files[0], "rt") as handle:
    trace = json.load(handle)
  events = trace["traceEvents"] if isinstance(trace, dict) else trace
  return [event for event in events if event.get("ph") == "X"]


def profile_steps(step_fn, state, batches: list, hlo_text: str, *, top: int = 12) -> tuple:
  """Runs step_fn(state, batch) over `batches` under the profiler (warm them up first: a compile
  would be profiled too); returns (state, profile) with, per step,
    profile_step_seconds: wall time under the profiler (which slows the step a little);
    profile_seconds_by_part: the summed instruction times of each of PARTS (on a CPU with
      several threads, instructions may overlap, so the sum can exceed the wall time);
    profile_top_instructions: the `top` costliest as [name, seconds, part, op_name].
  hlo_text: the compiled step's as_text(), which names its instructions."""
  if not batches:
    raise ValueError("profile_steps needs at least one batch of the compiled step's shapes")
  parts = instruction_parts(hlo_text)
  with tempfile.TemporaryDirectory(prefix="jaxlm-profile-") as folder:
    jax.profiler.start_trace(folder, create_perfetto_trace=True)
    started = time.perf_counter()
    try:
      for batch in batches:
        state, step_metrics = step_fn(state, batch)
        if jax.default_backend() == "cpu":  # as jaxlm.tools.benchmark.time_steps times them
          jax.block_until_ready(step_metrics)
      jax.block_until_ready(state)
    finally:
      seconds = time.perf_counter() - started
      jax.profiler.stop_trace()
    events = _trace_events(folder)
  totals: dict[str, float] = {}
  for event in events:
    name = event.get("args", {}).get("hlo_op")
    if name in parts:
      totals[name] = totals.get(name, 0.0) + event["dur"] * 1e-6 / len(batches)  # microseconds -> s a step
  by_part = {part: 0.0 for part in PARTS}
  for name, spent in totals.items():
    by_part[parts[name][0]] += spent
  costliest = sorted(totals.items(), key=lambda item: -item[1])[:top]
  return state, {
      "profile_step_seconds": seconds / len(batches),
      "profile_seconds_by_part": by_part,
      "profile_top_instructions": [[name, spent, *parts[name]] for name, spent in costliest],
  }
