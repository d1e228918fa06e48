"""The runtime on a board has no torch: ``import edgeloop`` and ``edgeloop run``
of a graph without torch-based nodes must work with torch absent (DESIGN.md,
Layers)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PENDULUM = ROOT / "examples" / "pendulum" / "loop.yaml"

# Runs in a fresh interpreter: a meta-path finder placed first makes torch,
# snntorch and their submodules fail to import, as on a board without them.
_SCRIPT = '''
import sys

BLOCKED = ("torch", "snntorch")


class _NoTorch:
    """Makes every blocked module fail to import, as if it were not installed."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)
        return None


sys.meta_path.insert(0, _NoTorch())

try:
    import torch  # noqa: F401
except ImportError:
    pass
else:
    raise SystemExit("the torch blocker does not work")

import edgeloop
import edgeloop.plugins
import edgeloop.runtime
import edgeloop.cli

code = edgeloop.cli.main(["run", sys.argv[1], "--sim", "--duration", "1", "--quiet"])
assert code == 0, f"edgeloop run exited {code}"
loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
assert not loaded, f"imported anyway: {loaded}"
print("ok without torch")
'''


def test_edgeloop_imports_and_runs_the_pendulum_loop_without_torch(tmp_path: Path) -> None:
    script = tmp_path / "no_torch.py"
    script.write_text(_SCRIPT)
    done = subprocess.run(
        [sys.executable, str(script), str(PENDULUM)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ok without torch" in done.stdout
