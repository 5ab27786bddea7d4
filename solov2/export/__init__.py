"""Taking SOLOv2 out of Python: one ONNX graph for the whole inference, and a predictor running it in ONNX Runtime.

onnx, onnxscript and onnxruntime are optional (pip install -e ".[onnx]"); they are imported only when used.
"""

from .onnx_export import (
    ExportError,
    ExportableSOLOv2,
    MissingDependencyError,
    check_exportable,
    export_from_config,
    export_onnx,
)
from .onnx_predictor import ONNXPredictor

__all__ = ["ExportError", "ExportableSOLOv2", "MissingDependencyError", "ONNXPredictor", "check_exportable",
           "export_from_config", "export_onnx"]
