"""A reference decoder: a small GPT-2 sentiment classifier trained from scratch (cached).

The recipe, fully offline and deterministic for a given seed:

1. **Tokenizer.** A byte-level BPE (GPT-2's pre-tokenizer, decoder and offset trimming) with a
   lower-casing normalizer, trained with the ``tokenizers`` library on the Rotten Tomatoes train
   split only. Its single special token ``<|endoftext|>`` is the bos, eos, pad and unknown token;
   no special token is added to an encoded sentence. It is saved as a fast tokenizer
   (``tokenizer.json``), so ``AutoTokenizer`` loads it back with character offsets. (The generic
   fast class is used on purpose: transformers 5 rebuilds a ``GPT2Tokenizer`` from its vocab and
   merges and would drop the normalizer, so ids would change on reload.)
2. **Model.** A ``GPT2ForSequenceClassification`` (causal self-attention) with ``pad_token_id``
   set to the ``<|endoftext|>`` id. It classifies from the hidden state of the last token that
   is not a pad token, so batches are padded on the **right**, where the position ids of the
   real tokens are unchanged and a padded row gives the logits of the sentence alone. It is
   trained with eager attention; ``config.json`` does not keep that choice, so load it with
   ``attn_implementation="eager"`` to read attention weights (twopath's runtime does).
3. **Training.** From random initialisation (``torch.manual_seed(seed)``) with the shared text
   loop of the model zoo: AdamW, linear warm-up and decay, gradient clipping, seeded shuffling,
   on one torch thread (several threads on a small shared CPU are slower, and one thread makes
   the weights independent of the core count). The held-out accuracy on the fixed test split is
   recorded in the manifest with the training time (about 100 s on one shared CPU core).

The folder is built once under ``$TWOPATH_CACHE`` by the zoo's atomic cache and keyed by the seed,
the corpus hash and every hyper-parameter below, so changing the recipe trains a new model.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

Progress = Callable[[str], None]

NAME = "sentiment-gpt2"
SPECIAL_TOKEN = "<|endoftext|>"
VOCAB_SIZE = 6000
MIN_FREQUENCY = 2
ARCHITECTURE: dict[str, Any] = {
    "n_layer": 4,
    "n_head": 4,
    "n_embd": 128,
    "n_inner": 512,
    "n_positions": 128,
    "activation_function": "gelu",
}
TRAINING: dict[str, Any] = {"epochs": 2, "lr": 1e-3, "batch_size": 32, "max_length": 64}


def train_tokenizer(texts: list[str], vocab_size: int = VOCAB_SIZE) -> Any:
    """A byte-level BPE fast tokenizer trained on ``texts`` (right padding with the eos token)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from tokenizers.trainers import BpeTrainer
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.normalizer = normalizers.Lowercase()  # type: ignore[assignment]
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)  # type: ignore[assignment]
    backend.decoder = decoders.ByteLevel()  # type: ignore[assignment]
    backend.post_processor = processors.ByteLevel(trim_offsets=True)  # type: ignore[assignment]
    trainer = BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=MIN_FREQUENCY,
        special_tokens=[SPECIAL_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=SPECIAL_TOKEN,
        eos_token=SPECIAL_TOKEN,
        unk_token=SPECIAL_TOKEN,
        pad_token=SPECIAL_TOKEN,
        padding_side="right",
        model_max_length=ARCHITECTURE["n_positions"],
    )


def build_model(tokenizer: Any, labels: tuple[str, ...], seed: int) -> Any:
    """A randomly initialised GPT-2 classifier sized by :data:`ARCHITECTURE`."""
    import torch
    from transformers import GPT2Config, GPT2ForSequenceClassification

    special = int(tokenizer.convert_tokens_to_ids(SPECIAL_TOKEN))
    config = GPT2Config(  # type: ignore[call-arg]
        vocab_size=len(tokenizer),
        **ARCHITECTURE,
        bos_token_id=special,
        eos_token_id=special,
        pad_token_id=special,
        use_cache=False,
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
        architectures=["GPT2ForSequenceClassification"],
        attn_implementation="eager",
    )
    torch.manual_seed(seed)
    return GPT2ForSequenceClassification(config)


def decoder_key(seed: int = 0) -> str:
    """The reference decoder's cache key: its seed, the corpus and the whole recipe."""
    from twopath.datasets import sentiment
    from twopath.seed import zoo

    recipe = {"vocab_size": VOCAB_SIZE, "min_frequency": MIN_FREQUENCY, **ARCHITECTURE, **TRAINING}
    return zoo._key("gpt2-scratch", seed, sentiment.corpus_hash(), recipe)


def sentiment_decoder_model(seed: int = 0, say: Progress = print,
                            progress: Callable[[int, int], None] | None = None) -> Path:
    """The reference decoder: a GPT-2 classifier trained from scratch on the corpus (cached)."""
    from twopath.datasets import sentiment
    from twopath.seed import zoo

    key = decoder_key(seed)

    def build(work: Path) -> dict[str, Any]:
        from twopath.runtime.threads import one_thread

        zoo._quiet_transformers()
        train, test = sentiment.split(seed=0)
        with one_thread():  # a small model: faster on one thread, and independent of the core count
            started = time.perf_counter()
            tokenizer = train_tokenizer(list(train["text"]))
            model = build_model(tokenizer, sentiment.LABELS, seed)
            zoo._train_text(model, tokenizer, train, seed=seed, say=say, progress=progress, **TRAINING)
            seconds = time.perf_counter() - started
            accuracy = zoo.text_accuracy(model, tokenizer, test)
        say(f"  held-out accuracy {accuracy:.3f} after {seconds:.0f} s of training")
        model.save_pretrained(work, safe_serialization=True)
        tokenizer.save_pretrained(work)
        return {
            "accuracy": accuracy,
            "seed": seed,
            "data_hash": sentiment.corpus_hash(),
            "n_train": len(train),
            "n_test": len(test),
            "epochs": TRAINING["epochs"],
            "training_seconds": round(seconds, 1),
            "architecture": {"model": "GPT2ForSequenceClassification", **ARCHITECTURE},
            "tokenizer": {"kind": "byte-level BPE, lower-cased", "vocab_size": len(tokenizer)},
            "training": TRAINING,
        }

    return zoo._cached(NAME, key, build, say)
