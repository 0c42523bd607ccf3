"""Localization scored against planted ground truth (see :mod:`twopath.seed.localization`).

Prints precision and recall at k (k = the size of the planted set) of every input-path and
internal-path method on hand-wired models whose mechanism is known by construction, with a random
ranking as the control. The same as ``twopath benchmark``. Seconds; nothing is trained or cached.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("NUMBA_DISABLE_JIT", "1")  # as the CLI: shap's kernels compile for ~10 s otherwise


def main() -> None:
    import torch

    from twopath.seed.localization import benchmark, render

    torch.set_num_threads(1)
    print(render(benchmark()))


if __name__ == "__main__":
    main()
