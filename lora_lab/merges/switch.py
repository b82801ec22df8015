"""LoRA Switch (Zhong et al. 2024, "Multi-LoRA Composition for Image Generation", §3.2): one adapter
active at each denoising step, in turn: adapter (step mod k) at sampler step `step` (`routed.py`)."""

from . import routed

routed.register("switch", "LoRA switch: one adapter per denoising step, in turn (a denoiser's sampler)")
