"""Export formats and quantizations by name, kept free of TensorFlow so the CLI can check them at once."""

FORMATS = ("saved_model", "tflite", "onnx", "all")
QUANTIZATIONS = ("none", "dynamic", "float16", "int8")
