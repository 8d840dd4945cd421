"""What this process computes on, in words: for run logs, latency tables and benchmark headers."""

import os
import platform


def cpu_model():
    """The CPU's model name as `lscpu` gives it (from /proc/cpuinfo), else
    `platform.processor()`, else the machine type.

    Example:
    >>> from keras_flop.latency.device import cpu_model
    >>> cpu_model()  # e.g. 'AMD EPYC 7B13'
    '...'
    """
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


# Widest first: what the vector units of a CPU can do, by its /proc/cpuinfo flags. Two CPUs
# sold under one model name ("AMD EPYC") can differ by several times in speed; these tell them
# apart in benchmark headers.
_VECTOR_EXTENSIONS = (("amx_tile", "AMX"), ("avx512_bf16", "AVX-512 BF16"),
                      ("avx512f", "AVX-512"), ("avx2", "AVX2"), ("avx", "AVX"),
                      ("sve", "SVE"), ("asimd", "NEON"))


def cpu_vector_extensions(path="/proc/cpuinfo"):
    """The widest vector instructions the CPU reports in `path`, e.g. `"AVX-512 BF16"` or
    `"AVX2"`; None when the file or its flags are missing.

    Example:
    >>> import os, tempfile
    >>> from keras_flop.latency.device import cpu_vector_extensions
    >>> path = os.path.join(tempfile.mkdtemp(), "cpuinfo")
    >>> with open(path, "w") as f:
    ...     _ = f.write("model name\\t: AMD EPYC 7B13\\nflags\\t\\t: fpu sse2 avx avx2 fma\\n")
    >>> cpu_vector_extensions(path)
    'AVX2'
    >>> print(cpu_vector_extensions(os.path.join(tempfile.mkdtemp(), "missing")))
    None
    """
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    flags = set(line.split(":", 1)[1].split())
                    return next((name for flag, name in _VECTOR_EXTENSIONS if flag in flags),
                                None)
    except OSError:
        pass
    return None


def cpu_description():
    """The CPU's model name with its widest vector instructions: `AMD EPYC (AVX-512 BF16)`.

    Example:
    >>> from keras_flop.latency.device import cpu_description, cpu_model
    >>> cpu_description().startswith(cpu_model())
    True
    """
    extensions = cpu_vector_extensions()
    return f"{cpu_model()} ({extensions})" if extensions else cpu_model()


def describe_devices():
    """The devices TensorFlow computes on, in one phrase: `CPU (2 cores: AMD EPYC 7B13 (AVX2))`
    or `2 GPUs (NVIDIA A100, NVIDIA A100)`.

    Example:
    >>> from keras_flop.latency.device import describe_devices
    >>> describe_devices()  # 'CPU (2 cores: AMD EPYC 7B13 (AVX2))' on a machine without GPUs
    '... (...)'
    """
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return f"CPU ({os.cpu_count()} cores: {cpu_description()})"
    names = [tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name)
             for gpu in gpus]
    return f"{len(gpus)} GPU{'s' if len(gpus) > 1 else ''} ({', '.join(names)})"
