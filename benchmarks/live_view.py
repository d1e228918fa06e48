"""What the live view costs the loop, and what a slow viewer loses.

A camera loop (a new 640x480 RGB frame at 100 Hz into a sink) runs in real time,
served with ``LiveView`` as ``edgeloop run --foxglove`` serves it, in four ways: no
live view; served with nobody watching; watched by a client that reads as fast as
it can; watched by a slow client (it sleeps 50 ms a message, so it takes 20 of the
100 frames a second). Clients are subprocesses speaking the Foxglove WebSocket
protocol (``websockets``), subscribed to the frames; on a 2-core machine they take
CPU from the loop's process (Foxglove usually runs on another machine).

Printed per run: the time the loop spent handing each message to the live view
(p50, p99: what the loop pays), the camera timer's jitter p99, and for watched runs
the frames offered to subscribers, received by the client, and the difference: what
the server dropped for the client, which the SDK does not count itself. Fails unless
every run stepped the camera on time and a watching client received frames.

    python benchmarks/live_view.py
    python benchmarks/live_view.py --seconds 10
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from typing import Any

from recording_cost import camera_graph  # beside this script: the same camera loop

import edgeloop
from edgeloop.runtime.live_view import LiveView

RATE_HZ = 100.0


class TimedView:
    """The live view, with the time each hand-over took."""

    def __init__(self, view: LiveView) -> None:
        self.view = view
        self.times: list[float] = []

    def write(self, *args: Any) -> None:
        t0 = time.perf_counter()
        self.view.write(*args)
        self.times.append(time.perf_counter() - t0)

    def summary(self) -> dict[str, Any]:
        return self.view.summary()


def client(url: str, delay_ms: float) -> int:
    """Subscribe to the frames, read each (sleeping ``delay_ms``), print the count."""
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    received = 0
    with connect(url, subprotocols=["foxglove.sdk.v1"], max_size=None) as ws:
        try:
            while True:
                frame = ws.recv(timeout=30)
                if isinstance(frame, str):
                    message = json.loads(frame)
                    for channel in message.get("channels", []):
                        if channel["topic"] == "/camera/image":
                            subscribe = [{"id": 1, "channelId": channel["id"]}]
                            ws.send(json.dumps({"op": "subscribe", "subscriptions": subscribe}))
                            print("subscribed", flush=True)
                elif frame[0] == 0x01:
                    received += 1
                    time.sleep(delay_ms / 1e3)
        except (ConnectionClosed, TimeoutError):
            pass
    print(received, flush=True)
    return 0


def run(seconds: float, viewer: str | None) -> dict[str, Any]:
    graph = camera_graph(RATE_HZ)
    view = TimedView(LiveView("127.0.0.1", 0, simulated=False)) if viewer is not None else None
    watcher = None
    if viewer in ("fast", "slow"):
        delay = "0" if viewer == "fast" else "50"
        command = [sys.executable, __file__, "--client", view.view.live.url, "--delay-ms", delay]
        watcher = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    executor = edgeloop.Executor(graph, simulated=False, recorder=view)
    report = executor.run(seconds)
    if view is not None:
        view.view.close()  # the client sees the connection close and reports
    (timer,) = report.timers
    result: dict[str, Any] = {"calls": report.node("sink").calls}
    result["jitter_p99_us"] = timer.jitter_p99_us
    if view is not None:
        ordered = sorted(view.times)
        result["write_p50_us"] = ordered[len(ordered) // 2] * 1e6
        result["write_p99_us"] = ordered[int(len(ordered) * 0.99)] * 1e6
        result["offered"] = view.summary()["offered"]
    if watcher is not None:
        out, _ = watcher.communicate(timeout=120)
        lines = out.split()
        if "subscribed" not in lines:
            raise SystemExit(f"the {viewer} client never subscribed")
        result["received"] = int(lines[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds per run")
    parser.add_argument("--client", help=argparse.SUPPRESS)
    parser.add_argument("--delay-ms", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        return client(args.client, args.delay_ms)
    expected = int(args.seconds * RATE_HZ)
    print(f"camera loop, 640x480 RGB at {RATE_HZ:g} Hz for {args.seconds:g} s in real time")
    for name, viewer in (
        ("no live view", None),
        ("served, nobody watching", "none"),
        ("a fast client", "fast"),
        ("a slow client (50 ms a frame)", "slow"),
    ):
        result = run(args.seconds, viewer)
        if result["calls"] < expected * 0.9:
            raise SystemExit(f"{name}: the camera stepped {result['calls']} of {expected} times")
        line = f"  {name:<30}: jitter p99 {result['jitter_p99_us']:7.1f} us"
        if viewer is not None:
            p50, p99 = result["write_p50_us"], result["write_p99_us"]
            line += f", hand-over p50 {p50:6.1f} us p99 {p99:6.1f} us"
        if "received" in result:
            if result["received"] == 0:
                raise SystemExit(f"{name}: the client received nothing")
            lost = result["offered"] - result["received"]
            line += (
                f"; offered {result['offered']}, received {result['received']}, "
                f"dropped by the server {lost}"
            )
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
