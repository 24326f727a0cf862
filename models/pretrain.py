"""Self-supervised pre-training: masked-field modelling on unlabeled transaction sequences.

A random ``mask_prob`` share of the field tokens of real (non-padding) positions is replaced by
``MASK``; the model predicts each hidden value from the rest of the transaction and its history.
Labels are scarce and late; transactions are plentiful — this is how the encoder learns what normal
looks like before it ever sees a fraud label.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from models.dataset import Replayed
from models.modeling import TxmonModel
from models.progress import progress_bar
from models.tokenise import MASK, PAD, RESERVED


@dataclass
class PretrainConfig:
    epochs: int = 1
    batch_size: int = 256
    learning_rate: float = 1e-3
    mask_prob: float = 0.15
    max_rows: int = 30_000  # per epoch; a sample is enough to learn the field structure
    seed: int = 0


def mask_tokens(tokens: torch.Tensor, prob: float,
                generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(masked tokens, boolean mask of what was hidden); never hides padding or reserved ids."""
    hide = (torch.rand(tokens.shape, generator=generator) < prob) & (tokens >= RESERVED)
    hide &= (tokens[:, :, :1] != PAD)
    return tokens.masked_fill(hide, MASK), hide


def masked_field_loss(model: TxmonModel, tokens: torch.Tensor, hide: torch.Tensor,
                      masked: torch.Tensor) -> torch.Tensor:
    logits = model.field_logits(masked)
    losses = []
    start = 0
    for f, size in enumerate(model.config.vocab_sizes):
        sel = hide[:, :, f]
        if sel.any():
            losses.append(F.cross_entropy(logits[..., start:start + size][sel], tokens[:, :, f][sel]))
        start += size
    return torch.stack(losses).mean() if losses else logits.sum() * 0.0


def pretrain(model: TxmonModel, data: Replayed, rows: np.ndarray, config: PretrainConfig,
             show_progress: bool = True) -> dict[str, float]:
    """Masked-field pre-training on ``rows`` of ``data``; returns the last epoch's mean loss."""
    rng = np.random.default_rng(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=0.01)
    model.train()
    loss_mean = float("nan")
    for epoch in range(config.epochs):
        take = rng.permutation(rows)[: config.max_rows]
        batches = [take[i:i + config.batch_size] for i in range(0, len(take), config.batch_size)]
        total = 0.0
        with progress_bar(f"pre-train epoch {epoch + 1}/{config.epochs}", len(batches),
                          show_progress) as advance:
            for idx in batches:
                tokens = torch.from_numpy(data.batch(idx))
                masked, hide = mask_tokens(tokens, config.mask_prob, gen)
                loss = masked_field_loss(model, tokens, hide, masked)
                opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                total += loss.item()
                advance(1)
        loss_mean = total / max(len(batches), 1)
    model.eval()
    return {"pretrain_loss": loss_mean}
