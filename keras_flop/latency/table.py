"""The `latency` cost: block times measured on this device, and the expected latency under the
gates.

A `LatencyTable` holds, for one batch size and sequence length, the time of one attention block
as a function of its kept heads (every count 0..A), of one FFN block as a function of its kept
units (a grid over 0..F, linear in between) and the fixed cost of the rest of the model
(embeddings, LayerNorms, residual sums, pooler, classifier). The model's latency is predicted
as `fixed + Σ_layers T_att(heads) + T_ffn(units)`. `measure_latency_table` measures one;
`save`/`load` keep it as JSON, so a table measured on the serving machine prunes for it
anywhere.

The expected latency under the gates, `E[T(H)]` for a block whose kept count `H` is a sum of
independent Bernoulli gates, is approximated by

    E[T(H)] ≈ P(H = 0) · T(0) + P(H > 0) · T(E[H | H > 0]),   E[H | H > 0] = E[H] / P(H > 0).

It is exact when `T` is affine on `[1, N]`, a block's time modelled as a fixed overhead (paid
by any kept unit, lost only when every unit goes) plus a cost per unit; the jump at 0 is where
the plain `T(E[H])` is furthest off (a block with every gate at `P = 1/2` would be
costed as half a block although it is removed with probability `2^-N` only). For piecewise
linear `T` it is computed without a division, as
`P0·T(0) + P·T(1) + Σ_i Δs_i · max(0, E[H] - x_i · P)` over the breakpoints `x_i ≥ 1` with
slope changes `Δs_i` (the perspective of `T`), which is differentiable in the gates'
`log_alpha` and equals `T(count)` once the gates have decided. A block gate over the whole
block mixes it with `T(0)`.
"""

import json
import math
import os
import statistics
import time

import numpy as np
from keras import ops

from keras_flop.models.config import BertConfig
from keras_flop.gates.cost import ExpectedCounts, RealizedCounts, require_account
from keras_flop.latency.device import describe_devices
from keras_flop.latency.timing import PerCallTimer
from keras_flop.layers.factorized_dense import FactorizedDense

FORMAT = "keras_flop.latency_table"
VERSION = 1
# The model dimensions a table is measured for; another model cannot use it.
MODEL_FIELDS = ("hidden_size", "num_attention_heads", "intermediate_size", "num_hidden_layers")


def _check_curve(name, counts, seconds, size):
    counts = [int(c) for c in counts]
    if counts != sorted(set(counts)) or counts[0] != 0 or counts[-1] != size:
        raise ValueError(f"The latency table's {name} counts must rise from 0 to {size} "
                         f"without repeats; got {counts}.")
    if len(seconds) != len(counts) or not all(math.isfinite(s) and s >= 0 for s in seconds):
        raise ValueError(f"The latency table's {name} times must be {len(counts)} finite "
                         f"values >= 0 (one per count); got {seconds}.")
    return counts, [float(s) for s in seconds]


