"""LoRA Composite (Zhong et al. 2024, "Multi-LoRA Composition for Image Generation", §3.3): at every
denoising step each adapter's prediction is made separately and the k predictions are averaged.
The paper averages the classifier-free-guided scores; guidance is linear in the predictions, so
averaging each prediction (conditional and negative alike) before guiding is the same (`routed.py`)."""

from . import routed

routed.register("composite", "LoRA composite: every adapter's prediction at each step, averaged (a denoiser's sampler)")
