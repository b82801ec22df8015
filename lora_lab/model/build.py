"""Small Hugging Face causal LMs built from config: no download, ordinary HF classes."""

from __future__ import annotations

import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, PreTrainedModel

from ..config import Arch, ModelConfig


# GPT-2's activation, the tanh approximation of GELU, computed by torch's fused kernel rather than
# GPT-2's default Python expression ("gelu_new"): the same function to float rounding, ~10% faster
# pretraining and ~25% faster evaluation at the default size (measured on 2 CPU cores).
ACT = "gelu_pytorch_tanh"


def build_model(cfg: ModelConfig, tokenizer, seed: int) -> PreTrainedModel:
    """A freshly initialised model whose vocabulary is `tokenizer`'s; init is seeded."""
    ids = dict(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    d_ff = cfg.d_ff or 4 * cfg.d_model
    if cfg.arch == Arch.gpt2:
        hf_cfg = GPT2Config(
            n_positions=cfg.max_len, n_embd=cfg.d_model, n_layer=cfg.n_layer, n_head=cfg.n_head, n_inner=d_ff,
            resid_pdrop=cfg.dropout, embd_pdrop=cfg.dropout, attn_pdrop=cfg.dropout, **ids,
            activation_function=ACT,
        )
        cls = GPT2LMHeadModel
    elif cfg.arch == Arch.llama:
        hf_cfg = LlamaConfig(
            hidden_size=cfg.d_model, intermediate_size=d_ff, num_hidden_layers=cfg.n_layer,
            num_attention_heads=cfg.n_head, num_key_value_heads=cfg.n_head, max_position_embeddings=cfg.max_len,
            attention_dropout=cfg.dropout, tie_word_embeddings=True, **ids,
        )
        cls = LlamaForCausalLM
    else:  # unreachable: Arch is validated at compose time
        raise ValueError(f"model.arch: unknown {cfg.arch!r}, valid: {[a.value for a in Arch]}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = cls(hf_cfg)
    return model.float()
