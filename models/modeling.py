"""The transaction-sequence transformer: a ``transformers`` ``PreTrainedModel`` (save_pretrained /
from_pretrained) over the account's last K transactions, each the projection of its concatenated
field-token embeddings.

Input ``tokens`` (batch, max_len, fields) int64, history left-padded with ``PAD``, the transaction to
score in the last position, and (if ``config.numeric_size``) ``numeric`` (batch, numeric_size) float32
per-transaction aggregates (:mod:`models.numeric`), standardised inside the model, added to the scored
position's embedding and fed to the pooled representation beside the sequence. Outputs the score of
that transaction and a pooled embedding (for drift). The last layer attends from the scored position
only: the score is identical to running every position, at about half the cost of that layer
(scoring speed matters more than symmetry).

>>> import torch
>>> from models.configuration import TxmonConfig
>>> m = TxmonModel(TxmonConfig(vocab_sizes=[8, 8], max_len=4, hidden_size=16, num_heads=2)).eval()
>>> score, emb = m(torch.randint(4, 8, (3, 4, 2)))
>>> tuple(score.shape), tuple(emb.shape)
((3,), (3, 16))
"""

from __future__ import annotations

import math

import torch
from torch import nn
from transformers import PreTrainedModel

from models.configuration import TxmonConfig
from models.tokenise import PAD


class _Block(nn.Module):
    """Pre-norm self-attention + feed-forward; ``last_only`` computes the last position's output."""

    def __init__(self, c: TxmonConfig):
        super().__init__()
        d = c.hidden_size
        self.heads = c.num_heads
        self.head_dim = d // c.num_heads
        self.ln1 = nn.LayerNorm(d)
        self.q = nn.Linear(d, d)
        self.kv = nn.Linear(d, 2 * d)
        self.out = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.ff = nn.Sequential(nn.Linear(d, c.intermediate_size), nn.GELU(),
                                nn.Linear(c.intermediate_size, d))
        self.drop = nn.Dropout(c.dropout)

    def forward(self, x: torch.Tensor, bias: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        b, n, d = x.shape
        h = self.ln1(x)
        xq = x[:, -1:] if last_only else x
        hq = h[:, -1:] if last_only else h
        q = self.q(hq).reshape(b, -1, self.heads, self.head_dim).transpose(1, 2)
        kv = self.kv(h).reshape(b, n, 2, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        k, v = kv[0], kv[1]
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(self.head_dim) + bias, dim=-1)
        ctx = (att @ v).transpose(1, 2).reshape(b, -1, d)
        y = xq + self.drop(self.out(ctx))
        return y + self.drop(self.ff(self.ln2(y)))


class TxmonPreTrainedModel(PreTrainedModel):
    config_class = TxmonConfig
    base_model_prefix = "txmon"

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


class TxmonModel(TxmonPreTrainedModel):
    """Encoder + score head + pooled embedding + masked-field head (pre-training only)."""

    def __init__(self, config: TxmonConfig):
        super().__init__(config)
        d = config.hidden_size
        sizes = config.vocab_sizes
        offsets = torch.tensor([0, *list(torch.tensor(sizes).cumsum(0)[:-1].tolist())], dtype=torch.long)
        self.register_buffer("offsets", offsets)
        # Concatenated small per-field embeddings, projected: cheaper on CPU than summing
        # full-width field embeddings (the gather dominates scoring time) and more expressive.
        self.fields = nn.Embedding(sum(sizes), config.field_size)
        self.project = nn.Linear(len(sizes) * config.field_size, d)
        self.positions = nn.Embedding(config.max_len, d)
        self.blocks = nn.ModuleList(_Block(config) for _ in range(config.num_layers))
        self.ln = nn.LayerNorm(d)
        self.ln_context = nn.LayerNorm(d)
        n_num = config.numeric_size
        if n_num:
            self.register_buffer("numeric_mean", torch.tensor(config.numeric_mean, dtype=torch.float32))
            self.register_buffer("numeric_std", torch.tensor(config.numeric_std, dtype=torch.float32))
            self.numeric = nn.Sequential(nn.Linear(n_num, d), nn.GELU(), nn.Linear(d, d))
        self.pool = nn.Linear((3 if n_num else 2) * d, d)
        self.head = nn.Linear(d, 1)
        self.mfm = nn.Linear(d, sum(sizes))
        self.drop = nn.Dropout(config.dropout)
        self.post_init()

    def set_numeric_scaling(self, mean: list[float], std: list[float]) -> None:
        """Standardisation of the numeric inputs (from the training rows); kept in config and graph."""
        self.config.numeric_mean, self.config.numeric_std = list(mean), list(std)
        self.numeric_mean.copy_(torch.tensor(mean, dtype=torch.float32))
        self.numeric_std.copy_(torch.tensor(std, dtype=torch.float32))

    def _numeric(self, numeric: torch.Tensor | None) -> torch.Tensor | None:
        if not self.config.numeric_size or numeric is None:
            return None
        # Clamped: a wild value (a new currency's amounts, a bot's velocity) cannot blow up the logit.
        return self.numeric(((numeric - self.numeric_mean) / self.numeric_std).clamp(-8.0, 8.0))

    def _embed(self, tokens: torch.Tensor, u: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        b, n, f = tokens.shape
        x = self.project(self.fields(tokens + self.offsets).reshape(b, n, f * self.config.field_size))
        pos = torch.arange(self.config.max_len - n, self.config.max_len, device=tokens.device)
        x = x + self.positions(pos)
        if u is not None:
            x = torch.cat([x[:, :-1], x[:, -1:] + u[:, None]], dim=1)
        x = self.drop(x)
        valid = (tokens[:, :, 0] != PAD).to(x.dtype)
        bias = ((1.0 - valid) * -1e4)[:, None, None, :]
        return x, bias

    def hidden(self, tokens: torch.Tensor) -> torch.Tensor:
        """Final hidden states of every position (batch, max_len, d): for masked-field training."""
        x, bias = self._embed(tokens)
        for block in self.blocks:
            x = block(x, bias)
        return self.ln(x)

    def field_logits(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits over the concatenated field vocabularies at every position."""
        return self.mfm(self.hidden(tokens))

    def logits(self, tokens: torch.Tensor, numeric: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """(score logit (batch,), embedding (batch, d)) of the last position."""
        if self.config.numeric_size and numeric is None:
            raise ValueError("this model takes numeric inputs: pass Replayed.inputs / collate output")
        u = self._numeric(numeric)
        x, bias = self._embed(tokens, u)
        for block in self.blocks[:-1]:
            x = block(x, bias)
        valid = (bias[:, 0, 0, :] == 0).to(x.dtype)[..., None]
        context = self.ln_context((x * valid).sum(1) / valid.sum(1).clamp(min=1.0))
        last = self.ln(self.blocks[-1](x, bias, last_only=True)[:, -1])
        parts = [last, context] if u is None else [last, context, u]
        emb = torch.tanh(self.pool(torch.cat(parts, dim=-1)))
        return self.head(self.drop(emb)).squeeze(-1) + self.config.logit_offset, emb

    def forward(self, tokens: torch.Tensor, numeric: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        logit, emb = self.logits(tokens, numeric)
        return torch.sigmoid(logit), emb
