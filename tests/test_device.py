"""The device description that run logs, latency tables and benchmark headers share."""

import os

from keras_flop import device


def test_describe_devices_names_the_cpu_and_its_cores():
    described = device.describe_devices()  # CI has no GPU
    assert described == f"CPU ({os.cpu_count()} cores: {device.cpu_model()})"


def test_cpu_model_falls_back_without_proc_cpuinfo(monkeypatch):
    def missing(*args, **kwargs):
        raise OSError("no /proc here")

    monkeypatch.setattr("builtins.open", missing)
    monkeypatch.setattr(device.platform, "processor", lambda: "")
    monkeypatch.setattr(device.platform, "machine", lambda: "arm64")
    assert device.cpu_model() == "arm64"
