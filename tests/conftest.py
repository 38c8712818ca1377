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


@pytest.fixture
def measured(record_property):
    """``measured("greedy return 500")``: a number a test measured, listed at the end of the run.

    ``make test-slow`` ends with these lines, so a change can be compared with the targets before and after
    (the properties travel with the reports, so pytest-xdist workers' numbers are listed too).
    """
    return lambda text: record_property("measured", text)


def pytest_terminal_summary(terminalreporter):
    lines = sorted({(report.nodeid, value) for reports in terminalreporter.stats.values() for report in reports
                    if getattr(report, "when", None) == "call"
                    for key, value in getattr(report, "user_properties", ()) if key == "measured"})
    if lines:
        terminalreporter.section("measured")
        for nodeid, text in lines:
            terminalreporter.write_line(f"{nodeid}: {text}")
