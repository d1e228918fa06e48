"""A planner outside edgeloop: sends speed setpoints into the pendulum loop and reads
its state back. Nothing here imports edgeloop: only pyzmq and struct, following
docs/wire.md, as a C++ or Rust planner would.

    edgeloop run examples/external-planner/loop.yaml   # first, in another terminal
    python examples/external-planner/planner.py [--seconds 12]

Prints, for each setpoint it held, the pendulum's mean speed over the last half of
that time (read from the loop's zmq.sink).
"""

from __future__ import annotations

import argparse
import struct
import sys
import time

import zmq

SETPOINTS = "ipc:///tmp/edgeloop-planner-setpoints"
STATE = "ipc:///tmp/edgeloop-planner-state"
MAGIC = b"ELW1"
ARRAY = struct.Struct("<Qdd4sB")  # seq, created, sensed, dtype, ndim (docs/wire.md)


def array_message(seq: int, values: list[float]) -> bytes:
    """Kind ``a``: a float64 array, its bytes in the header frame."""
    now = time.monotonic()  # a zmq.source reads times as CLOCK_MONOTONIC seconds
    head = MAGIC + b"a" + ARRAY.pack(seq, now, now, b"<f8 ", 1) + struct.pack("<Q", len(values))
    return head + struct.pack(f"<{len(values)}d", *values)


def read_array(frames: list[bytes]) -> tuple[float, list[float]]:
    """A zmq.sink message holding one array: its sensing time and values."""
    _topic, head, *buffers = frames
    if head[:4] != MAGIC or head[4:5] not in (b"a", b"A"):
        raise ValueError("not an array message")
    _seq, _created, sensed, dtype, ndim = ARRAY.unpack_from(head, 5)
    sizes = struct.unpack_from(f"<{ndim}Q", head, 34)
    data = head[34 + 8 * ndim :] if head[4:5] == b"a" else buffers[0]
    count = 1
    for n in sizes:
        count *= n
    code = {b"<f4 ": "f", b"<f8 ": "d"}[dtype]
    return sensed, list(struct.unpack(f"<{count}{code}", data))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=12.0, help="how long to plan")
    parser.add_argument("--setpoints", default=SETPOINTS, help="the loop's zmq.source endpoint")
    parser.add_argument("--state", default=STATE, help="the loop's zmq.sink endpoint")
    args = parser.parse_args()
    context = zmq.Context.instance()
    setpoints = context.socket(zmq.PUSH)
    setpoints.setsockopt(zmq.LINGER, 0)
    setpoints.connect(args.setpoints)
    state = context.socket(zmq.SUB)
    state.setsockopt(zmq.LINGER, 0)
    state.setsockopt(zmq.SUBSCRIBE, b"obs")
    state.connect(args.state)
    if not state.poll(30_000):  # the loop publishes its state: it is running
        print(f"no state from the loop at {args.state}: is edgeloop run going?")
        return 1
    plan = [3.0, -3.0, 5.0, 0.0]  # rad/s, each held for a quarter of the time
    hold = args.seconds / len(plan)
    print(f"{'setpoint rad/s':>15} {'mean speed rad/s':>17} {'state age ms':>13}")
    seq = 0
    for target in plan:
        start, speeds, ages = time.monotonic(), [], []
        while time.monotonic() - start < hold:
            setpoints.send(array_message(seq, [target]))  # 20 Hz: the plan as it stands
            seq += 1
            deadline = time.monotonic() + 0.05
            while (left := deadline - time.monotonic()) > 0 and state.poll(int(left * 1000) + 1):
                sensed, obs = read_array(state.recv_multipart())
                if time.monotonic() - start > hold / 2:
                    speeds.append(obs[2])
                    ages.append((time.monotonic() - sensed) * 1e3)
        mean = sum(speeds) / max(1, len(speeds))
        age = sorted(ages)[len(ages) // 2] if ages else float("nan")
        print(f"{target:15.1f} {mean:17.2f} {age:13.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
