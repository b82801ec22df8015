"""Right-padded batches for any Hugging Face tokenizer (evaluation forward passes, latency)."""

from __future__ import annotations

from typing import List, Sequence, Tuple

import torch


def encode(tok, texts: Sequence[str], limit: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids and mask, each text starting with the tokenizer's BOS when it has one."""
    rows = []
    for t in texts:
        ids = tok(t)["input_ids"]
        if tok.bos_token_id is not None and (not ids or ids[0] != tok.bos_token_id):
            ids = [tok.bos_token_id] + ids
        rows.append(ids[:limit])
    return _pad(tok, rows)


def _pad(tok, rows: Sequence[List[int]]) -> Tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.bool)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = True
    return ids, mask


def start_token(tok) -> int:
    """The token a causal LM scores a text from: its BOS, or its EOS when it has no BOS (bias-bench
    scores GPT-2 after "<|endoftext|>", GPT-2's one token for both)."""
    start = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
    if start is None:
        raise ValueError(f"tokenizer {type(tok).__name__} has neither a BOS nor an EOS token to start a text from")
    return start


def encode_scored(tok, texts: Sequence[str], limit: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids and mask for scoring texts with a causal LM: `start_token`, then the text's
    own tokens (no special token the tokenizer would add, so exactly one start token whether or not
    it adds BOS itself): every token of the text is predicted, the first one too. Rows longer than
    `limit` positions are cut at the end."""
    start = start_token(tok)
    return _pad(tok, [([start] + tok(t, add_special_tokens=False)["input_ids"])[:limit] for t in texts])


def encode_plain(tok, texts: Sequence[str], limit: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids and mask of the texts' own tokens (no special token), cut at `limit`."""
    return _pad(tok, [tok(t, add_special_tokens=False)["input_ids"][:limit] for t in texts])


def position_limit(model) -> int:
    return int(getattr(model.config, "n_positions", None) or getattr(model.config, "max_position_embeddings", 1024))
