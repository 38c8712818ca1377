import os

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")

import envs  # noqa: E402,F401  (registers the mp/ ids)


@pytest.fixture
def rng():
    import numpy as np

    return np.random.default_rng(0)
