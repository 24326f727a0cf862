"""The transformer's ``transformers`` configuration (saved as ``config.json`` by ``save_pretrained``).

>>> c = TxmonConfig(vocab_sizes=[10, 6], max_len=8)
>>> TxmonConfig.from_dict(c.to_dict()).max_len
8
"""

from __future__ import annotations

from transformers import PretrainedConfig


class TxmonConfig(PretrainedConfig):
    """Sizes of a transaction-sequence encoder: one token per field, ``max_len`` transactions."""

    model_type = "txmon-sequence"

    def __init__(self, vocab_sizes: list[int] | None = None, max_len: int = 16, hidden_size: int = 64,
                 field_size: int = 16, num_layers: int = 2, num_heads: int = 4,
                 intermediate_size: int = 128, dropout: float = 0.1, logit_offset: float = 0.0,
                 numeric_size: int = 0, numeric_mean: list[float] | None = None,
                 numeric_std: list[float] | None = None, **kwargs):
        self.vocab_sizes = list(vocab_sizes or [])
        self.max_len = max_len
        self.hidden_size = hidden_size
        self.field_size = field_size
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.intermediate_size = intermediate_size
        self.dropout = dropout
        # Added to the score logit: undoes the prior shift of training on down-sampled negatives.
        self.logit_offset = logit_offset
        # Per-transaction numeric inputs (models.numeric) and their training-set scaling; 0 = tokens only.
        self.numeric_size = numeric_size
        self.numeric_mean = list(numeric_mean or [0.0] * numeric_size)
        self.numeric_std = list(numeric_std or [1.0] * numeric_size)
        super().__init__(**kwargs)
