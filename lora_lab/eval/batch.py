"""Right-padded batches for any Hugging Face tokenizer (evaluation forward passes, latency)."""

from __future__ import annotations

from typing import Sequence, Tuple

import torch


def encode(tok, texts: Sequence[str], limit: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids and mask, each text starting with the tokenizer's BOS when it has one."""
    rows = []
    for t in texts:
        ids = tok(t)["input_ids"]
        if tok.bos_token_id is not None and (not ids or ids[0] != tok.bos_token_id):
            ids = [tok.bos_token_id] + ids
        rows.append(ids[:limit])
    width = max(len(r) for r in rows)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.bool)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = True
    return ids, mask


def position_limit(model) -> int:
    return int(getattr(model.config, "n_positions", None) or getattr(model.config, "max_position_embeddings", 1024))
