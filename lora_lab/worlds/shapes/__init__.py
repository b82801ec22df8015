"""`world=shapes`: small RGB images of glyphs whose colour and style follow a known skew per role,
read back from the pixels by a deterministic decoder (`render.py`); a text-to-image denoiser
(`model=tiny_unet`) is pretrained on them on every seed (`world.py`, `task.py`)."""

from __future__ import annotations

from ...catalog import WorldSpec, register_world
from ...schema import Metric, core_metrics, diversity_metrics
from .config import DEFAULT_N, ShapesWorldConfig

CORE = core_metrics("TV distance to target", "TV distance from base", "TV", "targets", hi=1.0, drift_hi=1.0,
                    collapsible=True)
METRICS = (
    Metric("quality_fidelity", "squared pixel error to the glyph as drawn", "pixel value²", "lower", "quality",
           "Image fidelity", 0.0, 4.0, primary=True,
           help="mean squared pixel difference between each neutral-prompt image, as the family deploys the prompt, "
                "and a clean render of the prompt's role in the colour and style the decoder reads in it: 0 when "
                "every image is the right glyph drawn exactly, whatever its attributes"),
    Metric("quality_kid", "KID to held-out prompts' images", "KID", "lower", "quality", "Held-out image quality",
           help="kernel inception distance (unbiased MMD², cubic polynomial kernel) on pixels between the images "
                "generated for each prompt never trained on and the image it names, mean over those prompts"),
    Metric("quality_validity", "well-formed images (fraction)", "fraction", "higher", "quality", "Image validity",
           0.0, 1.0, help="share of neutral-prompt images the decoder reads as one glyph in one colour and style"),
    *CORE[:3],
    Metric("bias_scene_gap", "per-scene mix, TV distance to target", "TV", "lower", "bias", "Team scenes' mix", 0.0,
           1.0, collapsible=True,
           help="a team scene's objects, each generated in its own region from its own prompt (the pre-processor "
                "assigns their values in the target proportion; other families prompt every region alike): the TV "
                "between each scene's decoded mix and the target, mean over scenes and targets"),
    Metric("control_explicit_acc", "explicit-prompt accuracy", "fraction", "higher", "control", "Controllability", 0.0,
           1.0, collapsible=True, help="a prompt naming a colour or style gets an image with it"),
    *diversity_metrics(),
    CORE[3],
)


def _check(root) -> None:
    """adapters.n within the world's targets, the schedule within adapters.n."""
    from ...checks import require
    from ...config import check_schedule

    w, kind, n = root.world, root.adapters.kind.value, root.adapters.n or DEFAULT_N
    available = w.roles * 2 if kind == "rebalance" else len(w.colours) + len(w.styles)
    require(n <= available, "adapters.n", f"this world has {available} {kind} targets", n)
    check_schedule(root.compose, n, root.eval.after_use)


WORLD = register_world(WorldSpec(
    name="shapes", schema=ShapesWorldConfig,
    open=f"{__name__}.world:ShapesWorld", task=f"{__name__}.task:ShapesTask", metrics=METRICS, models=("denoiser",),
    rewrites=True, negatives=True, collapse="quality_validity", check=_check,
    help="synthetic images with exact ground truth read from the pixels; a text-to-image denoiser is pretrained on it"))
