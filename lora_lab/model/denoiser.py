"""A small text-to-image denoiser built from diffusers parts (`model=tiny_unet`).

Three swappable parts, as in a Stable Diffusion pipeline: a text encoder over the world's words
(`TextEncoder`, a one-layer transformer), a `diffusers.UNet2DConditionModel` that cross-attends to
it, and a `diffusers.DDIMScheduler` that samples. The model predicts the clean image ("sample"
prediction) under a cosine schedule rescaled to zero terminal SNR (Lin et al. 2024, "Common
Diffusion Noise Schedules and Sample Steps are Flawed", §3.1-3.3: trailing timestep spacing, the
last step from pure noise), the combination that learned the world's glyphs and colour frequencies
fastest of those measured (the README's "The shapes image world" has the numbers).

`TinyDenoiser` is one `nn.Module` holding text encoder and UNet (LoRA and steering address its
sub-modules by name: `unet.down_blocks.0.attentions.0...to_q`), saved as safetensors + JSON.
`DenoiserHandle` is its `contracts.ModelHandle`, and `generate` its sampler (with classifier-free
guidance against a negative prompt where one is given). `DenoisingObjective` is the training loss.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

CONFIG = "denoiser_config.json"
WEIGHTS = "model.safetensors"
TRAIN_STEPS = 1000  # diffusion timesteps of the noise schedule

# A conditioning: a prompt, or (prompt, negative prompt, scale): classifier-free guidance against
# the negative prompt at that scale
Cond = Union[str, Tuple[str, str, float]]


def scheduler(prediction: str):
    """The DDIM sampler and noise schedule every part uses (a fresh object: it holds state)."""
    from diffusers import DDIMScheduler

    return DDIMScheduler(num_train_timesteps=TRAIN_STEPS, beta_schedule="squaredcos_cap_v2", prediction_type=prediction,
                         timestep_spacing="trailing", rescale_betas_zero_snr=True, clip_sample=True)


class TextEncoder(nn.Module):
    """Word embeddings + learned positions + a pre-norm transformer: [batch, words, dim]."""

    def __init__(self, vocab: int, dim: int, layers: int, heads: int, max_len: int):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.pos = nn.Parameter(torch.zeros(max_len, dim))
        layer = nn.TransformerEncoderLayer(dim, heads, 2 * dim, dropout=0.0, batch_first=True, norm_first=True)
        self.layers = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        h = self.embed(input_ids) + self.pos[: input_ids.shape[1]]
        return self.norm(self.layers(h, src_key_padding_mask=~attention_mask.bool()))


class TinyDenoiser(nn.Module):
    """Text encoder + conditional UNet; `forward` is one denoising prediction."""

    def __init__(self, config: Dict[str, Any]):
        from diffusers import UNet2DConditionModel

        super().__init__()
        self.config = dict(config)
        self.sampler_steps, self.guidance = 10, 1.0  # how it is sampled (set from the model config on load; not saved)
        c = self.config
        n = len(c["channels"])
        self.text = TextEncoder(c["vocab"], c["text_dim"], c["text_layers"], c["text_heads"], c["max_len"])
        self.unet = UNet2DConditionModel(
            sample_size=c["image_size"], in_channels=3, out_channels=3, block_out_channels=tuple(c["channels"]),
            down_block_types=("CrossAttnDownBlock2D",) * (n - 1) + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (n - 1),
            layers_per_block=c["layers_per_block"], cross_attention_dim=c["text_dim"],
            attention_head_dim=c["attention_head_dim"], norm_num_groups=min(8, c["channels"][0]))

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def prediction(self) -> str:
        return self.config["prediction"]

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, input_ids: torch.Tensor,
                attention_mask: torch.Tensor) -> torch.Tensor:
        text = self.text(input_ids, attention_mask)
        return self.unet(sample, timestep, encoder_hidden_states=text, encoder_attention_mask=attention_mask).sample

    def save(self, path: Path) -> None:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(Path(path) / WEIGHTS))
        (Path(path) / CONFIG).write_text(json.dumps(self.config, indent=1))

    @classmethod
    def load(cls, path: Path, device: str = "cpu") -> "TinyDenoiser":
        from safetensors.torch import load_file

        model = cls(json.loads((Path(path) / CONFIG).read_text()))
        model.load_state_dict(load_file(str(Path(path) / WEIGHTS)))
        return model.to(device).eval()


def build_denoiser(mcfg, tokenizer, image_size: int, max_len: int, seed: int) -> TinyDenoiser:
    """A freshly initialised denoiser for `tokenizer`'s words; init is seeded."""
    config = {"vocab": len(tokenizer), "image_size": image_size, "max_len": max_len, "channels": list(mcfg.channels),
              "layers_per_block": mcfg.layers_per_block, "attention_head_dim": mcfg.attention_head_dim,
              "text_dim": mcfg.text_dim, "text_layers": mcfg.text_layers, "text_heads": mcfg.text_heads,
              "prediction": mcfg.prediction}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return TinyDenoiser(config).float()


