"""Models out: a SavedModel for TF Serving (`saved_model`), ONNX and LiteRT in float32 or INT8
(`formats`: each file written and verified; the float files in `float_files`, the INT8 files
in `quantized`, what each format needs in `requirements`), and each file run in its runtime on
feature batches (`runtimes`)."""
