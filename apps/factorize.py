"""Import a TF1 BERT checkpoint and SVD-factorize it into a pruning model.

    python -m apps.factorize --bert_config_file DIR/bert_config.json \\
        --checkpoint DIR/bert_model.ckpt --output_dir runs/factorized [--finetuned]

Writes `OUTPUT_DIR/pruning_model.keras` (load it with `keras.saving.load_model`; the pruning
app takes it with `--start_from prune`), `bert_config.json` and `factorize.json`, and prints the
rank kept and the relative reconstruction error `‖W - PQ‖ / ‖W‖` of every layer.
"""

import os
import shutil

import numpy as np

from apps import common


def build_parser():
    parser = common.parser("apps.factorize", __doc__)
    parser.add_argument("--bert_config_file", required=True,
                        help="The checkpoint's bert_config.json.")
    parser.add_argument("--checkpoint", required=True,
                        help="TF1 checkpoint prefix (.../bert_model.ckpt) or its directory.")
    parser.add_argument("--finetuned", action="store_true",
                        help="The checkpoint carries a classifier head (run_classifier.py); "
                             "without it a fresh head of --num_labels is initialized.")
    parser.add_argument("--num_labels", type=int, default=2,
                        help="Classes of the fresh head (without --finetuned).")
    parser.add_argument("--energy", type=float, default=None,
                        help="Keep the smallest rank holding this fraction of Σσ² (default: "
                             "full rank).")
    parser.add_argument("--sigma", choices=("full", "sqrt"), default="full",
                        help="Where the singular values go: full puts them in Q (P = U, "
                             "Q = ΣVᵀ), sqrt splits them (P = U√Σ, Q = √ΣVᵀ).")
    parser.add_argument("--rank_policy", choices=("min", "input"), default="min",
                        help="Full rank is min(in, out), or in (the original FLOP code; the "
                             "extra rows of Q are zero).")
    common.add_common_flags(parser)
    return parser


def factorization_table(dense, network):
    """Per layer: name, shape, rank kept, relative reconstruction error."""
    from keras_flop.lagrangian.factorization import encoder_dense_layers

    rows = []
    for layer in encoder_dense_layers(dense):
        factored = network.get_layer(layer.name)
        kernel = np.asarray(layer.kernel, np.float64)
        product = np.asarray(factored.p_kernel, np.float64) @ np.asarray(factored.q_kernel)
        error = np.linalg.norm(kernel - product) / max(np.linalg.norm(kernel), 1e-30)
        rows.append({"layer": layer.name, "shape": list(kernel.shape), "rank": factored.rank,
                     "full_rank": min(kernel.shape), "relative_error": float(error)})
    return rows


@common.main_wrapper
def run(args):
    import keras_flop
    from keras_flop.checkpoints.tf1 import has_classifier_head

    if not args.output_dir:
        raise common.UsageError("--output_dir is required.")
    common.set_seed(args.seed, not args.nondeterministic)
    config = keras_flop.BertConfig.from_json_file(args.bert_config_file)
    if args.finetuned and not has_classifier_head(args.checkpoint):
        raise common.UsageError(f"--finetuned was given but checkpoint {args.checkpoint} has no "
                                "classifier head (output_weights).")
    dense = keras_flop.load_tf1_checkpoint(
        args.checkpoint, config=config, num_labels=None if args.finetuned else args.num_labels)
    output_dir = common.prepare_output_dir(args.output_dir, args.overwrite)
    pruning_model = keras_flop.factorize(dense, energy=args.energy, sigma=args.sigma,
                                         rank_policy=args.rank_policy)
    rows = factorization_table(dense, pruning_model.network)
    print(f"{'layer':32s} {'shape':>12s} {'rank':>6s} {'of':>5s} {'rel. error':>11s}")
    for row in rows:
        shape = "x".join(map(str, row["shape"]))
        print(f"{row['layer']:32s} {shape:>12s} {row['rank']:6d} {row['full_rank']:5d} "
              f"{row['relative_error']:11.2e}")
    path = common.save_model(pruning_model, os.path.join(output_dir, "pruning_model.keras"))
    shutil.copyfile(args.bert_config_file, os.path.join(output_dir, "bert_config.json"))
    vocab = os.path.join(os.path.dirname(os.path.abspath(args.bert_config_file)), "vocab.txt")
    if os.path.exists(vocab):
        shutil.copyfile(vocab, os.path.join(output_dir, "vocab.txt"))
    common.write_json(os.path.join(output_dir, "factorize.json"),
                      {"args": vars(args), "layers": rows,
                       "expected_sparsity": float(keras_flop.expected_sparsity(pruning_model))})
    start = float(keras_flop.expected_sparsity(pruning_model))
    if start < 0:
        print(f"Expected sparsity {start:.3f}: negative, because at full rank the factors P "
              "(a×k) and Q (k×b) of an a×b kernel hold more weights than the kernel; pruning "
              "closes ranks until the model is smaller than the dense one.")
    print(f"Pruning model written to {path}")
    return path


def main(argv=None):
    return run(build_parser(), argv)


if __name__ == "__main__":
    main()
