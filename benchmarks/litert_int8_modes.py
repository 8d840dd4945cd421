"""LiteRT's INT8 modes on one fine-tuned model: int8 weights alone against integer activations.

    python benchmarks/litert_int8_modes.py --model RUN/finetune_compact/model.keras \\
        --task sst2 [--data ../shared/data] [--calibration_examples 200]

The model (its vocab.txt beside it or in the apps.prune run's `finetune/`) is converted to
LiteRT from one SavedModel (`keras_flop.export.float_files.litert_flatbuffers`) in each mode of the
converter:

- `float32`: no quantization (the `litert` export);
- `dynamic range`: int8 weights, activations quantized per call from their range in it (the
  `litert_int8` export);
- `int8 activations`: int8 weights and int8 activations whose ranges are calibrated once on
  `--calibration_examples` training examples (drawn by `--seed`; the dev set is never seen),
  the converter's full-integer mode with float kernels where no int8 kernel exists;
- `16x8`: the same calibration with int16 activations and int8 weights.

A mode the converter refuses is printed with its error. Each file computes the whole dev set in
the LiteRT interpreter (its dev metric and its agreement with the Keras model's predictions);
then Keras and the files are timed in turn (`keras_flop.latency.timing.calls_in_turn`) at
batch 8 on length-bucketed dev batches and on dev batches padded to 128.
"""

import argparse
import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from support import (add_model_arguments, feature_batches, machine_header,  # noqa: E402
                     model_vocabulary, ms_and_speedup)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_arguments(parser)
    parser.add_argument("--calibration_examples", type=int, default=200,
                        help="Training examples whose activation ranges calibrate the "
                             "integer-activation modes (one per call, padded to 128).")
    parser.add_argument("--seed", type=int, default=0, help="Draws the calibration examples.")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--timed_batches", type=int, default=24)
    args = parser.parse_args(argv)
    if args.calibration_examples < 1:
        parser.error("--calibration_examples must be at least 1.")
    model_vocabulary(parser, args)
    return args


def modes(calibration):
    """`{mode: converter settings}` (`litert_flatbuffers`); `calibration` is the
    representative dataset of the integer-activation modes."""
    import tensorflow as tf

    int8 = {"optimizations": [tf.lite.Optimize.DEFAULT]}
    return {"float32": {},
            "dynamic range": int8,
            "int8 activations": {**int8, "representative_dataset": calibration},
            "16x8": {**int8, "representative_dataset": calibration, "supported_ops": [
                tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8,
                tf.lite.OpsSet.TFLITE_BUILTINS]}}


def main(argv=None):
    args = parse_args(argv)
    import keras
    import numpy as np

    from keras_flop import glue
    from keras_flop.export import quantized, runtimes
    from keras_flop.export.float_files import float32_copy, litert_flatbuffers, write_file
    from keras_flop.latency.timing import calls_in_turn, compiled_forward
    from keras_flop.training import data as training_data

    model = keras.saving.load_model(args.model, compile=False)
    glue_dir = os.path.join(args.data, "glue")
    data = training_data.load_task_data(glue_dir, args.task, args.vocab, 128,
                                        max_train_examples=args.calibration_examples,
                                        seed=args.seed, pad_to_max_length=True)
    bucketed = training_data.load_task_data(glue_dir, args.task, args.vocab, 128,
                                            need_train=False)
    split = next(iter(data.evals))
    task = glue.get_task(data.task)
    metric = f"eval_{task.main_metric}"

    batches, labels = feature_batches(bucketed.eval_dataset(split, 8))
    padded, _ = feature_batches(data.eval_dataset(split, 8))
    calibration_batches, _ = feature_batches(data.eval_dataset("train", 1))

    def calibration():
        for batch in calibration_batches:
            yield {key: batch[key] for key in runtimes.INPUTS}

    forward = compiled_forward(model)
    keras_logits = np.concatenate([np.asarray(forward(x)) for x in batches])
    keras_value = glue.compute_metrics(task, keras_logits, labels)[metric]
    network = float32_copy(getattr(model, "network", model))
    rows, timed = [], {"keras": lambda x: np.asarray(forward(x))}
    with tempfile.TemporaryDirectory() as directory:
        for index, (mode, settings) in enumerate(modes(calibration).items()):
            print(f"== {mode}", flush=True)
            try:
                flatbuffer, = litert_flatbuffers(network, [settings])
            except Exception as error:  # the converter's refusal is the measurement
                message = str(error).strip().splitlines()[0][:160]
                print(f"   the converter refused it: {message}", flush=True)
                rows.append((mode, None, None, None, message))
                continue
            path = write_file(os.path.join(directory, f"{index}.tflite"), flatbuffer)
            run = runtimes.LiteRTRunner(path, threads=args.threads)
            logits = runtimes.predict(run, batches)
            value = glue.compute_metrics(task, logits, labels)[metric]
            agreement = quantized.agreement(keras_logits, logits)
            rows.append((mode, value, agreement, len(flatbuffer) / 1e6, ""))
            print(f"   {metric[5:]} {value:.4f}, agrees {agreement:.1%}", flush=True)
            timed[mode] = run
        count = min(args.timed_batches, len(batches))
        rounds = {"length-bucketed": calls_in_turn(timed, batches[:count]),
                  "padded to 128": calls_in_turn(timed, padded[:count])}
    print(f"\n{machine_header()}")
    print(f"{args.model}: {task.name} dev ({len(labels)} examples) in the LiteRT interpreter "
          f"on {args.threads} threads; Keras {metric[5:]} {keras_value:.4f}; "
          f"{len(calibration_batches)} training examples calibrate the activation ranges.\n")
    print(f"| mode | dev {metric[5:]} | vs Keras (points) | agrees with Keras | MB | "
          "batch 8 length-bucketed: ms; speedup | batch 8 padded to 128: ms; speedup |")
    print("|---|---|---|---|---|---|---|")
    for mode, value, agreement, megabytes, refused in [("keras", keras_value, 1.0, None, "")] \
            + rows:
        if refused:
            print(f"| {mode} | refused: {refused} | | | | | |")
            continue
        cells = []
        for table in rounds.values():
            ms, speedup = ms_and_speedup(table, mode, count)
            cells.append(f"{ms:.2f}; {speedup[0]:.2f}x "
                         f"({speedup[1]:.2f}–{speedup[2]:.2f})")
        size = "–" if megabytes is None else f"{megabytes:.1f}"
        print(f"| {mode} | {value:.4f} | {100 * (value - keras_value):+.2f} | {agreement:.1%} | "
              f"{size} | {cells[0]} | {cells[1]} |")
    print(f"\nTimed: {count} dev batches of 8 of each kind, median round of 3 (min–max), "
          "every file and Keras in turn.")
    return rows


if __name__ == "__main__":
    main()
