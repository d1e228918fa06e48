"""The real CLI in a subprocess, as the tests run it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path


def edgeloop_cli(
    cwd: Path | None,
    *args: str | Path,
    timeout: float = 120,
    env: dict[str, str] | None = None,
    prefix: Sequence[str] = (),
) -> subprocess.CompletedProcess[str]:
    """``python -m edgeloop ARGS`` in ``cwd`` as a user's shell runs it (no colours, no
    terminal size); ``env`` is added to this process's environment, ``prefix`` goes
    before Python (``setpriv ...``, say)."""
    base = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "COLUMNS", "LINES")}
    return subprocess.run(
        [*prefix, sys.executable, "-m", "edgeloop", *map(str, args)],
        cwd=cwd,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
