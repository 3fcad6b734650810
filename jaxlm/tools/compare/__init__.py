"""Does pre-training pay? A grid of fine-tuning runs (task x body x start x seed) and its table.

grid.py expands a grid config (configs/compare_ru.py) into cells, each one command of
launch/train.py (or launch/fasttext.py for a FastText start), and runs them, pre-training
first; table.py turns the cells' result.json files into Markdown, CSV and a plot.
"""
