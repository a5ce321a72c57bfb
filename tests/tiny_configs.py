"""Tiny random-init backbone configs, one per supported architecture (fast unit tests).

vocab_size covers the all-MiniLM-L6-v2 WordPiece tokenizer used for every tiny model.
"""

from __future__ import annotations

VOCAB = 30522

TINY_CONFIGS: dict[str, dict] = {
    "bert": dict(
        model_type="bert", vocab_size=VOCAB, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
        intermediate_size=37, max_position_embeddings=64, type_vocab_size=2, pad_token_id=0,
    ),
    "roberta": dict(
        model_type="roberta", vocab_size=VOCAB, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
        intermediate_size=37, max_position_embeddings=66, type_vocab_size=1, pad_token_id=0,
        bos_token_id=101, eos_token_id=102,
    ),
    "electra": dict(
        model_type="electra", vocab_size=VOCAB, embedding_size=16, hidden_size=32, num_hidden_layers=3,
        num_attention_heads=4, intermediate_size=37, max_position_embeddings=64, type_vocab_size=2, pad_token_id=0,
    ),
    "distilbert": dict(
        model_type="distilbert", vocab_size=VOCAB, dim=32, n_layers=3, n_heads=4, hidden_dim=37,
        max_position_embeddings=64, pad_token_id=0,
    ),
    "albert": dict(
        model_type="albert", vocab_size=VOCAB, embedding_size=16, hidden_size=32, num_hidden_layers=4,
        num_hidden_groups=1, inner_group_num=1, num_attention_heads=4, intermediate_size=37,
        max_position_embeddings=64, type_vocab_size=2, pad_token_id=0,
    ),
}