class LatencyTable:
    """Measured block times of one model shape, batch size and sequence length.

    Args:
        model: `{field: value}` for the `MODEL_FIELDS` of the `BertConfig` measured.
        batch_size, seq_length: the input shape the times are for.
        attention_heads, attention_seconds: kept heads (0..A, rising) and the time of one
            attention block with that many heads (`T_att(0)` is the removed block, 0 when
            measured as a difference).
        ffn_units, ffn_seconds: kept FFN units (0..F, rising; linear in between) and the time
            of one FFN block with that many units.
        fixed_seconds: the rest of the model: embeddings, LayerNorms, residual sums, pooler,
            classifier, the removed blocks' bias additions.
        info: free-form facts about the measurement (device, TensorFlow version, rounds...),
            kept in the JSON file.

    Example (a hand-written table):
    >>> table = LatencyTable(
    ...     {"hidden_size": 8, "num_attention_heads": 2, "intermediate_size": 8,
    ...      "num_hidden_layers": 1}, batch_size=1, seq_length=4,
    ...     attention_heads=[0, 1, 2], attention_seconds=[0.0, 3.0, 4.0],
    ...     ffn_units=[0, 4, 8], ffn_seconds=[0.0, 2.0, 6.0], fixed_seconds=1.0)
    >>> table.ffn_time(6), table.dense_seconds()
    (4.0, 11.0)
    """

    def __init__(self, model, batch_size, seq_length, attention_heads, attention_seconds,
                 ffn_units, ffn_seconds, fixed_seconds, info=None):
        missing = [field for field in MODEL_FIELDS if field not in model]
        if missing:
            raise ValueError(f"The latency table's model lacks {missing}: measure the table "
                             "again with keras_flop.measure_latency_table.")
        self.model = {field: int(model[field]) for field in MODEL_FIELDS}
        for arg, value in (("batch_size", batch_size), ("seq_length", seq_length)):
            if isinstance(value, bool) or int(value) != value or value < 1:
                raise ValueError(f"`{arg}` must be a positive integer; got {value!r}.")
        self.batch_size, self.seq_length = int(batch_size), int(seq_length)
        self.attention_heads, self.attention_seconds = _check_curve(
            "attention", attention_heads, attention_seconds, self.model["num_attention_heads"])
        self.ffn_units, self.ffn_seconds = _check_curve(
            "ffn", ffn_units, ffn_seconds, self.model["intermediate_size"])
        if not (math.isfinite(fixed_seconds) and fixed_seconds >= 0):
            raise ValueError(f"`fixed_seconds` must be finite and >= 0; got {fixed_seconds}.")
        self.fixed_seconds = float(fixed_seconds)
        self.info = dict(info or {})

    # -- times of counts -------------------------------------------------------------------
    def _curve(self, kind):
        if kind == "attention":
            return self.attention_heads, self.attention_seconds
        return self.ffn_units, self.ffn_seconds

    def block_time(self, kind, count):
        """The time of one `kind` (`"attention"`, `"ffn"`) block keeping `count` units,
        interpolated linearly between the measured counts."""
        counts, seconds = self._curve(kind)
        return float(np.interp(count, counts, seconds))

    def attention_time(self, heads):
        return self.block_time("attention", heads)

    def ffn_time(self, units):
        return self.block_time("ffn", units)

    def expected_block_time(self, kind, units, any_kept):
        """`E[T(H)] ≈ P(H=0)·T(0) + P(H>0)·T(E[H] / P(H>0))` (module docstring) from the
        expected count `units = E[H]` and `any_kept = P(H > 0)`; tensors or numbers."""
        counts, _ = self._curve(kind)
        xs = [1] + [c for c in counts if c > 1]
        ts = [self.block_time(kind, x) for x in xs]
        total = (1.0 - any_kept) * self.block_time(kind, 0) + any_kept * ts[0]
        previous = 0.0
        for i in range(len(xs) - 1):
            slope = (ts[i + 1] - ts[i]) / (xs[i + 1] - xs[i])
            total = total + (slope - previous) * ops.maximum(units - xs[i] * any_kept, 0.0)
            previous = slope
        return total

    def dense_seconds(self, layer_shapes=None):
        """Predicted time of the model with `layer_shapes` (per layer `(heads, units)`; by
        default every layer whole)."""
        if layer_shapes is None:
            layer_shapes = [(self.model["num_attention_heads"],
                             self.model["intermediate_size"])] * self.model["num_hidden_layers"]
        return self.fixed_seconds + sum(self.attention_time(h) + self.ffn_time(u)
                                        for h, u in layer_shapes)

    # -- checks and files ------------------------------------------------------------------
    def check(self, config):
        """An error unless the table was measured for a model of `config`'s dimensions."""
        wrong = {field: (getattr(config, field), self.model[field]) for field in MODEL_FIELDS
                 if getattr(config, field) != self.model[field]}
        if wrong:
            details = ", ".join(f"{field} {mine} (table {theirs})"
                                for field, (mine, theirs) in wrong.items())
            raise ValueError(f"The latency table was measured for another model: {details}. "
                             "Measure one for this model (keras_flop.measure_latency_table, "
                             "or apps.prune without --latency_table).")

    def to_dict(self):
        return {"format": FORMAT, "version": VERSION, "model": dict(self.model),
                "batch_size": self.batch_size, "seq_length": self.seq_length,
                "attention_heads": list(self.attention_heads),
                "attention_seconds": list(self.attention_seconds),
                "ffn_units": list(self.ffn_units), "ffn_seconds": list(self.ffn_seconds),
                "fixed_seconds": self.fixed_seconds, "info": dict(self.info)}

    @classmethod
    def from_dict(cls, data, source="the latency table"):
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"{source} is not a keras-flop latency table (no \"format\": "
                             f"\"{FORMAT}\"): write one with LatencyTable.save.")
        if data.get("version") != VERSION:
            raise ValueError(f"{source} has version {data.get('version')}; this keras-flop "
                             f"reads version {VERSION}: measure it again.")
        fields = ("model", "batch_size", "seq_length", "attention_heads", "attention_seconds",
                  "ffn_units", "ffn_seconds", "fixed_seconds")
        missing = [field for field in fields if field not in data]
        if missing:
            raise ValueError(f"{source} lacks {missing}: measure it again.")
        return cls(**{field: data[field] for field in fields}, info=data.get("info"))

    def save(self, path):
        """Writes the table as JSON (through a temporary file); returns `path` (a string
        or a path object)."""
        path = os.fspath(path)
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, indent=1)
            f.write("\n")
        os.replace(path + ".tmp", path)
        return path

    @classmethod
    def load(cls, path):
        """The table saved at `path`; errors name the file."""
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} is not JSON ({error}): pass a file written by "
                             "LatencyTable.save.") from None
        return cls.from_dict(data, source=str(path))

    def __eq__(self, other):
        return isinstance(other, LatencyTable) and self.to_dict() == other.to_dict()


