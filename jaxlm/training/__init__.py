"""Training and scoring a run: knowing no task, no model family and no head.

  train.py     the train state, the data-parallel step, evaluation passes and the loop
  optim.py     optax optimisers and schedules from config.optim
  evaluate.py  a workdir's checkpoint restored and scored on its splits
  predict.py   a workdir's predictions for a split or a file
"""
