"""Shared fixtures: the small real task, one torch thread, no figure left open (helpers.py: shared functions)."""

import os
import sys

import pytest


def skip_unless_required(reason: str) -> None:
    """Skip a test whose prerequisite (a built book, a browser) is missing, or fail where it is required.

    ``make test`` (and so CI) sets MILR_REQUIRE_BOOK=1 after building the book, so a missing book or
    browser there is a failure, never a silent skip.
    """
    if os.environ.get("MILR_REQUIRE_BOOK") == "1":
        pytest.fail(f"required by MILR_REQUIRE_BOOK=1: {reason}")
    pytest.skip(reason)


def pytest_configure(config) -> None:
    """One torch thread per test process: the unit tests train tiny networks, where more threads only add
    overhead, and a second busy process on a 2-core machine makes oversubscribed steps 20-50x slower."""
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def gaussians():
    """The unit tests' small real task: the two-Gaussian task in 8 dimensions (generated, no data files)."""
    from milr_core.data import load_dataset

    return load_dataset("gaussians", dim=8)


@pytest.fixture(autouse=True)
def one_thread():
    """Every test ends on one torch thread, whatever it (or a command it ran) pinned."""
    yield
    import torch

    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def close_figures():
    """No figure a test drew stays open (matplotlib warns past 20)."""
    yield
    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close("all")
