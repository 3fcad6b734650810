"""What a run starts from, besides a model's own initialisation.

  fasttext_rows.py          FastText vectors (and a bag's n-gram buckets) as the input layer's rows
  target_vectors.py         an embedding head's fixed table of target vectors
  pretrained_checkpoint.py  a pre-trained workdir's input layer and body (config.init.checkpoint)
"""
