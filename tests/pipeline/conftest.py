"""Fixtures of the pipeline tests: one torch thread, and a temporary Prefect API for flows."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Run the model on one CPU thread: these batches are tiny, and on a busy 2-core machine two
    OpenMP threads contending with the environment workers run several times slower. The stages
    set it too (``model.num_threads: 1`` in the tiny settings); the previous value is restored."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def prefect_api():
    """A temporary Prefect API (its own SQLite database in a temporary folder) for flow runs."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
