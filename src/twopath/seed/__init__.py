"""The seed application: what the document twopath started from claims, measured.

* :mod:`~twopath.seed.zoo` and :mod:`~twopath.seed.decoder` — the reference models twopath
  trains itself (MiniLM fine-tuned on Rotten Tomatoes, a tiny BERT, a GPT-2-style decoder
  trained from scratch, the loan and HMDA MLPs), cached under ``$TWOPATH_CACHE``;
* :mod:`~twopath.seed.tasks` — the reference tasks behind ``twopath reproduce``;
* :mod:`~twopath.seed.findings`, :mod:`~twopath.seed.claims` — the seed's claims, each with its
  measurement, the rule that decides and the verdict;
* :mod:`~twopath.seed.behaviour` — the loan behaviour tests (720 vs 600 credit score).

The library rooms (runtime, attribution, mechanistic, comparisons, datasets, reports) never
import this package; it builds on them like any user's application would.
"""
