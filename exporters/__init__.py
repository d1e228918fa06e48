"""torch -> ONNX export into bundles checked against hardware profiles.

Imports torch only when a function here is called (the ``train`` extra).
"""

from edgeloop.exporters.onnx_export import ExportError, ExportResult, choose_opset, export_bundle
from edgeloop.exporters.parity import Parity, check_parity

__all__ = ["ExportError", "ExportResult", "Parity", "check_parity", "choose_opset", "export_bundle"]
