"""Training and scoring a run: knowing no task, no model family and no head.

  experiments.py  what a run trains (task, model, optimiser, mesh), its state and shardings, the first state
  run_start.py    a run's first state in its workdir: init and starts, or its checkpoint resumed
  steps.py        the data-parallel train step (gradient accumulation, the NaN guard's skip)
  sparse_rows.py  sparse embedding updates: the step's view of the table rows a batch reads
  evaluation.py   the eval and predict steps, and passes over a split
  loop.py         the loop: logs, validation, checkpoints, signals, early stopping, the NaN guard
  optim.py        optax optimisers and schedules from config.optim
  evaluate.py     a workdir's checkpoint restored and scored on its splits
  predict.py      a workdir's predictions for a split or a file
"""
