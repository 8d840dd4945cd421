"""Where the dense model of a pruning run comes from: the built-in toy task, a BERT checkpoint
(`--init_checkpoint`: TF1, Hugging Face or keras-hub preset), a keras-hub classifier's `.keras`
file (`--keras_hub_model`) or a fine-tuned keras-flop classifier (`--dense_model`). Each source
gives the model's config and vocabulary before any data is read, and the dense classifier for
the finetune step."""

import os

from apps import common


class ModelSource:
    """`config` and `vocab` (its tokenizer file) are known on construction; `data_dir` is the
    GLUE directory; `dense_model` builds the dense classifier."""

    def dense_model(self, config, num_labels):
        """`(model, fine_tuned)`: the dense classifier of `config` (the source's config with
        the run's dropout overrides) with `num_labels` outputs."""
        raise NotImplementedError


class ToySource(ModelSource):
    """The built-in toy sentiment task: its data written to `<write_dir>/data`, a tiny
    randomly initialized BERT."""

    def __init__(self, args, write_dir):
        from apps import toy_task

        self.data_dir, self.vocab = toy_task.write_toy_glue(os.path.join(write_dir, "data"),
                                                            seed=args.seed)
        self.config = toy_task.toy_config()

    def dense_model(self, config, num_labels):
        import keras_flop

        return keras_flop.build_bert_classifier(config, num_labels), False


class CheckpointSource(ModelSource):
    """A BERT checkpoint, pre-trained or fine-tuned: a google-research/bert TF1 checkpoint, a
    Hugging Face BERT-family directory or a keras-hub preset directory, told apart by its files
    (`keras_flop.checkpoints.detect`)."""

    def __init__(self, args, write_dir):
        from keras_flop.checkpoints.detect import describe_checkpoint

        if args.init_checkpoint is None:
            raise common.UsageError("--init_checkpoint is required with --task.")
        self.path = args.init_checkpoint
        self.data_dir = args.data_dir
        self.checkpoint = describe_checkpoint(args.init_checkpoint, args.bert_config_file,
                                              args.vocab_file)
        self.config, self.vocab = self.checkpoint.config, self.checkpoint.vocab_file

    def dense_model(self, config, num_labels):
        model, _, fine_tuned = self.checkpoint.load(num_labels=num_labels, config=config)
        return model, fine_tuned


class KerasHubSource(ModelSource):
    """A fine-tuned keras-hub classifier's `.keras` file; the vocabulary of its saved
    preprocessor, else --vocab_file."""

    def __init__(self, args, write_dir):
        import keras_flop
        from keras_flop.checkpoints.keras_file import load_keras_file

        self.path = args.keras_hub_model
        self.data_dir = args.data_dir
        self.hub_model = load_keras_file(self.path, "--keras_hub_model")
        self.config = keras_flop.from_keras_hub(self.hub_model).bert_config
        self.vocab = args.vocab_file
        if self.vocab is None:
            if getattr(self.hub_model, "preprocessor", None) is None:
                raise common.UsageError(f"{self.path} holds no preprocessor: pass --vocab_file.")
            # A RoBERTa-family tokenizer's files are written beside, under their own names.
            self.vocab = keras_flop.preprocessor_from_keras_hub(
                self.hub_model.preprocessor, os.path.join(write_dir, "keras_hub", "vocab.txt"),
                args.max_seq_length).tokenizer.vocab_file

    def dense_model(self, config, num_labels):
        import keras_flop

        hub = keras_flop.from_keras_hub(self.hub_model, num_labels=num_labels)
        model = keras_flop.BertClassifier(config, hub.num_labels)  # with dropout overrides
        model.set_weights(hub.get_weights())
        return model, True


class DenseModelSource(ModelSource):
    """A fine-tuned keras-flop classifier's `.keras` file (apps.glue_finetune's model.keras,
    or a run's finetune/model.keras): the tokenizer file beside it (vocab.txt, vocab.json or
    sentencepiece.bpe.model, as `copy_tokenizer` leaves it), else --vocab_file."""

    def __init__(self, args, write_dir):
        from keras_flop.checkpoints.keras_file import load_keras_file
        from keras_flop.models.bert import bert_network
        from keras_flop.text.subword import tokenizer_file_in

        path = self.path = args.dense_model
        self.data_dir = args.data_dir
        self.task = args.task
        loaded = load_keras_file(path, "--dense_model")
        try:
            network = bert_network(loaded)
        except ValueError as error:
            raise common.UsageError(f"--dense_model {path}: {error}") from None
        if not network.is_dense():
            raise common.UsageError(f"--dense_model {path} has gates or factorized layers: "
                                    "pass the dense fine-tuned model (e.g. "
                                    "finetune/model.keras), not a pruning model.")
        beside = os.path.dirname(os.path.abspath(path))
        self.vocab = args.vocab_file or tokenizer_file_in(beside)
        if self.vocab is None:
            raise common.UsageError(f"No tokenizer for --dense_model: {beside} holds no "
                                    "vocab.txt, vocab.json or sentencepiece.bpe.model; pass "
                                    "--vocab_file.")
        if not os.path.exists(self.vocab):
            raise common.UsageError(f"No vocabulary for --dense_model: {self.vocab} does not "
                                    "exist; pass --vocab_file.")
        self.network = network
        self.config = network.bert_config

    def dense_model(self, config, num_labels):
        import keras_flop

        given = self.network
        if given.num_labels != num_labels:
            raise common.UsageError(f"--dense_model {self.path} has {given.num_labels} "
                                    f"outputs; task {self.task} needs {num_labels}.")
        model = keras_flop.BertClassifier(config, given.num_labels,
                                          layer_shapes=given.layer_shapes)  # dropout overrides
        model.set_weights(given.get_weights())
        return model, True


def model_source(args, write_dir):
    """The source the flags name; toy data and a keras-hub vocabulary go under `write_dir`."""
    if args.toy:
        return ToySource(args, write_dir)
    if args.keras_hub_model:
        return KerasHubSource(args, write_dir)
    if args.dense_model:
        return DenseModelSource(args, write_dir)
    return CheckpointSource(args, write_dir)
