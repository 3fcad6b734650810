"""Model FLOPs counted from the program itself: every matrix product in its jaxpr.

Backend cost analyses disagree (XLA:GPU does not count cuBLAS/cuDNN calls the
same way as XLA:CPU counts dots), so utilisation is computed from this count
instead: 2*M*N*K for every dot_general and the equivalent for convolutions,
through scans (times their length), jit/remat/custom-derivative sub-programs and
conditionals (the cheapest branch: jaxlm's conditionals are the adaptive softmax's
rarely taken fall-back to every token, and a lower bound never overstates utilisation).
Elementwise work is not counted, as in the usual definition of model FLOPs utilisation.
"""

import math

import jax
from jax.extend import core as jax_core


def _dot_flops(equation) -> float:
  left, right = (variable.aval for variable in equation.invars[:2])
  (left_contract, _), (left_batch, _) = equation.params["dimension_numbers"]
  contracted = math.prod(left.shape[axis] for axis in left_contract)
  output = math.prod(equation.outvars[0].aval.shape)
  return 2.0 * output * contracted


def _conv_flops(equation) -> float:
  kernel = equation.invars[1].aval
  output = math.prod(equation.outvars[0].aval.shape)
  numbers = equation.params["dimension_numbers"]
  # Each output element is a dot over (input features / groups) x kernel window.
  out_feature_axis = numbers.rhs_spec[0]
  per_output = math.prod(kernel.shape) / kernel.shape[out_feature_axis]
  return 2.0 * output * per_output


def _sub_jaxprs(value):
  if isinstance(value, jax_core.ClosedJaxpr):
    yield value.jaxpr
  elif isinstance(value, jax_core.Jaxpr):
    yield value
  elif isinstance(value, (tuple, list)):
    for item in value:
      yield from _sub_jaxprs(item)


def jaxpr_flops(jaxpr) -> float:
  total = 0.0
  for equation in jaxpr.eqns:
    name = equation.primitive.name
    if name == "dot_general":
      total += _dot_flops(equation)
    elif name == "conv_general_dilated":
      total += _conv_flops(equation)
    elif name == "cond":
      total += min((jaxpr_flops(branch.jaxpr) for branch in equation.params["branches"]), default=0.0)
    else:
      inner = sum(jaxpr_flops(sub) for value in equation.params.values() for sub in _sub_jaxprs(value))
      total += inner * (equation.params["length"] if name == "scan" else 1)
  return total


def function_flops(function, *args, **kwargs) -> float:
  """Matrix-multiply FLOPs of one call of `function` on these arguments (not run)."""
  return jaxpr_flops(jax.make_jaxpr(function, **kwargs)(*args).jaxpr)