def as_table(table):
    """A `LatencyTable` from a table, its dict or a JSON path."""
    if isinstance(table, LatencyTable):
        return table
    if isinstance(table, dict):
        return LatencyTable.from_dict(table)
    if isinstance(table, (str, os.PathLike)):
        return LatencyTable.load(table)
    raise ValueError("`latency_table` must be a keras_flop.LatencyTable, its dict or the path "
                     "of its JSON file (keras_flop.measure_latency_table measures one); got "
                     f"{type(table).__name__}.")


class LatencyCost:
    """The latency cost: `1 - latency / dense latency` predicted by a `LatencyTable`, counted
    on the account's blocks; a target speedup `S` is the sparsity `1 - 1/S`.

    Only heads, FFN units and blocks change the work the table times: a model with rank gates
    (structures `rank` and `all`) is refused, since the table times dense blocks and a
    factorized layer's time is not in it.
    """

    name = "latency"

    def __init__(self, table):
        self.table = as_table(table)

    def check(self, account):
        if any(isinstance(layer, FactorizedDense) for layer in account.dense_layers()):
            raise ValueError("cost='latency' prices heads, FFN units and blocks from a "
                             "table of dense blocks; factorized layers and their rank gates "
                             "(structure 'rank' or 'all') have no measured time: use "
                             "structure='heads+ffn' or 'heads+ffn+layers'.")
        if not any(block.unit_mask is not None or block.block_mask is not None
                   for block in account.blocks):
            raise ValueError("cost='latency' needs structural gates (heads, FFN units or "
                             "blocks): factorize with structure='heads+ffn' or "
                             "'heads+ffn+layers'.")
        self.table.check(account.config)

    def seconds(self, account, counts):
        """Predicted latency of the model under `counts` (expected: differentiable)."""
        total = self.table.fixed_seconds
        for block in account.blocks:
            removed = self.table.block_time(block.kind, 0)
            if counts.realized:
                total += self.table.block_time(block.kind, block.kept_units(counts))
                continue
            kept = self.table.expected_block_time(block.kind, block.units(counts),
                                                  block.any_unit(counts))
            stays = block.stays(counts)
            total = total + stays * kept + (1.0 - stays) * removed
        return total

    def total(self, account):
        """Predicted latency of the model with every gate open."""
        return self.table.dense_seconds([(a.size, f.size) for a, f in account.layers])

    def sparsity(self, account, counts):
        seconds = self.seconds(account, counts)
        if not counts.realized:
            seconds = ops.cast(ops.convert_to_tensor(seconds), "float32")
        return 1.0 - seconds / self.total(account)


def expected_latency(model, table):
    """The differentiable expected latency (seconds) of a pruning model under its gates'
    keep probabilities, predicted by `table` (module docstring); a float32 scalar tensor."""
    cost = LatencyCost(table)
    account = require_account(model)
    cost.check(account)
    return ops.cast(ops.convert_to_tensor(cost.seconds(account, ExpectedCounts())), "float32")


