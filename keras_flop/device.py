"""What this process computes on, in words: for run logs, latency tables and benchmark headers."""

import os
import platform


def cpu_model():
    """The CPU's model name as `lscpu` gives it (from /proc/cpuinfo), else
    `platform.processor()`, else the machine type."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def describe_devices():
    """The devices TensorFlow computes on, in one phrase: `CPU (2 cores: AMD EPYC 7B13)` or
    `2 GPUs (NVIDIA A100, NVIDIA A100)`."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return f"CPU ({os.cpu_count()} cores: {cpu_model()})"
    names = [tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name)
             for gpu in gpus]
    return f"{len(gpus)} GPU{'s' if len(gpus) > 1 else ''} ({', '.join(names)})"
