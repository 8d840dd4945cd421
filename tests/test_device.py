"""The device description that run logs, latency tables and benchmark headers share."""

import os

from keras_flop.latency import device


def test_describe_devices_names_the_cpu_and_its_cores():
    described = device.describe_devices()  # CI has no GPU
    assert described == f"CPU ({os.cpu_count()} cores: {device.cpu_description()})"
    assert device.cpu_description().startswith(device.cpu_model())


def test_cpu_model_falls_back_without_proc_cpuinfo(monkeypatch):
    def missing(*args, **kwargs):
        raise OSError("no /proc here")

    monkeypatch.setattr("builtins.open", missing)
    monkeypatch.setattr(device.platform, "processor", lambda: "")
    monkeypatch.setattr(device.platform, "machine", lambda: "arm64")
    assert device.cpu_model() == "arm64"


def test_cpu_vector_extensions_names_the_widest_the_flags_list(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    for flags, expected in (("fpu sse avx avx2 fma", "AVX2"),
                            ("avx avx2 avx512f avx512_vnni avx512_bf16", "AVX-512 BF16"),
                            ("avx avx2 avx512f", "AVX-512"), ("fp asimd", "NEON"),
                            ("fpu sse", None)):
        key = "Features" if "asimd" in flags else "flags"
        cpuinfo.write_text(f"processor\t: 0\nmodel name\t: X\n{key}\t\t: {flags}\n")
        assert device.cpu_vector_extensions(str(cpuinfo)) == expected, flags
    assert device.cpu_vector_extensions(str(tmp_path / "missing")) is None
