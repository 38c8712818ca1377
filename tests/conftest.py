import os

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")

import torch  # noqa: E402

import envs  # noqa: E402,F401  (registers the mp/ ids)

# Small networks train faster on one thread, and pytest-xdist already runs one worker per core.
torch.set_num_threads(1)


@pytest.fixture
def rng():
    import numpy as np

    return np.random.default_rng(0)
