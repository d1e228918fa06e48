"""Simulated serial devices on a pseudo-terminal: an IMU that streams and a motor
controller that acknowledges, for tests and examples on a machine without them.

Each device opens a pty pair and points a symlink (``--link``) at its slave
end, as udev points ``/dev/serial/by-id/...`` at a ``ttyUSBn``; a node opens
the link like a real port. ``SIGUSR1`` unplugs the device: the pty closes (the
node's reads and writes fail as on a pulled cable), and after ``--replug-ms``
a new one appears under the same link. ``SIGTERM`` ends it.

Run one with::

    python -m edgeloop.sims.serial_devices motor --link /tmp/motor --log motor.jsonl

It prints ``ready <link>`` once the link exists (and again after each replug);
the motor controller appends every command it reads to ``--log`` as a JSON
line ``{"t": <monotonic s>, "command": [...]}`` and answers ``$ACK,<n>*HH``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import select
import signal
import sys
import time
import tty
from typing import IO

from edgeloop.plugins.serial_framing import Deframer, encode_frame


class PtyDevice:
    """A pty pair whose slave end is reachable under ``link``."""

    def __init__(self, link: str) -> None:
        self.link = link
        self.master = self.slave = -1

    def plug(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)  # no echo, no line editing: bytes pass as they are
        os.set_blocking(self.master, False)  # a full buffer (no one reading) drops, never blocks
        temporary = f"{self.link}.{os.getpid()}"
        os.symlink(os.ttyname(self.slave), temporary)
        os.replace(temporary, self.link)  # the link never points nowhere while it moves

    def unplug(self) -> None:
        for fd in (self.master, self.slave):
            if fd >= 0:
                os.close(fd)
        self.master = self.slave = -1
        try:
            os.unlink(self.link)
        except FileNotFoundError:
            pass

    def send(self, data: bytes) -> None:
        try:
            os.write(self.master, data)
        except (BlockingIOError, OSError):  # no room, or no one at the other end: lost
            pass


class _Signals:
    def __init__(self) -> None:
        self.unplug = self.stop = False
        signal.signal(signal.SIGUSR1, self._unplug)
        signal.signal(signal.SIGTERM, self._stop)

    def _unplug(self, *_: object) -> None:
        self.unplug = True

    def _stop(self, *_: object) -> None:
        self.stop = True


def run(kind: str, link: str, rate_hz: float, replug_ms: float, log: IO[str] | None) -> None:
    device = PtyDevice(link)
    signals = _Signals()
    device.plug()
    print(f"ready {link}", flush=True)
    deframer = Deframer("nmea")
    commands = 0
    period = 1.0 / rate_hz
    next_sample = time.monotonic()
    try:
        while not signals.stop:
            if signals.unplug:
                signals.unplug = False
                device.unplug()
                time.sleep(replug_ms / 1e3)
                device.plug()
                deframer = Deframer("nmea")
                print(f"ready {link}", flush=True)
            timeout = max(0.0, next_sample - time.monotonic()) if kind == "imu" else 0.05
            try:
                readable, _, _ = select.select([device.master], [], [], timeout)
            except InterruptedError:
                continue
            if readable:
                try:
                    data = os.read(device.master, 4096)
                except OSError:  # nothing there after all, or no one has the port open
                    data = b""
                for values in deframer.feed(data):
                    commands += 1
                    if log is not None:
                        record = {"t": time.monotonic(), "command": values.tolist()}
                        log.write(json.dumps(record) + "\n")
                        log.flush()
                    device.send(encode_frame("nmea", [commands], name="ACK"))
            if kind == "imu" and time.monotonic() >= next_sample:
                t = time.monotonic()
                sample = [math.sin(t), math.cos(t), 9.81]
                device.send(encode_frame("nmea", sample, name="IMU"))
                next_sample += period
    finally:
        device.unplug()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m edgeloop.sims.serial_devices",
        description="A simulated serial device on a pseudo-terminal (see the module's doc).",
    )
    parser.add_argument("kind", choices=("motor", "imu"), help="which device")
    parser.add_argument("--link", required=True, help="the path the device appears under")
    parser.add_argument("--rate-hz", type=float, default=100.0, help="the IMU's sample rate")
    parser.add_argument(
        "--replug-ms", type=float, default=300.0, help="how long SIGUSR1 unplugs it for"
    )
    parser.add_argument("--log", help="JSON-lines file of the commands the motor read")
    args = parser.parse_args(argv)
    if not 0 < args.rate_hz <= 10_000:
        parser.error("--rate-hz must be above 0 and at most 10,000")
    log = open(args.log, "a") if args.log else None
    try:
        run(args.kind, args.link, args.rate_hz, args.replug_ms, log)
    finally:
        if log is not None:
            log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