def predicted_speedup(model, table, threshold=0.0):
    """Dense latency over the latency of the compact model `keras_flop.compact` builds under
    the inference mask, both predicted by `table`."""
    cost = LatencyCost(table)
    account = require_account(model)
    cost.check(account)
    return cost.total(account) / cost.seconds(account, RealizedCounts(threshold))


# -- measurement ---------------------------------------------------------------------------
def ffn_grid(intermediate_size, points=16):
    """FFN unit counts to time: 0, 1 and `points` even steps up to `intermediate_size`."""
    steps = {round(intermediate_size * i / points) for i in range(1, points + 1)}
    return sorted({0, 1} | steps)


def mix_tables(weighted):
    """`[(table, weight), ...]` (tables of one model and batch size, e.g. measured at several
    lengths) -> the table of their weighted mean: a block's time is the mean of its times,
    so the model's predicted time is the mean of theirs (latency is linear in the table).
    Its `seq_length` is the longest, `info["lengths"]` each length's weight.

    Example:
    >>> model = {"hidden_size": 8, "num_attention_heads": 1, "intermediate_size": 4,
    ...          "num_hidden_layers": 1}
    >>> short, long = (LatencyTable(model, 1, n, [0, 1], [0.0, t], [0, 4], [0.0, t], t)
    ...                for n, t in ((8, 1.0), (32, 3.0)))
    >>> mixed = mix_tables([(short, 0.75), (long, 0.25)])
    >>> mixed.dense_seconds(), mixed.seq_length, mixed.info["lengths"]
    (4.5, 32, {'8': 0.75, '32': 0.25})
    """
    tables = [(as_table(t), float(w)) for t, w in weighted]
    weights = [w for _, w in tables]
    if not tables or sum(weights) <= 0 or min(weights) < 0:
        raise ValueError("mix_tables needs at least one table and weights >= 0 with a "
                         f"positive sum; got {weights}.")
    total = sum(weights)
    first = tables[0][0]
    for table, _ in tables:
        if (table.model, table.batch_size, table.attention_heads, table.ffn_units) != (
                first.model, first.batch_size, first.attention_heads, first.ffn_units):
            raise ValueError("mix_tables mixes tables of one model, batch size and grid; "
                             "measure them with the same config, batch_size and ffn_points.")

    def mean(field):
        return [sum(w * getattr(t, field)[i] for t, w in tables) / total
                for i in range(len(getattr(first, field)))]

    info = {"lengths": {str(t.seq_length): w / total for t, w in tables},
            "measurement_seconds": sum(t.info.get("measurement_seconds", 0.0)
                                       for t, _ in tables),
            "device": first.info.get("device")}
    if all("measured_dense_seconds" in t.info for t, _ in tables):
        info["measured_dense_seconds"] = sum(
            w * t.info["measured_dense_seconds"] for t, w in tables) / total
    return LatencyTable(first.model, first.batch_size, max(t.seq_length for t, _ in tables),
                        first.attention_heads, mean("attention_seconds"), first.ffn_units,
                        mean("ffn_seconds"),
                        sum(w * t.fixed_seconds for t, w in tables) / total, info)


