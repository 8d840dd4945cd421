"""Models out: a SavedModel for TF Serving (`saved_model`), ONNX and LiteRT in float32 or INT8
(`formats`, with the INT8 files in `quantized`)."""
