"""Shared, session-scoped fixtures. Everything runs offline on CPU."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("NUMBA_DISABLE_JIT", "1")  # as the CLI does: shap runs bit-identical without the ~10 s compile
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the CLI does: idle torch threads sleep, not spin

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from tests.helpers import ARCHITECTURES, build_bpe_tokenizer, build_tiny_model, single_threaded  # noqa: E402

# The unit tests run tiny models for which thread start-up costs more than the arithmetic (10x
# slower with 2 threads on a busy 2-core machine); the end-to-end tests keep torch's default.
_SINGLE_THREADED = {"test_types.py", "runtime", "attribution", "mechanistic", "datasets", "comparisons", "reports"}


@pytest.fixture(autouse=True)
def _single_threaded_torch(request):
    try:
        top = Path(request.node.path).relative_to(Path(__file__).parent).parts[0]
    except ValueError:
        top = ""
    if top not in _SINGLE_THREADED:
        yield
        return
    with single_threaded():
        yield


@pytest.fixture(scope="session", autouse=True)
def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


@pytest.fixture(scope="session")
def corpus():
    from twopath.datasets import sentiment

    return sentiment.load_corpus()


@pytest.fixture(scope="session")
def background_texts(corpus) -> list[str]:
    from twopath.datasets import sentiment

    _, test = sentiment.split()
    return [t for t in test["text"] if len(t.split()) < 25][:6]


@pytest.fixture(scope="session")
def wordpiece_tokenizer():
    from transformers import AutoTokenizer

    from twopath.seed import zoo

    return AutoTokenizer.from_pretrained(zoo.minilm_path())


@pytest.fixture(scope="session")
def bpe_tokenizer(tmp_path_factory, corpus):
    texts = list(corpus["text"].iloc[:200])
    return build_bpe_tokenizer(tmp_path_factory.mktemp("bpe"), texts)


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory, wordpiece_tokenizer, bpe_tokenizer) -> dict[str, Path]:
    """Three randomly initialised tiny classifiers saved with their tokenizers."""
    root = tmp_path_factory.mktemp("tiny")
    dirs = {}
    for arch in ARCHITECTURES:
        tokenizer = bpe_tokenizer if arch == "roberta" else wordpiece_tokenizer
        model = build_tiny_model(arch, tokenizer)
        dirs[arch] = root / arch
        model.save_pretrained(dirs[arch])
        tokenizer.save_pretrained(dirs[arch])
    return dirs


@pytest.fixture(scope="session", params=ARCHITECTURES)
def tiny_text(request, tiny_dirs, background_texts):
    """Each tiny architecture loaded through ``HFTextClassifier.from_pretrained``."""
    from twopath.runtime.text import HFTextClassifier

    adapter = HFTextClassifier.from_pretrained(tiny_dirs[request.param])
    adapter.background = list(background_texts)
    return adapter


@pytest.fixture(scope="session")
def tiny_sentiment(background_texts):
    """The trained 2-layer BERT reference model (cached in ~/.cache/twopath)."""
    from twopath.runtime.text import HFTextClassifier
    from twopath.seed import zoo

    adapter = HFTextClassifier.from_pretrained(zoo.tiny_sentiment_model())
    adapter.background = list(background_texts)
    return adapter


@pytest.fixture(scope="session")
def loan_dir() -> Path:
    from twopath.seed import zoo

    return zoo.loan_model()


@pytest.fixture(scope="session")
def loan_background():
    from twopath.datasets import loan

    return loan.split()[0].sample(200, random_state=0)


@pytest.fixture(scope="session")
def loan_adapter(loan_dir, loan_background):
    """The synthetic-loan MLP with a 200-applicant background. Do not change its background."""
    from twopath.runtime.tabular import TorchTabularClassifier

    adapter = TorchTabularClassifier.load(loan_dir)
    adapter.background = loan_background
    return adapter