def measure_latency_table(config, batch_size=8, seq_length=128, ffn_points=16, rounds=7,
                          warmup=2, min_seconds=0.05, verbose=False, lengths=None):
    """Measures a `LatencyTable` for models of `config` on this device.

    Each block count is timed in a compact `BertClassifier` built with that count in every
    layer (`layer_shapes` of `(h, 0)` for `h` heads, `(0, u)` for `u` FFN units, random
    weights, the global dtype policy) against the model with every block removed, in
    alternation: a round times one against the other, and the block's time is the median over
    `rounds` of their difference, divided by the number of layers. The model with every block
    removed is the fixed cost. Inputs are `[batch_size, seq_length]`, every position real (as
    the report's padded latency). Each timing follows `warmup` untimed calls and spans at least
    `min_seconds`; the whole model is also timed once more (`info["measured_dense_seconds"]`,
    to compare with the table's sum).

    Args:
        config: a `BertConfig` (the dense model's).
        batch_size, seq_length: the input shape to time.
        ffn_points: even steps of the FFN grid (`ffn_grid`); heads are timed at every count.
        rounds, warmup, min_seconds: as above.
        verbose: print one line per timed shape.
        lengths: `{seq_length: weight}`, e.g. a task's `TokenizedExamples.length_shares`:
            one table measured at each length, mixed by weight (`mix_tables`), so that a
            target speedup aims at the speed of text at its real lengths (None: every
            input `seq_length` long).

    Returns:
        A `LatencyTable` (`save` it to reuse it).

    Example:
    >>> table = keras_flop.measure_latency_table(config, 8, 128)  # doctest: +SKIP
    >>> table.save("latency_table.json")                        # doctest: +SKIP
    """
    import gc

    from keras_flop.models.bert import build_bert_classifier

    if not isinstance(config, BertConfig):
        raise ValueError(f"`config` must be a BertConfig; got {type(config).__name__}.")
    if lengths is not None:
        if not lengths or any(not isinstance(n, int) or isinstance(n, bool) for n in lengths):
            raise ValueError("`lengths` must map sequence lengths (integers) to weights, e.g. "
                             f"{{16: 0.7, 128: 0.3}}; got {lengths!r}.")
        return mix_tables([(measure_latency_table(config, batch_size, n, ffn_points, rounds,
                                                  warmup, min_seconds, verbose), weight)
                           for n, weight in sorted(lengths.items())])
    for arg, value in (("batch_size", batch_size), ("seq_length", seq_length),
                       ("ffn_points", ffn_points), ("rounds", rounds)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"`{arg}` must be a positive integer; got {value!r}.")
    if seq_length > config.max_sequence_length:
        raise ValueError(f"`seq_length` {seq_length} exceeds the model's "
                         f"max_position_embeddings {config.max_position_embeddings}"
                         + (f" less position_offset {config.position_offset}"
                            if config.position_offset else "") + ".")
    began = time.perf_counter()
    rng = np.random.default_rng(0)
    inputs = {"token_ids": rng.integers(1, config.vocab_size, (batch_size, seq_length))
              .astype("int32"),
              "segment_ids": np.zeros((batch_size, seq_length), "int32"),
              "padding_mask": np.ones((batch_size, seq_length), bool)}
    layers = config.num_hidden_layers
    empty = build_bert_classifier(config, layer_shapes=[(0, 0)] * layers, name="fixed")
    fixed = PerCallTimer(empty, inputs, warmup, min_seconds)

    def paired(shape, name):
        """Median over rounds of (time with `shape` in every layer - time of `empty`), and
        of the empty model's time."""
        model = build_bert_classifier(config, layer_shapes=[shape] * layers, name=name)
        timed = PerCallTimer(model, inputs, warmup, min_seconds)
        differences, bases = [], []
        for _ in range(rounds):
            base = fixed.per_call()
            differences.append(timed.per_call() - base)
            bases.append(base)
        del model, timed
        gc.collect()
        if verbose:
            print(f"   latency table: {shape} {statistics.median(differences) * 1e3:.2f} ms "
                  f"over the fixed {statistics.median(bases) * 1e3:.2f} ms")
        return statistics.median(differences), bases

    heads = list(range(config.num_attention_heads + 1))
    units = ffn_grid(config.intermediate_size, ffn_points)
    bases = []
    attention = [0.0]
    for h in heads[1:]:
        difference, base = paired((h, 0), f"heads_{h}")
        attention.append(max(difference / layers, 0.0))
        bases += base
    ffn = [0.0]
    for u in units[1:]:
        difference, base = paired((0, u), f"ffn_{u}")
        ffn.append(max(difference / layers, 0.0))
        bases += base
    dense, base = paired((config.num_attention_heads, config.intermediate_size), "dense")
    bases += base
    fixed_seconds = statistics.median(bases)
    import keras
    import tensorflow as tf

    info = {"device": describe_devices(), "tensorflow": tf.__version__,
            "dtype_policy": keras.config.dtype_policy().name, "rounds": rounds,
            "measured_dense_seconds": fixed_seconds + dense,
            "measurement_seconds": time.perf_counter() - began,
            "measured_at": time.strftime("%Y-%m-%d %H:%M:%S")}
    return LatencyTable({field: getattr(config, field) for field in MODEL_FIELDS}, batch_size,
                        seq_length, heads, attention, units, ffn, fixed_seconds, info)
