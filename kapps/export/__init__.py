"""Verified exports: SavedModel, TFLite (float32 or quantised) and ONNX, each checked in its own runtime.

>>> report = kapps.export.export("saved_models/lenet5", formats="all", quantize="int8")
"""

from kapps.export.exporter import REPORT_FILE, export, plan
from kapps.export.recurrent import recurrent_loops, unrolled_twin
from kapps.export.runtimes import RUNNERS, keras_runner, onnx_runner, saved_model_runner, tflite_runner
from kapps.export.source import Source, load_source
from kapps.formats import FORMATS, QUANTIZATIONS

__all__ = [
    "FORMATS",
    "QUANTIZATIONS",
    "REPORT_FILE",
    "RUNNERS",
    "Source",
    "export",
    "keras_runner",
    "load_source",
    "onnx_runner",
    "plan",
    "recurrent_loops",
    "saved_model_runner",
    "tflite_runner",
    "unrolled_twin",
]
