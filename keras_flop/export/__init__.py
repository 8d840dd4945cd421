"""Models out: a SavedModel for TF Serving (`saved_model`), ONNX and LiteRT (`formats`)."""
