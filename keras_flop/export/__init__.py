"""Models out: a SavedModel for TF Serving (`saved_model`), ONNX and LiteRT in float32 or INT8
(`formats`, with the INT8 files in `quantized`), and each file run in its runtime on feature
batches (`runtimes`)."""
