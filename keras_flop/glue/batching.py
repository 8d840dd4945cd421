"""Length-bucketed batches: tokenized examples grouped by length, each batch padded only to a
bucket boundary, so compute follows the text instead of `max_seq_length`.

GLUE sentences are short (SST-2 averages about 12 word pieces with `[CLS]`/`[SEP]`), so padding
every batch to 128 spends most of a step on padding. Here:
- training batches are drawn from a permutation of the examples seeded by `(seed, epoch)`;
  within windows of `WINDOW_BATCHES` batches the examples are ordered by length and cut into
  batches, and the batches of the epoch are shuffled, so each batch holds examples of similar
  length while every epoch still sees every example once, in a new order;
- evaluation batches hold examples in length order (labels travel with them), prediction
  batches keep the examples' order;
- a batch is padded to the smallest boundary that fits its longest member, so under XLA there
  are at most `len(boundaries)` sequence lengths (each with the full batch size, plus one
  smaller last batch).
An epoch has `ceil(n / batch_size)` batches either way, and the plan of every epoch depends
only on the seed, the epoch and the lengths, which makes runs repeatable and resumable.
"""

import itertools

import numpy as np
import tensorflow as tf

# Batches ordered by length together; larger windows pad less but mix lengths less.
WINDOW_BATCHES = 64


def default_boundaries(max_seq_length):
    """Bucket boundaries up to `max_seq_length`: every 8 to 32, every 16 to 64, then steps of
    at most a third (96, 128, 192, 256, 384, 512), so padding adds at most a third.

    Example:
    >>> from keras_flop.glue.batching import default_boundaries
    >>> default_boundaries(128)
    [8, 16, 24, 32, 48, 64, 96, 128]
    >>> default_boundaries(100)
    [8, 16, 24, 32, 48, 64, 96, 100]
    """
    steps = [8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512]
    return [b for b in steps if b < max_seq_length] + [int(max_seq_length)]


def check_boundaries(boundaries, max_seq_length):
    """Sorted positive boundaries ending at `max_seq_length`; errors say what is wrong.

    Example:
    >>> from keras_flop.glue.batching import check_boundaries
    >>> check_boundaries([32, 16, 32], max_seq_length=64)
    [16, 32, 64]
    >>> check_boundaries([16, 128], max_seq_length=64)
    Traceback (most recent call last):
    ...
    ValueError: Bucket boundaries must not exceed max_seq_length (64); got [16, 128].
    """
    boundaries = sorted({int(b) for b in boundaries})
    if not boundaries or boundaries[0] < 1:
        raise ValueError(f"Bucket boundaries must be positive integers; got {boundaries}.")
    if boundaries[-1] > max_seq_length:
        raise ValueError(f"Bucket boundaries must not exceed max_seq_length "
                         f"({max_seq_length}); got {boundaries}.")
    if boundaries[-1] < max_seq_length:
        boundaries.append(int(max_seq_length))
    return boundaries


def epoch_plan(lengths, batch_size, seed, epoch, by_length=True):
    """Example indices of each training batch of `epoch`: a list of int arrays.

    Example:
    >>> import numpy as np
    >>> from keras_flop.glue.batching import epoch_plan
    >>> lengths = np.array([5, 30, 6, 28, 7, 31])
    >>> plan = epoch_plan(lengths, batch_size=2, seed=0, epoch=0)
    >>> sorted(np.concatenate(plan).tolist())  # every example once
    [0, 1, 2, 3, 4, 5]
    >>> sorted(lengths[batch].tolist() for batch in plan)  # batches of similar length
    [[5, 6], [7, 28], [30, 31]]
    >>> all(np.array_equal(a, b) for a, b in zip(plan, epoch_plan(lengths, 2, 0, epoch=0)))
    True
    """
    lengths = np.asarray(lengths)
    rng = np.random.default_rng([int(seed) & 0x7FFFFFFF, int(epoch)])
    order = rng.permutation(len(lengths))
    batches = []
    window = batch_size * WINDOW_BATCHES
    for start in range(0, len(order), window):
        chunk = order[start:start + window]
        if by_length:  # stable: equal lengths keep their random order
            chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def ordered_plan(lengths, batch_size, by_length=True):
    """Example indices of each evaluation batch: in length order, or in the given order.

    Example:
    >>> from keras_flop.glue.batching import ordered_plan
    >>> [batch.tolist() for batch in ordered_plan([5, 30, 6, 28, 7], batch_size=2)]
    [[0, 2], [4, 3], [1]]
    >>> [batch.tolist() for batch in ordered_plan([5, 30, 6], 2, by_length=False)]
    [[0, 1], [2]]
    """
    order = np.argsort(lengths, kind="stable") if by_length else np.arange(len(lengths))
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


