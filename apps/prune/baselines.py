"""The compact models a user would pick instead of pruning, made by the compact step of
`--method drop_layers` (the dense model's bottom `--keep_layers` encoder layers, Sajjad et al.)
or `--method student` (the pre-trained `--student_checkpoint` with a fresh classifier head).
The steps after it are a pruned model's: fine-tuning (distilled from the dense model with
`--final_distillation_weight`), export and the report, which times it against the dense model."""

from apps import common


def compact(run):
    """The baseline's model in `compact/`: its sizes beside the dense model's (`info.json`),
    its dev results and `model.keras`."""
    import keras_flop

    args = run.args
    dense = run.load("finetune")
    layers = dense.bert_config.num_hidden_layers
    if args.method == "drop_layers":
        if args.keep_layers > layers:
            raise common.UsageError(f"--keep_layers {args.keep_layers} is more than the dense "
                                    f"model's {layers} encoder layers.")
        model = keras_flop.drop_layers(dense, args.keep_layers)
        how = f"the bottom {args.keep_layers} of the dense model's {layers} encoder layers"
    else:
        model = student_model(run)
        how = (f"the pre-trained {args.student_checkpoint} "
               f"({model.bert_config.num_hidden_layers} encoder layers, hidden size "
               f"{model.bert_config.hidden_size}) with a fresh classifier head")
    info = size_report(dense, model)
    info["baseline"] = how
    keras_flop.write_parameter_report(info, run.out("compact"))
    print(f"   compact: {how}; {info['pruned_total_params']:,} of {info['total_params']:,} "
          f"parameters ({info['actual_compact_rate']:.3f})")
    run.evaluate_to(model, "compact")
    common.save_model(model, run.out("compact", "model.keras"))


def student_model(run):
    """The `--student_checkpoint` classifier for the run's task, its head drawn from --seed;
    its vocabulary must be the dense model's (the data is tokenized once, with that one)."""
    import keras

    from keras_flop.checkpoints.detect import describe_checkpoint

    args = run.args
    try:
        checkpoint = describe_checkpoint(args.student_checkpoint)
    except (OSError, ValueError) as error:
        raise common.UsageError(f"--student_checkpoint: {error}") from None
    if read_vocabulary(checkpoint.vocab_file) != read_vocabulary(run.vocab):
        raise common.UsageError(f"--student_checkpoint {args.student_checkpoint} has another "
                                f"vocabulary ({checkpoint.vocab_file}) than the dense model "
                                f"({run.vocab}): pass a student with the same word pieces.")
    keras.utils.set_random_seed(args.seed)
    model, _, _ = checkpoint.load(num_labels=run.data.task.num_labels)
    return model


def read_vocabulary(path):
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f]


def size_report(dense, model):
    """The parameter counts the report reads, of `model` against `dense` (the encoder's dense
    kernels, and the whole model)."""
    def kernels(network):
        return sum(int(layer.kernel.shape[0] * layer.kernel.shape[1])
                   for layer in network.encoder_dense_layers())

    origin, kept = kernels(dense), kernels(model)
    total, left = dense.count_params(), model.count_params()
    return {"dense_origin_params": origin, "dense_pruned_params": kept,
            "dense_sparsity": 1.0 - kept / origin, "total_params": total,
            "pruned_total_params": left, "actual_compact_rate": left / total,
            "num_hidden_layers": model.bert_config.num_hidden_layers}


def structure(method):
    """What a baseline removes, for report.json's `structure`."""
    return {"drop_layers": "layers", "student": "model"}.get(method)


def describe(args, info):
    """The report's words on how the compact model was made."""
    return f"Method `{args.method}` (a baseline, not pruning: {info['baseline']}), "
