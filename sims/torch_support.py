"""torch for the training code: imported when used, and run on one thread.

torch is an optional dependency (the ``train`` extra), so the modules of
``edgeloop.sims`` import it through :func:`import_torch`, which names the extra
when it is missing. The networks trained here are small: torch's intra-op
threads gain nothing on them, and their spin-waiting slows training many times
over when other processes share the cores (50 steps of the masked autoencoder:
8.8 s with 2 threads, 1.5 s with 1, on the 2-core development machine), so
training runs inside :func:`one_thread`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from edgeloop.runtime.errors import MissingDependencyError


def import_torch(needed_for: str = "training") -> Any:
    """The torch module.

    Raises:
        MissingDependencyError: torch is not installed (the fix names the extra).
    """
    try:
        import torch
    except ImportError:
        raise MissingDependencyError("torch", "train", needed_for) from None
    return torch


@contextmanager
def one_thread(needed_for: str = "training") -> Iterator[Any]:
    """torch on one intra-op thread for the block (the previous count restored
    after); yields the torch module."""
    torch = import_torch(needed_for)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield torch
    finally:
        torch.set_num_threads(threads)
