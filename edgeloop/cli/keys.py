"""``edgeloop keys``: CURVE key pairs for encrypted, authenticated links."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from edgeloop.cli._common import out


def register(commands: Any) -> None:
    keys = commands.add_parser(
        "keys",
        help="make a CURVE key pair for encrypted, authenticated links between machines",
        description="Write DIR/NAME.key (public: copy it to the peers that must trust this "
        "machine, into their allowed-keys folder) and DIR/NAME.key_secret (secret: stays here, "
        "mode 600). Existing keys are never overwritten.",
    )
    keys.add_argument("name", help="a name for this machine or process group")
    keys.add_argument("-o", "--out", type=Path, default=Path("keys"), help="folder (default: keys)")
    keys.set_defaults(handler=keys_command)


def keys_command(args: argparse.Namespace) -> int:
    from edgeloop.runtime.processes.security import generate_keys

    public, secret = generate_keys(args.out, args.name)
    out.print(
        f"public key {public} (give it to the peers that must accept this one)\n"
        f"secret key {secret} (keep it here; mode 600)",
        highlight=False,
    )
    return 0
