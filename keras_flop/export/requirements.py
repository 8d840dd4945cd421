"""The export formats, the file each writes, and the packages each needs with the extra that
installs them (`require` names it when one is missing). It imports no runtime, so that a
format can be checked before any work is done."""

import importlib

FORMATS = ("saved_model", "onnx", "litert", "onnx_int8", "litert_int8")
FILE_NAMES = {"onnx": "model.onnx", "litert": "model.tflite", "onnx_int8": "model_int8.onnx",
              "litert_int8": "model_int8.tflite"}
# The packages each format needs (onnx: onnxruntime's quantizer reads the graph with it), and
# the extra that installs them.
_REQUIREMENTS = {"onnx": ("tf2onnx", "onnxruntime"), "litert": ("ai_edge_litert",),
                 "onnx_int8": ("tf2onnx", "onnxruntime", "onnx"),
                 "litert_int8": ("ai_edge_litert",)}
EXTRAS = {"onnx": "onnx", "litert": "litert", "onnx_int8": "onnx", "litert_int8": "litert"}


def check_formats(formats):
    """The formats as a tuple in `FORMATS`; an error naming the choices.

    Example:
    >>> check_formats("saved_model,onnx")
    ('saved_model', 'onnx')
    """
    if isinstance(formats, str):
        formats = [f.strip() for f in formats.split(",") if f.strip()]
    formats = tuple(dict.fromkeys(formats))
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ValueError(f"Export formats must be drawn from {', '.join(FORMATS)}; got "
                         f"{unknown or 'none'}.")
    return formats


def require(fmt):
    """Imports the packages of `fmt`; a one-line error naming the extra to install."""
    for package in _REQUIREMENTS[fmt]:
        try:
            importlib.import_module(package)
        except ImportError:
            raise ImportError(f"Export format {fmt!r} needs {package}: pip install "
                              f"\"keras-flop[{EXTRAS[fmt]}]\" (or pip install "
                              f"{' '.join(p.replace('_', '-') for p in _REQUIREMENTS[fmt])})."
                              ) from None
