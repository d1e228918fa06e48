"""``python -m edgeloop`` is the ``edgeloop`` command."""

import sys

try:
    from edgeloop.cli import main
except KeyboardInterrupt:  # Ctrl-C while importing: no traceback either
    print("interrupted", file=sys.stderr)
    raise SystemExit(130) from None

raise SystemExit(main())
