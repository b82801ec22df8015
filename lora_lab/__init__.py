"""lora_lab: adapter stacking degradation, weight-space merging vs output steering."""

__version__ = "0.1.0"
