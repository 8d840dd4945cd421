"""The apps' result files: `eval_results.txt` (the original BERT's `key = value`) with its JSON
twin, and `test_results.tsv` in GLUE's submission format."""

import os

from apps import common


def write_eval_results(directory, results, extra):
    """`eval_results.txt` (`key = value`, the original BERT's format) and `.json`."""
    os.makedirs(directory, exist_ok=True)
    flat = dict(extra)
    for split, metrics in results.items():
        prefix = "" if split in ("dev", "dev_matched") else f"{split}_"
        flat.update({f"{prefix}{k}" if prefix else k: v for k, v in metrics.items()})
    common.write_text(os.path.join(directory, "eval_results.txt"),
                      "".join(f"{key} = {flat[key]}\n" for key in sorted(flat)))
    common.write_json(os.path.join(directory, "eval_results.json"), flat)
    return flat


def write_test_results(directory, model, data, batch_size):
    """`test_results.tsv` (GLUE submission format) for every test split present."""
    from keras_flop import glue

    paths = []
    for split, examples in data.tests.items():
        outputs = model.predict(data.test_dataset(split, batch_size), verbose=0)
        name = "test_results.tsv" if split == "test" else f"{split}_results.tsv"
        paths.append(glue.write_test_predictions(os.path.join(directory, name), data.task,
                                                 examples, outputs))
    return paths
