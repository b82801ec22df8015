"""Evaluation: batched probes of a model on a world, and the metrics built on them."""
