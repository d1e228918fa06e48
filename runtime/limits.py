"""Upper bounds of every number a user writes that could exhaust memory or time.

A graph, a node's config or a command-line option past one of these is refused
when it is loaded or parsed, with the bound in the message, rather than failing
deep inside a run (an ``OverflowError`` from a queue of 10**21 slots, a
simulated second of 10**9 ticks, a ``RecursionError`` from YAML nested 100,000
deep). Each bound is far above what a robotics loop needs; the schema's field
docstrings (and so ``docs/node-types.md`` and ``edgeloop plugins show``) quote
them. Issue 13, item 6.
"""

from __future__ import annotations

# -- time ------------------------------------------------------------------------------

MAX_RATE_HZ = 1_000_000
"""Fastest ``rate_hz`` (a 1 us period): robotics loops run at a few kHz at most,
and a simulated second at this rate is already a million ticks."""
MIN_RATE_HZ = 1e-6
"""Slowest ``rate_hz`` (one tick in 11.6 days), also for commanded sensing rates:
slower periods overflow the executor's timer arithmetic."""
MIN_TIMER_PERIOD_NS = 1_000_000_000 // MAX_RATE_HZ
"""Shortest ``timer/<period>`` (1 us): the same bound as :data:`MAX_RATE_HZ`."""
MAX_MS = 86_400_000
"""Longest millisecond setting (one day): deadlines, stale ages, backoffs, timeouts,
watchdogs and timer periods; anything longer is "never" in a loop."""
MAX_DURATION_S = 315_576_000
"""Longest run (ten years of 365.25 days): as ns (3.2e17) it stays far inside
int64, where the executor's "never" is 2**62 ns (4.6e18)."""

# -- memory --------------------------------------------------------------------------

MAX_QUEUE_SIZE = 100_000
"""Largest ``fifo`` queue (messages): 100 s of backlog at 1 kHz; each slot may hold
a whole camera frame."""
MAX_RESTARTS = 1_000_000
"""Most restarts one node or group may be allowed: a restart a second for 11 days."""
MAX_COUNT = 10**12
"""Largest whole number on the command line (steps, messages, windows, seeds): no
budget anyone types is larger, and sums of them stay far inside int64."""

# -- files -----------------------------------------------------------------------------

MAX_FILE_BYTES = 16 * 1024 * 1024
"""Largest YAML file read (graph, scenario, hardware profile): the largest example
graph is about 2 KiB."""
MAX_YAML_DEPTH = 64
"""Deepest nesting of YAML mappings and lists; a graph needs about 6 (config values
included), and the YAML reader recurses once per level."""
MAX_YAML_ENTRIES = 100_000
"""Most entries a YAML file may expand to: far above any loop graph, far below what
a YAML alias bomb expands to."""
MAX_STRING_CHARS = 1024 * 1024
"""Longest scalar (a string or number as written) in a YAML file (1 Mi characters):
paths, ids and names are far shorter, and error messages quote the value."""

# -- built-in node types -----------------------------------------------------------------

MAX_IMAGE_SIDE = 8192
"""Largest width or height of an image a node makes (pixels): 8K sensors are 7680
wide; a float32 frame this size is 256 MiB."""
MAX_EPISODE_STEPS = 10_000_000
"""Longest episode a task space may ask for (steps): days of simulated time."""
MAX_GRID_TASKS = 1_000_000
"""Most tasks of an evaluation grid (``--grid`` to the power of the parameters):
each is several episodes."""
MAX_AGENTS = 10_000
"""Most agents a scenario runs (``agents``, ``--agents``): each is a copy of the
agent's loop and, by default, a process of its own."""
MAX_THREADS = 1024
"""Most threads a node may ask for: above the core count of any board or server."""
MAX_CPU = 4095
"""Highest CPU number in a ``cpus`` list (Linux's CONFIG_NR_CPUS tops out at 4096)."""
MAX_SPIN_US = 100_000
"""Longest timer spin window (0.1 s): spinning longer is a busy loop, not a timer."""
MAX_WARMUP = 10_000
"""Most warm-up inferences run at setup: a few are enough to settle a session."""
MAX_STATE_DIMS = 1_000
"""Most positions a Kalman predictor tracks: its covariance is (2 dims)^2 floats,
updated every step."""
MAX_DELAY_S = 60.0
"""Longest delay an injection holds a stream back (a minute): every message of
that span is kept in memory and scanned each step."""
