"""Shared test helpers."""

import os

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
