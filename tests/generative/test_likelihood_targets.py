"""The likelihood table's targets (issue: generative §5-7), with the full budgets: slow, run by ``make test-slow``.

Every model beats independent pixels on the test NLL; FVSBN is worse than NADE, MADE and the PixelCNN family;
the best model is below 16.5 nats on the binary 8x8 digits.
"""

from __future__ import annotations

import pytest

from generative.table import TableCommand, run_table

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    rows = run_table(TableCommand(out=tmp_path_factory.mktemp("table"), progress=False))
    return {row.model: row for row in rows}


def test_every_model_beats_independent_pixels(table, measured) -> None:
    for name, row in table.items():
        measured(f"{name}: test NLL {row.test_nll:.2f} nats ({row.bits_per_dim:.4f} bits/dim), FDD {row.fdd:.1f}, "
                 f"{row.train_seconds:.0f} s")
    baseline = table["independent"].test_nll
    assert all(row.test_nll < baseline for name, row in table.items() if name != "independent")


def test_fvsbn_is_worse_than_nade_made_and_the_pixelcnns(table) -> None:
    for name in ("nade", "made", "pixelcnn", "gated-pixelcnn"):
        assert table[name].test_nll < table["fvsbn"].test_nll, name


def test_the_best_model_is_below_16_5_nats(table) -> None:
    assert min(row.test_nll for row in table.values()) < 16.5
