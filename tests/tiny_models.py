"""Tiny, randomly initialised Hugging Face models of many families, built fully offline.

Every model has 2 blocks, hidden size 32, 4 attention heads (head_dim 8; llama, mistral and qwen2
use 2 key-value heads, i.e. grouped-query attention), an MLP of width 48, 128 positions,
``num_labels=2`` with ``id2label`` {0: "negative", 1: "positive"} and eager attention. A large
initializer range (0.3) makes the random models opinionated: outputs differ visibly between inputs.

Tokenizers are byte-level BPE tokenizers trained on ``CORPUS``:

* encoder families share a RoBERTa-style tokenizer: ``<s> ... </s>``, ``<pad>``=1, ``<unk>``,
  ``<mask>``, offsets trimmed to the word (no leading space);
* decoder families share a GPT-2-style tokenizer: one ``<|endoftext|>`` token (the last id, as in
  GPT-2) that is BOS, EOS and UNK, nothing added around the text, **no pad token**, and offsets
  that, as in GPT-2, include a word's leading space.

Pad ids in the configs: encoders use the tokenizer's ``<pad>``. Decoders set
``config.pad_token_id`` to the ``<|endoftext|>`` id, as fine-tuned GPT-2/Llama classifiers on the
hub do (``tokenizer.pad_token = tokenizer.eos_token`` in the usual fine-tuning recipe), while the
tokenizer itself keeps ``pad_token=None`` like the base checkpoints. It is set after construction,
so the ``<|endoftext|>`` embedding is not zeroed as a padding row. ``*ForSequenceClassification``
needs the config's pad id to find the last non-pad token and raises for batches > 1 without it;
set ``model.config.pad_token_id = None`` to mimic a raw base checkpoint.

Reloading: ``AutoTokenizer`` gives ``TokenizersBackend`` (the fast base class), except for a saved
qwen2 checkpoint, which always loads as ``Qwen2Tokenizer`` (same vocabulary, merges and special
tokens; Qwen's pre-tokenizer regex and NFC; identical tokens on ``CORPUS``).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    PreTrainedTokenizerFast,
)

ENCODERS = ("bert", "roberta", "xlm-roberta", "distilbert", "electra", "albert", "deberta-v2")
DECODERS = ("gpt2", "gpt_neox", "llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "phi", "phi3", "opt")
FAMILIES: tuple[str, ...] = ENCODERS + DECODERS

TEXT = "The movie was surprisingly good, despite slow pacing."
ID2LABEL = {0: "negative", 1: "positive"}
LABEL2ID = {v: k for k, v in ID2LABEL.items()}
MAX_LEN = 128
HIDDEN, LAYERS, HEADS, KV_HEADS, MLP, INIT = 32, 2, 4, 2, 48, 0.3
EOT = "<|endoftext|>"

CORPUS = (
    TEXT,
    "The movie was good.",
    "The movie was bad.",
    "The movie was great, despite the slow start.",
    "The movie was boring and the pacing was slow.",
    "The acting was surprisingly good.",
    "The plot was surprisingly bad.",
    "Despite the great cast, the movie was awful.",
    "Despite slow pacing, the story was good.",
    "A great film with a good story.",
    "An awful film with a boring plot.",
    "The pacing was slow and the ending was bad.",
    "It was a good movie, not a great one.",
    "It was a bad movie and a boring one.",
    "The ending was great and the acting was good.",
    "What an awful, boring movie.",
    "What a great, surprisingly funny film.",
    "The dialogue was bad, the pacing was awful.",
    "I loved the movie, the cast was great.",
    "I hated the movie, the plot was boring.",
    "The music was good but the story was slow.",
    "The story was good, despite a slow middle.",
    "Boring scenes and bad acting ruined it.",
    "Great scenes and good acting saved it.",
    "The movie was not good, it was awful.",
    "The movie was not bad, it was great.",
    "The film was surprisingly boring.",
    "The film was surprisingly great.",
    "Slow, boring and awful.",
    "Funny, moving and great.",
    "The characters were dull and the jokes were bad.",
    "The characters were charming and the jokes were good.",
    "A terrible script and awful pacing.",
    "A wonderful script and great pacing.",
    "I would watch this movie again, it was good.",
    "I would not watch this movie again, it was bad.",
    "The slow pacing made the movie boring.",
    "The quick pacing made the movie great.",
    "Overall the movie was good, despite a few bad moments.",
    "Overall the movie was awful, despite a few good moments.",
)


def build_tokenizer(directory: Path, decoder: bool) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer on ``CORPUS`` and save it in ``directory``.

    ``AutoTokenizer.from_pretrained(directory, local_files_only=True)`` loads an equivalent one.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    specials = [] if decoder else ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1000, min_frequency=2, special_tokens=specials, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    backend.train_from_iterator(CORPUS, trainer)
    if decoder:  # GPT-2: <|endoftext|> is the last id; offsets keep the leading space
        backend.add_special_tokens([EOT])
        backend.post_processor = processors.ByteLevel(trim_offsets=False)
        tokens: dict[str, Any] = {"bos_token": EOT, "eos_token": EOT, "unk_token": EOT}
    else:  # RoBERTa: <s> A </s> and <s> A </s></s> B </s>, offsets trimmed to the word
        backend.post_processor = processors.RobertaProcessing(
            ("</s>", 2), ("<s>", 0), trim_offsets=True, add_prefix_space=False
        )
        tokens = {"bos_token": "<s>", "eos_token": "</s>", "sep_token": "</s>", "cls_token": "<s>",
                  "unk_token": "<unk>", "pad_token": "<pad>", "mask_token": "<mask>"}
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, model_max_length=MAX_LEN, **tokens)
    _save_tokenizer(tokenizer, directory)
    return tokenizer


def _save_tokenizer(tokenizer: PreTrainedTokenizerFast, directory: Path) -> None:
    """``save_pretrained``, declaring a missing pad token as ``"pad_token": null`` (as Llama-2 does).

    Without it ``AutoTokenizer`` gives a qwen2 checkpoint ``Qwen2Tokenizer``'s default pad token.
    """
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(directory)
    if tokenizer.pad_token is None:
        path = directory / "tokenizer_config.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), "pad_token": None}, indent=2))


def _config_kwargs(family: str, tokenizer: Any) -> dict[str, Any]:
    """Size and special-token settings in each family's own config vocabulary."""
    bert_like = {"hidden_size": HIDDEN, "num_hidden_layers": LAYERS, "num_attention_heads": HEADS,
                 "intermediate_size": MLP, "max_position_embeddings": MAX_LEN,
                 "initializer_range": INIT}
    llama_like = {**bert_like, "num_key_value_heads": HEADS, "head_dim": HIDDEN // HEADS}
    sizes: dict[str, dict[str, Any]] = {
        "bert": bert_like,
        # positions start after the pad id (1), so 128 tokens need 130 rows, like RoBERTa's 514
        "roberta": {**bert_like, "max_position_embeddings": MAX_LEN + 2},
        "xlm-roberta": {**bert_like, "max_position_embeddings": MAX_LEN + 2},
        "distilbert": {"dim": HIDDEN, "n_layers": LAYERS, "n_heads": HEADS, "hidden_dim": MLP,
                       "max_position_embeddings": MAX_LEN, "initializer_range": INIT},
        # factorised embeddings (embedding_size < hidden_size), like electra-small and ALBERT
        "electra": {**bert_like, "embedding_size": 16},
        "albert": {**bert_like, "embedding_size": 16},
        # DeBERTa-v3 style: disentangled relative attention, no absolute positions in the input
        "deberta-v2": {**bert_like, "relative_attention": True, "pos_att_type": ["p2c", "c2p"],
                       "position_buckets": 32, "max_relative_positions": -1,
                       "position_biased_input": False, "norm_rel_ebd": "layer_norm",
                       "share_att_key": True, "pooler_hidden_size": HIDDEN},
        "gpt2": {"n_embd": HIDDEN, "n_layer": LAYERS, "n_head": HEADS, "n_inner": MLP,
                 "n_positions": MAX_LEN, "initializer_range": INIT},
        "gpt_neox": bert_like,
        "llama": {**llama_like, "num_key_value_heads": KV_HEADS},
        "mistral": {**llama_like, "num_key_value_heads": KV_HEADS},
        "qwen2": {**llama_like, "num_key_value_heads": KV_HEADS},
        "gemma": llama_like,
        "gemma2": llama_like,
        "qwen3": {**llama_like, "num_key_value_heads": KV_HEADS},
        "phi": bert_like,
        "phi3": {**llama_like, "num_key_value_heads": KV_HEADS},
        "opt": {"hidden_size": HIDDEN, "num_hidden_layers": LAYERS, "num_attention_heads": HEADS,
                "ffn_dim": MLP, "max_position_embeddings": MAX_LEN, "word_embed_proj_dim": HIDDEN,
                "init_std": INIT},
    }
    if family in ENCODERS:
        special = {"pad_token_id": tokenizer.pad_token_id, "bos_token_id": tokenizer.cls_token_id,
                   "eos_token_id": tokenizer.sep_token_id}
    else:
        eot = tokenizer.convert_tokens_to_ids(EOT)
        special = {"pad_token_id": None, "bos_token_id": eot, "eos_token_id": eot}  # see build_tiny
    return {**sizes[family], **special}


def build_tiny(
    family: str, *, causal_lm: bool = False, seed: int = 0, tokenizer: Any = None
) -> tuple[nn.Module, PreTrainedTokenizerFast]:
    """A tiny ``<X>ForSequenceClassification`` (``<X>ForCausalLM`` if ``causal_lm``), in eval mode.

    ``tokenizer`` defaults to a fresh one of the family's style (see the module docstring);
    ``config.pad_token_id`` is the ``<|endoftext|>`` id for decoders, ``<pad>`` for encoders.
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; expected one of {FAMILIES}")
    if causal_lm and family not in DECODERS:
        raise ValueError(f"{family} is not a decoder family")
    if tokenizer is None:
        with tempfile.TemporaryDirectory() as tmp:
            tokenizer = build_tokenizer(Path(tmp), decoder=family in DECODERS)
    config = AutoConfig.for_model(
        family, vocab_size=len(tokenizer), num_labels=2, id2label=ID2LABEL, label2id=LABEL2ID,
        attn_implementation="eager", **_config_kwargs(family, tokenizer),
    )
    auto = AutoModelForCausalLM if causal_lm else AutoModelForSequenceClassification
    torch.manual_seed(seed)
    model = auto.from_config(config, attn_implementation="eager")
    model.config.architectures = [type(model).__name__]
    if family in DECODERS:  # set after init, as in fine-tuning: the EOT embedding stays nonzero
        model.config.pad_token_id = model.config.eos_token_id
    return model.eval(), tokenizer


def save_tiny(family: str, directory: Path, *, causal_lm: bool = False, seed: int = 0) -> Path:
    """Save a tiny model (safetensors) and its tokenizer in ``directory``; returns ``directory``.

    Reload with ``AutoModelForSequenceClassification`` (or ``AutoModelForCausalLM``)
    ``.from_pretrained(directory, local_files_only=True, attn_implementation="eager")``.
    """
    model, tokenizer = build_tiny(family, causal_lm=causal_lm, seed=seed)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)  # safetensors
    _save_tokenizer(tokenizer, directory)
    return directory