def encode_prompts(tokenizer, prompts: Sequence[str], device=None) -> Tuple[torch.Tensor, torch.Tensor]:
    """(ids, mask) [n, words + 1]: <bos> then the words, right-padded."""
    enc = tokenizer(list(prompts), padding=True, return_tensors="pt")
    if (enc["input_ids"] == tokenizer.unk_token_id).any():
        bad = [p for p in prompts if tokenizer.unk_token_id in tokenizer(p)["input_ids"]]
        raise ValueError(f"prompts with words the text encoder does not know: {bad[:3]}")
    return enc["input_ids"].to(device), enc["attention_mask"].to(device)


@dataclass
class DenoisingObjective:
    """The denoising loss on images with their prompts: x_t from the schedule at a uniform random
    timestep, the model's prediction against its target (clean image, v or noise: the model's
    `prediction`, read through any wrapper such as PEFT's),
    mean squared error. A share `uncond_fraction` of each batch sees the empty prompt (what
    classifier-free guidance contrasts with). Batches are drawn epoch by epoch without replacement."""

    images: torch.Tensor  # [n, 3, H, W] in [-1, 1]
    ids: torch.Tensor  # [n, L]
    mask: torch.Tensor  # [n, L]
    empty: Tuple[torch.Tensor, torch.Tensor]  # the empty prompt's (ids [L], mask [L])
    uncond_fraction: float = 0.0

    def batches(self, batch_size: int, steps: int, seed: int) -> Iterable[Tuple[torch.Tensor, ...]]:
        g = torch.Generator().manual_seed(seed)
        order = torch.empty(0, dtype=torch.long)
        for _ in range(steps):
            while len(order) < batch_size:
                order = torch.cat([order, torch.randperm(len(self.images), generator=g)])
            idx, order = order[:batch_size], order[batch_size:]
            ids, mask = self.ids[idx].clone(), self.mask[idx].clone()
            drop = torch.rand(batch_size, generator=g) < self.uncond_fraction
            ids[drop], mask[drop] = self.empty[0], self.empty[1]
            t = torch.randint(0, TRAIN_STEPS, (batch_size,), generator=g)
            noise = torch.randn(self.images[idx].shape, generator=g)
            yield self.images[idx], ids, mask, t, noise

    def loss(self, model, batch) -> torch.Tensor:
        x0, ids, mask, t, noise = (b.to(model.device) for b in batch)
        a = alphas(model.device)[t].view(-1, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        pred = model(sample=xt, timestep=t, input_ids=ids, attention_mask=mask)
        target = {"sample": x0, "epsilon": noise, "v_prediction": a.sqrt() * noise - (1 - a).sqrt() * x0}[model.prediction]
        return torch.nn.functional.mse_loss(pred, target)


_ALPHAS: Dict[str, torch.Tensor] = {}


def alphas(device) -> torch.Tensor:
    """ᾱ_t of the schedule, [TRAIN_STEPS], on `device`."""
    key = str(device)
    if key not in _ALPHAS:
        _ALPHAS[key] = scheduler("sample").alphas_cumprod.float().to(device)
    return _ALPHAS[key]


def objective(tokenizer, images: np.ndarray, prompts: Sequence[str], uncond_fraction: float = 0.0) -> DenoisingObjective:
    """The denoising objective of images with their prompts (`uncond_fraction`: see `DenoisingObjective`)."""
    ids, mask = encode_prompts(tokenizer, list(prompts) + [""])
    return DenoisingObjective(torch.as_tensor(images), ids[:-1], mask[:-1], (ids[-1], mask[-1]), uncond_fraction)


class DenoiserHandle:
    """`contracts.ModelHandle` of a `TinyDenoiser`: inputs are conditionings (`Cond`)."""

    # LoRA on the UNet's attention projections, as Stable Diffusion LoRAs (PEFT names them by suffix:
    # the text encoder's attention has none of these)
    LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
    HIDDEN_T = 500  # the timestep `hidden` reads the prediction at (half-way: signal and noise both matter)

    def __init__(self, module: TinyDenoiser, tokenizer: Any, steps: int, guidance: float = 1.0, batch_size: int = 512):
        self.module, self.tokenizer, self.steps, self.guidance, self.batch_size = module, tokenizer, steps, guidance, batch_size

    @classmethod
    def of(cls, model: TinyDenoiser, tokenizer: Any) -> "DenoiserHandle":
        """The handle of a loaded denoiser, sampled as its model config says (`pretrain.load` sets them)."""
        return cls(model, tokenizer, model.sampler_steps, model.guidance)

    @property
    def device(self) -> torch.device:
        return self.module.device

    @property
    def size(self) -> int:
        return self.module.config["image_size"]

    def encode(self, inputs: Sequence[Cond]) -> Dict[str, torch.Tensor]:
        ids, mask = encode_prompts(self.tokenizer, [c if isinstance(c, str) else c[0] for c in inputs], self.device)
        return {"input_ids": ids, "attention_mask": mask}

    def lora_targets(self) -> Tuple[List[str], bool]:
        return list(self.LORA_TARGETS), False

    def steer_sites(self) -> Dict[str, Tuple[int, ...]]:
        """Every UNet block's output (down, mid, up), one vector per channel: [channels, 1, 1]."""
        ch = self.module.config["channels"]
        sites = {f"unet.down_blocks.{i}": (c, 1, 1) for i, c in enumerate(ch)}
        sites["unet.mid_block"] = (ch[-1], 1, 1)
        sites.update({f"unet.up_blocks.{i}": (c, 1, 1) for i, c in enumerate(reversed(ch))})
        return sites

    def sampler_step(self, timestep: int) -> int:
        """The index (0: the first, from pure noise) of the sampler step whose timestep is nearest
        `timestep`: which step a forward pass belongs to (`interventions.routed_edit`)."""
        return min(range(len(self.timesteps)), key=lambda i: abs(self.timesteps[i] - timestep))

    @functools.cached_property
    def timesteps(self) -> List[int]:
        """The sampler's timesteps, first (noisiest) to last."""
        sch = scheduler(self.module.prediction)
        sch.set_timesteps(self.steps)
        return sch.timesteps.tolist()

    def tokens(self, inputs: Sequence[Cond]) -> int:
        """Pixels generated: the unit FLOPs are counted per."""
        return len(inputs) * self.size * self.size

    def prompt_tokens(self, inputs: Sequence[Cond]) -> int:
        """Words of the prompts as the text encoder sees them (<bos> included; a negative prompt's
        words too): what a rewrite adds is counted in these."""
        texts = [w for c in inputs for w in ([c] if isinstance(c, str) else [c[0], c[1]])]
        return int(sum(len(t.split()) + 1 for t in texts))

    def noise(self, n: int, seed: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        return torch.randn(n, 3, self.size, self.size, generator=g)

    @torch.inference_mode()
    def hidden(self, inputs: Sequence[Cond]) -> torch.Tensor:
        """[pixels, 3]: the model's clean-image prediction for each prompt from fixed noise at the
        half-way timestep (seeded: the same noise whatever is applied)."""
        enc = self.encode(inputs)
        x0 = self.noise(len(inputs), 0).to(self.device)
        a = alphas(self.device)[self.HIDDEN_T]
        xt = a.sqrt() * x0 + (1 - a).sqrt() * self.noise(len(inputs), 1).to(self.device)
        t = torch.full((len(inputs),), self.HIDDEN_T, device=self.device)
        out = self.module(sample=xt, timestep=t, **enc)
        return out.permute(0, 2, 3, 1).reshape(-1, 3).float()

    @torch.inference_mode()
    def generate(self, conds: Sequence[Cond], seed: int = 0, guidance: Optional[float] = None,
                 module: Optional[nn.Module] = None, noise: Optional[torch.Tensor] = None) -> np.ndarray:
        """[n, 3, H, W] images in [-1, 1] for the conditionings, from `noise` [n, 3, H, W] or else
        seeded noise (image i's depends on `seed` and i alone), by `steps` DDIM steps. A (prompt,
        negative, w) conditioning is guided against its negative: pred = neg + w·(cond − neg) (Ho &
        Salimans 2022, eq. 6); a plain prompt at `guidance` (default the handle's) against the empty
        prompt, and at 1 it is the conditional model alone."""
        model = module if module is not None else self.module
        w = self.guidance if guidance is None else guidance
        out = []
        for lo in range(0, len(conds), self.batch_size):
            part = conds[lo: lo + self.batch_size]
            x = noise[lo: lo + self.batch_size] if noise is not None else self.noise(len(part), seed * 1_000_003 + lo)
            out.append(self._generate(model, part, x, w))
        return np.concatenate(out) if out else np.zeros((0, 3, self.size, self.size), np.float32)

    def _generate(self, model, conds, x, w):
        dev = self.device
        prompts = [c if isinstance(c, str) else c[0] for c in conds]
        negs = [("", w) if isinstance(c, str) else (c[1], c[2]) for c in conds]
        guided = [i for i, (_, s) in enumerate(negs) if s != 1.0]
        ids, mask = encode_prompts(self.tokenizer, prompts + [negs[i][0] for i in guided], dev)
        n, m = len(prompts), len(guided)
        gidx = torch.tensor(guided, dtype=torch.long, device=dev)
        scale = torch.tensor([negs[i][1] for i in guided], device=dev).view(-1, 1, 1, 1)
        sch = scheduler(model.prediction if hasattr(model, "prediction") else self.module.prediction)
        sch.set_timesteps(self.steps)
        x = x.to(dev)

        def predict(xs, t):
            xin = torch.cat([xs, xs[gidx]]) if m else xs
            pred = model(sample=xin, timestep=t.expand(len(xin)).to(dev), input_ids=ids, attention_mask=mask)
            if not m:
                return pred
            cond, neg = pred[:n].clone(), pred[n:]
            cond[gidx] = neg + scale * (cond[gidx] - neg)
            return cond

        for t in sch.timesteps:
            x = sch.step(predict(x, t), t, x).prev_sample
        return x.clamp(-1, 1).cpu().numpy()

    def latency_step(self, inputs: Sequence[Cond], rewrite: Optional[Callable[[Any], Any]] = None,
                     module: Optional[nn.Module] = None) -> Callable[[], Any]:
        """Rewriting `inputs` (if given), encoding them and one sampler step for each (one guided
        denoising prediction from pure noise and the scheduler's update): the unit a text model's
        forward pass is. Every step of a generation does the same work, so the modes' ratios are
        those of whole generations, at a tenth of the time to measure (10 steps)."""
        one = DenoiserHandle(self.module, self.tokenizer, 1, self.guidance, self.batch_size)

        def step():
            batch = [rewrite(c) for c in inputs] if rewrite is not None else list(inputs)
            one.generate(batch, seed=0, module=module)
            if self.device.type == "cuda":
                torch.cuda.synchronize()

        return step
