"""The data room: sentiment corpus and split, loan generator, counterfactual swaps."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from twopath.datasets import counterfactuals, loan, sentiment


def test_corpus_shape_and_labels(corpus):
    assert list(corpus.columns)[:2] == ["text", "label"]
    assert 12_500 <= len(corpus) <= 12_900
    assert set(corpus["label"]) == {"negative", "positive"}
    assert corpus["text"].notna().all() and (corpus["text"].str.strip() != "").all()
    assert not corpus["text"].duplicated().any()
    assert 0.3 < (corpus["label"] == "positive").mean() < 0.7


def test_corpus_hash_is_stable():
    h = sentiment.corpus_hash()
    assert h == sentiment.corpus_hash() and len(h) == 16
    int(h, 16)


def test_split_is_deterministic_disjoint_and_stratified(corpus):
    train, test = sentiment.split()
    again_train, again_test = sentiment.split()
    pd.testing.assert_frame_equal(train, again_train)
    pd.testing.assert_frame_equal(test, again_test)
    assert not set(train["text"]) & set(test["text"])
    assert len(train) + len(test) == len(corpus)
    assert len(test) == pytest.approx(0.2 * len(corpus), abs=1)
    assert (train["label"] == "positive").mean() == pytest.approx((test["label"] == "positive").mean(), abs=0.01)
    other_train, _ = sentiment.split(seed=1)
    assert list(other_train["text"]) != list(train["text"])


def test_seed_sentence():
    assert sentiment.SEED_SENTENCE == "The movie was surprisingly good, despite slow pacing."
    assert sentiment.LABELS == ("negative", "positive")


def test_loan_generate_is_deterministic_under_a_seed():
    a, b = loan.generate(2000, seed=0), loan.generate(2000, seed=0)
    pd.testing.assert_frame_equal(a, b)
    c = loan.generate(2000, seed=1)
    assert not a.equals(c)
    assert list(a.columns) == [*loan.FEATURES, "approved"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_loan_generate_values(seed):
    frame = loan.generate(20_000, seed=seed)
    assert 0.3 < frame["approved"].mean() < 0.7
    assert set(frame["approved"]) == {0, 1}
    assert set(frame["employment_type"]) <= set(loan.EMPLOYMENT_TYPES)
    assert frame["credit_score"].between(300, 900).all()
    assert frame["existing_loans"].between(0, 6).all()
    assert frame["age"].between(21, 65).all()
    assert (frame["monthly_income"] > 0).all()


def test_loan_labels_follow_the_rule():
    frame = loan.generate(20_000, seed=0)
    logit = loan.approval_logit(frame)
    assert frame.loc[logit > 3, "approved"].mean() > 0.9
    assert frame.loc[logit < -3, "approved"].mean() < 0.1


def test_approval_logit_of_the_seed_applicant():
    row = pd.DataFrame([loan.SEED_APPLICANT])
    expected = -1.0 + 0.025 * 70 + 1.2 * np.log(70_000 / 40_000) - 0.0 + 0.8
    assert loan.approval_logit(row)[0] == pytest.approx(expected)
    contrast = pd.DataFrame([loan.CONTRAST_APPLICANT])
    assert loan.approval_logit(contrast)[0] == pytest.approx(expected - 0.025 * 120)
    assert loan.CONTRAST_APPLICANT == {**loan.SEED_APPLICANT, "credit_score": 600}


def test_loan_bad_input():
    with pytest.raises(ValueError):
        loan.generate(0)
    with pytest.raises(ValueError, match="employment_type"):
        loan.approval_logit(pd.DataFrame([{**loan.SEED_APPLICANT, "employment_type": "pirate"}]))


def test_loan_split():
    train, test = loan.split()
    assert len(train) == 16_000 and len(test) == 4_000
    full = loan.generate()
    pd.testing.assert_frame_equal(pd.concat([train, test], ignore_index=True), full)
    t2, _ = loan.split()
    pd.testing.assert_frame_equal(train, t2)


def test_sentiment_lexicon_polarity():
    lex = counterfactuals.sentiment_lexicon()
    assert lex["log_odds"].is_monotonic_decreasing
    assert (lex["count"] >= 20).all()
    scores = dict(zip(lex["word"], lex["log_odds"], strict=True))
    assert scores["dull"] < 0 < scores["beautiful"]


def test_swap_sentiment_word_keeps_the_token_length(wordpiece_tokenizer):
    text = sentiment.SEED_SENTENCE
    n_tokens = lambda word: len(wordpiece_tokenizer.tokenize(word))  # noqa: E731
    swap = counterfactuals.swap_sentiment_word(text, True, n_tokens)
    assert swap is not None
    new_text, old, new = swap
    assert new_text != text and old in text and new in new_text
    assert new_text == text.replace(old, new, 1)
    assert n_tokens(old.lower()) == n_tokens(new.lower())
    assert len(wordpiece_tokenizer(new_text)["input_ids"]) == len(wordpiece_tokenizer(text)["input_ids"])
    lex = counterfactuals.sentiment_lexicon()
    scores = dict(zip(lex["word"], lex["log_odds"], strict=True))
    assert scores[old.lower()] > 0 > scores[new.lower()]  # a positive word became a negative one


def test_swap_sentiment_word_respects_preference_and_direction(wordpiece_tokenizer):
    n_tokens = lambda word: len(wordpiece_tokenizer.tokenize(word))  # noqa: E731
    lex = counterfactuals.sentiment_lexicon()
    scores = dict(zip(lex["word"], lex["log_odds"], strict=True))
    text = "A dull and boring film."
    new_text, old, new = counterfactuals.swap_sentiment_word(text, False, n_tokens, prefer=["dull"])
    assert old == "dull" and scores[new] > 0
    assert new_text == text.replace("dull", new)
    assert counterfactuals.swap_sentiment_word("zzz qqq", True, n_tokens) is None
