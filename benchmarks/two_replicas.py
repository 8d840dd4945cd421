"""Runs an app in one process whose CPU is split into two logical devices, so that
`--strategy mirrored` trains two replicas, each on half of every global batch, the split two
workers of `--strategy multi_worker` make:

    python benchmarks/two_replicas.py apps.prune --strategy mirrored --output_dir DIR ...

(`benchmarks/multi_worker_toy.py` compares two workers with it.)
"""

import runpy
import sys


def main():
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])
    module = sys.argv[1]
    sys.argv = [module] + sys.argv[2:]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
