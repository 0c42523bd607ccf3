"""Python's garbage collector in twopath's own processes: the ``twopath`` command and the
dataset workers (a process pool's or Ray's), never in a process that imports the library.

Importing torch, transformers, shap and scikit-learn and loading a model leave about a million
long-lived objects and no garbage. CPython's default collector runs a *full* collection after
every 10 collections of its middle generation, and walks the whole heap each time: while that
heap grows at start-up it did so 8 times (1.3-1.5 s of a 10 s ``twopath explain`` on a tiny
BERT), and once more at exit (about 1 s). :func:`for_a_run` makes full collections wait for
:data:`FULL_COLLECTION_EVERY` collections of the middle generation (the young generations are
collected as usual, so a long run still frees its reference cycles); :func:`settle` freezes
what is alive (:func:`gc.freeze`), so later full collections, and the one at exit, skip it.
Nothing computed depends on either.
"""

from __future__ import annotations

import gc

#: full collections after this many collections of the middle generation (CPython's default: 10)
FULL_COLLECTION_EVERY = 100


def for_a_run() -> None:
    """Full collections every :data:`FULL_COLLECTION_EVERY` middle-generation collections."""
    gen0, gen1, _ = gc.get_threshold()
    gc.set_threshold(gen0, gen1, FULL_COLLECTION_EVERY)


def settle() -> None:
    """Leave everything alive now out of later collections (the process keeps it to the end)."""
    gc.freeze()
