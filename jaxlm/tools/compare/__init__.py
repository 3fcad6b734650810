"""Does pre-training pay? A grid of fine-tuning runs (task x body x start x seed) and its table.

grid.py expands a grid config (configs/compare_ru.py) into cells, each one command of
launch/train.py (or launch/fasttext.py for a FastText start); cell_configs.py builds each
cell's config as launch/train.py would, so a mistyped override stops the grid before it runs;
scheduler.py runs the cells, pre-training first, through processes.py (each cell's commands
locked, pinned to their cores and stopped with the grid) or cluster.py (each cell a submitit job); result_files.py writes and checks
each finished cell's result.json; search.py gives every row the same number of tuning trials
(an Optuna study per row, its trials run as cells before the row's seeds); statistics.py gives
the intervals and tests the table reports; table.py turns those files into Markdown, CSV and a plot.
"""
