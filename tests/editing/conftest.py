"""Editing tests run tiny models: one torch thread (thread start-up costs more than the arithmetic)."""

from __future__ import annotations

import pytest

from tests.helpers import single_threaded


@pytest.fixture(autouse=True)
def _one_thread():
    with single_threaded():
        yield
