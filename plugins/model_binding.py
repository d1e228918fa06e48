"""Running an ONNX Runtime session through I/O binding, for the ``onnx.model`` node.

:class:`BoundRun` and :class:`FixedRun` are called like ``session.run(names, feed)``
and return the outputs in order, so the node steps the same way with either:

- ``BoundRun`` (``io_binding: true``) binds each input where it is (a host array,
  or a device tensor from another model node: no copy) and has the outputs made
  on the provider's device. Host outputs are copied back once; outputs the node
  keeps on the device come back as :class:`DeviceTensor`, each in a buffer of its
  own (its reader may hold it past the next step).
- ``FixedRun`` (``io_binding: fixed``, and CUDA graphs, which need it) allocates
  every input and output buffer once, on the first step's shapes, and copies the
  inputs into them: no allocation per step, fixed addresses for a captured graph.
  Shapes cannot change afterwards; a device output is that one buffer, valid until
  the node's next step.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgeloop.runtime.device_tensors import DeviceTensor, HostCopies, numpy_dtype

GPU_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")
GRAPH_OPTION = {
    "CUDAExecutionProvider": "enable_cuda_graph",
    "TensorrtExecutionProvider": "trt_cuda_graph_enable",
}
"""Each provider's option that has it capture and replay the model as a CUDA graph."""


def device_of(session: Any) -> tuple[str, int]:
    """Where the session's provider keeps tensors: ``("cuda", id)`` or ``("cpu", 0)``."""
    provider = session.get_providers()[0]
    if provider not in GPU_PROVIDERS:
        return "cpu", 0
    options = session.get_provider_options().get(provider, {})
    return "cuda", int(options.get("device_id", 0) or 0)


class BoundRun:
    """A session run through an ``IOBinding``, outputs made on its device."""

    def __init__(
        self,
        session: Any,
        output_names: list[str],
        kept: dict[str, HostCopies],
        *,
        check_finite: bool = True,
    ) -> None:
        self.session = session
        self.output_names = output_names
        self.kept = kept  # output name -> its port's tally, for outputs left on the device
        self.check_finite = check_finite
        self.device, self.device_id = device_of(session)
        self.binding = session.io_binding()
        for name in output_names:
            self.binding.bind_output(name, self.device, self.device_id)

    def bind_inputs(self, feed: dict[str, Any]) -> None:
        for name, value in feed.items():
            if type(value) is DeviceTensor:
                self.binding.bind_ortvalue_input(name, value.value)
            else:  # ONNX Runtime reads the array's buffer as it is: C order
                self.binding.bind_cpu_input(name, np.ascontiguousarray(value))

    def __call__(self, names: list[str], feed: dict[str, Any]) -> list[Any]:
        self.bind_inputs(feed)
        binding = self.binding
        if not self.kept:  # every output goes to the host: ONNX Runtime copies each once
            self.session.run_with_iobinding(binding)
            return binding.copy_outputs_to_cpu()
        # A device output's reader may hold it past this step: each run gets its own
        # buffers (binding again does it; one bound once would be written over).
        for name in self.output_names:
            binding.bind_output(name, self.device, self.device_id)
        self.session.run_with_iobinding(binding)
        return self.results(binding.get_outputs())

    def results(self, values: list[Any]) -> list[Any]:
        """The outputs as the node hands them on: kept ones as device tensors, the
        others as host arrays of their own."""
        return [
            DeviceTensor(value, self.kept[name], check_finite=self.check_finite)
            if name in self.kept
            else np.array(value.numpy(), copy=True)
            for name, value in zip(self.output_names, values, strict=True)
        ]


class FixedRun(BoundRun):
    """I/O binding with every buffer allocated once: what a CUDA graph replays."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.inputs: dict[str, Any] = {}  # input name -> its buffer
        self.outputs: list[Any] = []

    def __call__(self, names: list[str], feed: dict[str, Any]) -> list[Any]:
        for name, value in feed.items():
            if type(value) is DeviceTensor:
                raise ValueError(
                    f"input '{name}' is a device tensor, but this model runs on fixed buffers "
                    "(io_binding: fixed, or a CUDA graph) that host inputs are copied into: "
                    "ONNX Runtime's Python API has no device-to-device copy; turn the "
                    "producer's device_outputs off for it, or io_binding to true"
                )
        if not self.inputs:
            self._allocate(feed)
        for name, value in feed.items():
            buffer = self.inputs[name]
            if value.shape != tuple(buffer.shape()):
                raise ValueError(
                    f"input '{name}' has shape {value.shape}, but this model runs on buffers "
                    f"fixed at {tuple(buffer.shape())} (io_binding: fixed, or a CUDA graph): "
                    "shapes cannot change; use io_binding: true for changing shapes"
                )
            buffer.update_inplace(np.ascontiguousarray(value))
        self.session.run_with_iobinding(self.binding)
        if not self.kept:
            return self.binding.copy_outputs_to_cpu()
        return self.results(self.outputs)

    def _allocate(self, feed: dict[str, Any]) -> None:
        """Input buffers of the first feed's shapes; output buffers of the shapes a
        bound run on them makes (a CUDA graph's warm-up run: captured after it)."""
        import onnxruntime as ort

        for name, value in feed.items():
            buffer = ort.OrtValue.ortvalue_from_shape_and_type(
                value.shape, value.dtype, self.device, self.device_id
            )
            self.inputs[name] = buffer
            self.binding.bind_ortvalue_input(name, buffer)
        for name, buffer in self.inputs.items():
            buffer.update_inplace(np.ascontiguousarray(feed[name]))
        self.session.run_with_iobinding(self.binding)
        for name, value in zip(self.output_names, self.binding.get_outputs(), strict=True):
            buffer = ort.OrtValue.ortvalue_from_shape_and_type(
                value.shape(), numpy_dtype(value), self.device, self.device_id
            )
            self.outputs.append(buffer)
            self.binding.bind_ortvalue_output(name, buffer)