class TokenizedExamples:
    """Packed examples held once in memory, batched on demand by a plan of indices.

    Args:
        token_ids, segment_ids: ragged int32 `[n, (length)]` tensors, unpadded.
        targets: optional array `[n, ...]` or dict of arrays travelling with each example as
            the second element (labels; or labels and fixed teacher outputs).
        boundaries: bucket boundaries (see `default_boundaries`); the last is the longest
            allowed length.
        pad_to_max_length: pad every batch to the last boundary (fixed shapes).
        extra_features: optional dict of arrays `[n, ...]` added to each batch's features
            (e.g. precomputed `teacher_logits`).

    Example:
    >>> import numpy as np, tensorflow as tf
    >>> from keras_flop.glue.batching import TokenizedExamples, ordered_plan
    >>> token_ids = tf.ragged.constant([[2, 5, 3], [2, 5, 6, 7, 8, 9, 10, 11, 12, 3],
    ...                                 [2, 6, 3]], tf.int32)
    >>> examples = TokenizedExamples(token_ids, tf.zeros_like(token_ids),
    ...                              targets=np.array([0, 1, 0]), boundaries=[8, 16])
    >>> plan = ordered_plan(examples.lengths, batch_size=2)
    >>> [batch.tolist() for batch in plan]
    [[0, 2], [1]]
    >>> for features, labels in examples.dataset(plan):  # each batch padded to its bucket
    ...     print(tuple(features["token_ids"].shape), labels.numpy())
    (2, 8) [0 0]
    (1, 16) [1]
    >>> examples.distinct_shapes(plan)
    [(1, 16), (2, 8)]
    >>> len(list(examples.shuffled_epochs(batch_size=2, seed=0)))  # one epoch's batches
    2
    """

    def __init__(self, token_ids, segment_ids, targets=None, boundaries=(128,),
                 pad_to_max_length=False, pad_id=0, extra_features=None):
        self.token_ids = token_ids
        self.segment_ids = segment_ids
        self.lengths = token_ids.row_lengths().numpy()
        self.targets = targets
        self.boundaries = [int(b) for b in boundaries]
        if self.lengths.max(initial=0) > self.boundaries[-1]:
            raise ValueError(f"An example has {self.lengths.max()} tokens, more than the last "
                             f"bucket boundary {self.boundaries[-1]}.")
        self.pad_to_max_length = bool(pad_to_max_length)
        self.pad_id = int(pad_id)
        self.extra_features = dict(extra_features or {})
        for name, values in self.extra_features.items():
            if len(values) != len(self.lengths):
                raise ValueError(f"Extra feature {name!r} has {len(values)} rows for "
                                 f"{len(self.lengths)} examples.")

    def with_features(self, **features):
        """The same examples with more per-example features (arrays `[n, ...]`)."""
        return TokenizedExamples(self.token_ids, self.segment_ids, self.targets, self.boundaries,
                                 self.pad_to_max_length, self.pad_id,
                                 {**self.extra_features, **features})

    def select(self, indices=None, pad_to_max_length=None):
        """The examples at `indices` (all by default), in that order, batched with
        `pad_to_max_length` (default: as these are); nothing is tokenized again.

        >>> examples = TokenizedExamples(tf.ragged.constant([[2, 5, 3], [2, 6, 7, 3]]),
        ...                              tf.ragged.constant([[0, 0, 0], [0, 0, 0, 0]]),
        ...                              targets=np.array([0, 1]), boundaries=[8, 16])
        >>> picked = examples.select([1], pad_to_max_length=True)
        >>> len(picked), picked.lengths.tolist(), picked.targets.tolist(), picked.pad_to_max_length
        (1, [4], [1], True)
        """
        indices = np.arange(len(self)) if indices is None else np.asarray(indices, np.int64)

        def pick(values):
            if values is None:
                return None
            if isinstance(values, dict):
                return {k: pick(v) for k, v in values.items()}
            return np.asarray(values)[indices]

        return TokenizedExamples(
            tf.gather(self.token_ids, indices), tf.gather(self.segment_ids, indices),
            pick(self.targets), self.boundaries,
            self.pad_to_max_length if pad_to_max_length is None else pad_to_max_length,
            self.pad_id, {k: pick(v) for k, v in self.extra_features.items()})

    def __len__(self):
        return len(self.lengths)

    def dataset(self, plan):
        """A `tf.data.Dataset` with one batch per entry of `plan` (arrays of indices)."""
        sizes = [len(batch) for batch in plan]
        indices = tf.RaggedTensor.from_row_lengths(
            np.concatenate(plan).astype(np.int64) if plan else np.zeros(0, np.int64),
            np.asarray(sizes, np.int64))
        return self._batches(tf.data.Dataset.from_tensor_slices(
            (indices, np.asarray([self.padded_width(batch) for batch in plan], np.int32))))

    def shuffled_epochs(self, batch_size, seed):
        """Training batches for `fit(epochs=...)`: iteration `e` of the dataset (Keras starts
        one per epoch) yields `epoch_plan(..., seed, e)`."""
        iterations = itertools.count()

        def generate():
            epoch = next(iterations)
            for batch in epoch_plan(self.lengths, batch_size, seed, epoch,
                                    by_length=not self.pad_to_max_length):
                yield batch.astype(np.int64), np.int32(self.padded_width(batch))

        source = tf.data.Dataset.from_generator(generate, output_signature=(
            tf.TensorSpec([None], tf.int64), tf.TensorSpec([], tf.int32)))
        steps = -(-len(self) // batch_size)
        return self._batches(source.apply(tf.data.experimental.assert_cardinality(steps)))

    def padded_width(self, batch):
        """The length a batch of these example indices is padded to."""
        longest = int(self.lengths[batch].max())
        if self.pad_to_max_length:
            return self.boundaries[-1]
        return next(b for b in self.boundaries if b >= longest)

    def _batches(self, source):
        token_ids, segment_ids, pad_id = self.token_ids, self.segment_ids, self.pad_id
        targets, extra = self.targets, {k: tf.constant(v) for k, v in self.extra_features.items()}

        def gather(index, width):
            shape = tf.stack([tf.size(index, out_type=tf.int64), tf.cast(width, tf.int64)])
            ids = tf.gather(token_ids, index)
            features = {
                "token_ids": ids.to_tensor(pad_id, shape=shape),
                "segment_ids": tf.gather(segment_ids, index).to_tensor(0, shape=shape),
                "padding_mask": tf.sequence_mask(ids.row_lengths(), width),
                **{name: tf.gather(values, index) for name, values in extra.items()}}
            if targets is None:
                return features
            return features, tf.nest.map_structure(lambda t: tf.gather(t, index), targets)

        return source.map(gather, num_parallel_calls=tf.data.AUTOTUNE,
                          deterministic=True).prefetch(tf.data.AUTOTUNE)

    def predict(self, model, batch_size=32):
        """`model`'s inference outputs for every example, in the examples' order (computed
        in length-ordered batches, the cheapest)."""
        plan = ordered_plan(self.lengths, batch_size)
        dataset = self.dataset(plan)
        if self.targets is not None:
            dataset = dataset.map(lambda features, _: features)
        outputs = np.asarray(model.predict(dataset, verbose=0))
        ordered = np.empty_like(outputs)
        ordered[np.concatenate(plan)] = outputs
        return ordered

    def length_shares(self, batch_size):
        """`{padded length: share of batches}` of these examples in length-ordered batches of
        `batch_size`: the lengths a service running them calls the model at, for a latency
        table of the task's own lengths (`keras_flop.measure_latency_table(lengths=...)`).

        Example:
        >>> token_ids = tf.ragged.constant([[2, 3]] * 3 + [[2] * 12], tf.int32)
        >>> TokenizedExamples(token_ids, tf.zeros_like(token_ids),
        ...                   boundaries=[8, 16]).length_shares(2)
        {8: 0.5, 16: 0.5}
        """
        widths = [self.padded_width(batch) for batch in ordered_plan(self.lengths, batch_size)]
        return {int(w): widths.count(w) / len(widths) for w in sorted(set(widths))}

    def distinct_shapes(self, plan):
        """The distinct `(batch size, padded length)` pairs of a plan (bounded: see module)."""
        return sorted({(len(batch), self.padded_width(batch)) for batch in plan})
