"""Playing a recorded node back: the ``replay`` node type.

``edgeloop replay`` puts one (:class:`ReplaySource`) in place of every recorded
source node; the class documents how it plays the recording back.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeloop.runtime.errors import RecordingError
from edgeloop.runtime.node import NodeContext, Port, Sensor
from edgeloop.runtime.recording import read_recording


@dataclass(frozen=True)
class ReplayConfig:
    recording: str
    """The MCAP file written by ``edgeloop run --record``."""
    node: str
    """Id of the recorded node whose outputs to play back."""


@functools.lru_cache(maxsize=8)
def _messages(path: str, mtime: float, node: str) -> dict[int, dict[str, Any]]:
    """Recorded outputs of ``node`` by creation time (ns): {port: payload}."""
    prefix = f"/{node}/"
    by_time: dict[int, dict[str, Any]] = defaultdict(dict)
    for topic, created, message in read_recording(path):
        if topic.startswith(prefix):
            by_time[round(created * 1e9)][topic[len(prefix) :]] = message["value"]
    return dict(by_time)


def recorded_outputs(path: str | Path, node: str) -> dict[int, dict[str, Any]]:
    path = Path(path)
    try:
        mtime = path.stat().st_mtime
    except OSError as exc:
        raise RecordingError(f"cannot open the recording {path}: {exc.strerror}") from None
    return _messages(str(path.resolve()), mtime, node)


class ReplaySource(Sensor):
    """Emits a recorded node's outputs at the clock times it published them.

    ``edgeloop replay`` puts one in place of every recorded source node (a
    sensor, say): it keeps the node's id, rate and place in the graph. Its
    ports come from the recording: one output per port the recorded node
    published (topics ``/<node>/<port>``), with the dtype and shape of that
    port's first recorded array (an untyped port for other payloads). It has no
    inputs; units and meaning are those of the recorded node's outputs.

    It runs on its ``rate_hz``, which should be the recorded node's. At each
    step it emits exactly the messages the node published at that clock time
    (to the nanosecond) in the recording, and nothing where it published
    nothing, so with nothing else replaced a deterministic loop reproduces its
    recorded outputs bit for bit. It keeps no state between steps: the
    recording is read once per file version and shared.

    Faults:
        a recording that cannot be opened or read, or that holds no messages of
        ``node``, is a RecordingError when the graph is validated or built.

    YAML::

        - id: camera            # same id, rate and place as the recorded node
          type: replay
          rate_hz: 30
          config: {recording: run.mcap, node: camera}
    """

    Config = ReplayConfig

    @classmethod
    def ports(cls, config: ReplayConfig) -> tuple[tuple[Port, ...], tuple[Port, ...]]:
        messages = recorded_outputs(config.recording, config.node)
        if not messages:
            raise RecordingError(
                f"{config.recording} holds no messages of node '{config.node}'",
                fix="record the run with edgeloop run --record, and name a recorded node",
            )
        first: dict[str, Any] = {}
        for outputs in messages.values():
            for port, value in outputs.items():
                first.setdefault(port, value)
        outputs = tuple(
            Port(port, dtype=str(v.dtype), shape=tuple(v.shape))
            if isinstance(v, np.ndarray)
            else Port(port)
            for port, v in sorted(first.items())
        )
        return (), outputs

    def setup(self, ctx: NodeContext) -> None:
        self._by_time = recorded_outputs(self.config.recording, self.config.node)

    def step(self, inputs: dict[str, Any]) -> dict[str, Any] | None:
        return self._by_time.get(round(self.ctx.now() * 1e9))
