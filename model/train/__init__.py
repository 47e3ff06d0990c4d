"""Contrastive training and evaluation (`clipsearch train`, `clipsearch eval`).

Only the train/eval commands import this package; the indexer and the server never do, so
training-only dependencies stay out of the serving import graph.
"""
