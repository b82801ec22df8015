"""Batching text for forward passes: shared by the worlds that score text and the text model handle."""
