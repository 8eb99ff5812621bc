"""Helpers several test files share (fixtures are in conftest.py)."""

from milr_core.network import NetworkSpec


def network_for(dataset, depth: int = 2, width: int = 16, **kwargs) -> NetworkSpec:
    """A network that fits ``dataset``'s inputs and classes."""
    return NetworkSpec(depth=depth, width=width, in_dim=dataset.in_dim, out_dim=dataset.n_classes, **kwargs)
