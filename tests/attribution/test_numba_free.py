"""The CLI runs shap with numba's JIT off (NUMBA_DISABLE_JIT=1, saving ~10 s of compile per
process); the values must be bit-identical to the compiled kernels'."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

SCRIPT = r"""
import json, numpy as np, shap
from twopath.attribution.shap_ import adjacent_word_tree
f = lambda m: np.sin((m * np.arange(1, m.shape[1] + 1)).sum(1)) + m[:, 0] * m[:, -1]
out = []
for n in (8, 12):
    r = shap.explainers.Exact(f, shap.maskers.Independent(np.zeros((1, n))))(np.ones((1, n)), silent=True)
    out += r.values.ravel().tolist()
masker = shap.maskers.Partition(np.zeros((1, 48)), clustering=adjacent_word_tree(48))
out += shap.explainers.Partition(f, masker)(np.ones((1, 48)), max_evals=500, silent=True).values.ravel().tolist()
print(json.dumps(out))
"""


def _values(jit_off: str) -> list[float]:
    env = {**os.environ, "NUMBA_DISABLE_JIT": jit_off}
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_shap_without_numba_jit_is_bit_identical():
    plain, compiled = _values("1"), _values("0")
    assert len(plain) == 8 + 12 + 48
    assert plain == compiled
