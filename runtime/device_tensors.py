"""Device tensors: a model's output left where the model made it (GPU memory).

An ``onnx.model`` node with ``device_outputs`` publishes those outputs as
:class:`DeviceTensor` (an ONNX Runtime ``OrtValue`` and its metadata) instead of
numpy arrays. The rule the executor keeps:

- a receiver whose node type ``takes_device_tensors`` (another model node in the
  same process) gets the tensor itself: no copy;
- everything else that reads the port gets one host copy of the message, made
  the first time any of them asks and shared by the rest: a node of another type,
  ``ctx.message(...).data``, the recorder and live view, a sender to another
  process group, and the NaN check when the producer asks for it;
- the output contract (dtype, shape) and the payload size limit are checked from
  the tensor's metadata, without a copy.

Each producer counts, per port, the messages it published and the host copies
they cost, with who asked first, for its run report. Device tensors keep the
model's own batch dimension (``add_batch_dim`` drops it from host outputs only):
the next model takes them as they are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

# ONNX Runtime's element types (TensorProto numbering) and the numpy dtypes they hold.
_ELEMENT_DTYPES = {
    1: np.float32, 2: np.uint8, 3: np.int8, 4: np.uint16, 5: np.int16, 6: np.int32,
    7: np.int64, 9: np.bool_, 10: np.float16, 11: np.float64, 12: np.uint32, 13: np.uint64,
}  # fmt: skip


def numpy_dtype(value: Any) -> np.dtype:
    """The numpy dtype of an ``OrtValue`` tensor."""
    return np.dtype(_ELEMENT_DTYPES[value.element_type()])


@dataclass
class HostCopies:
    """One device port's figures: messages published, and host copies made of them."""

    messages: int = 0
    asked_by: dict[str, int] = field(default_factory=dict)
    """Who asked for the copy of a message first, and how often."""

    @property
    def copies(self) -> int:
        return sum(self.asked_by.values())

    def summary(self, device: str) -> str:
        """One line for the run report."""
        text = f"{self.messages:,} messages on {device}, {self.copies:,} copied to the host"
        if self.asked_by:
            text += " (for " + ", ".join(f"{who}: {n:,}" for who, n in self.asked_by.items()) + ")"
        return text


class DeviceTensor:
    """An ``OrtValue`` on a port, with one lazily made host copy.

    Attributes:
        value: the ``OrtValue`` (bind it with ``IOBinding.bind_ortvalue_input``).
        dtype: its numpy dtype.
        shape: its shape.
        check_finite: True when readers must see it NaN-checked (a host copy).
    """

    __slots__ = ("_host", "_tally", "check_finite", "dtype", "shape", "value")

    def __init__(self, value: Any, tally: HostCopies, *, check_finite: bool = True) -> None:
        self.value = value
        self.dtype = numpy_dtype(value)
        self.shape = tuple(value.shape())
        self.check_finite = check_finite
        self._tally = tally
        self._host: np.ndarray | None = None
        tally.messages += 1

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def nbytes(self) -> int:
        return int(self.value.tensor_size_in_bytes())

    @property
    def device(self) -> str:
        return str(self.value.device_name())

    def host(self, asked_by: str) -> np.ndarray:
        """The tensor as a numpy array: copied on the first call, counted, shared after."""
        if self._host is None:
            # A CPU OrtValue's numpy() may view the session's buffer: own a copy.
            self._host = np.array(self.value.numpy(), copy=True)
            asked = self._tally.asked_by
            asked[asked_by] = asked.get(asked_by, 0) + 1
        return self._host

    def __repr__(self) -> str:
        return f"DeviceTensor({self.dtype} {self.shape} on {self.device})"


def on_host(data: Any, asked_by: str) -> Any:
    """``data`` as a host value: a device tensor's copy, anything else as it is."""
    return data.host(asked_by) if type(data) is DeviceTensor else data
