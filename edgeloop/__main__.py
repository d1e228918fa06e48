"""``python -m edgeloop`` is the ``edgeloop`` command."""

from edgeloop.cli import main

raise SystemExit(main())
