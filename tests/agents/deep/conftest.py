"""Shared helpers of the deep-agent tests."""

import numpy as np
import pytest


@pytest.fixture
def first_and_last_returns():
    """``f(agent, steps) -> (mean of the first 20, mean of the last 20)`` training episode returns."""

    def run(agent, steps: int) -> tuple[float, float]:
        returns = []
        while agent.steps < steps:
            returns += [r for r, _ in agent.iterate().episodes]
        return float(np.mean(returns[:20])), float(np.mean(returns[-20:]))

    return run
