"""The account of what every gate controls, and the cost models read from it.

An encoder layer is two blocks, attention and FFN. Each block has units (heads of `head_size`
features; FFN units of one), the dense layers that produce them (q, k, v; the intermediate
layer), the one that consumes them (the attention output; the FFN output), and up to three
kinds of gate: a mask over its units, a mask over the whole block, and a rank gate inside each
factorized dense layer. `StructureAccount` states once which parameters and which work each
gate removes, counted one of two ways:

- `ExpectedCounts`: a gate keeps `Σ_j P(z_j ≠ 0)` units, and some unit with probability
  `1 - Π_j (1 - P(z_j ≠ 0))`; differentiable in `log_alpha`, for the Lagrangian.
- `RealizedCounts`: the units of the inference mask above a threshold, exactly the ones
  `keras_flop.compact` keeps.

The expected sparsity, `kept_parameters`, the parameter report, the latency cost
(`keras_flop.latency.table`) and compaction all read the account, so a gate type or a cost is added
in one place.
"""

import dataclasses

import numpy as np
from keras import ops

from keras_flop.layers.factorized_dense import FactorizedDense
from keras_flop.models.bert import bert_structure_of
from keras_flop.gates.structure import all_gates, dense_dims, encoder_layer_parts, kept_units, \
    mask_values

COSTS = ("params", "latency")
DENOMINATORS = ("dense", "factorized")


def check_cost(cost, latency_table):
    """Raises a `ValueError` for a `cost` not in `COSTS`, or a `latency_table` that does not go
    with it: cost="latency" needs one, cost="params" reads none."""
    if cost not in COSTS:
        raise ValueError(f"`cost` must be one of {COSTS}; got {cost!r}.")
    if cost == "latency" and latency_table is None:
        raise ValueError("cost='latency' needs a `latency_table`: measure one on the target "
                         "device with keras_flop.measure_latency_table(config, batch_size, "
                         "seq_length), or load one with keras_flop.LatencyTable.load(path).")
    if cost != "latency" and latency_table is not None:
        raise ValueError("`latency_table` is read with cost='latency' only.")


class ExpectedCounts:
    """Kept units as expectations under the gates' keep probabilities (differentiable)."""

    realized = False

    def count(self, mask):
        """Expected kept units, `Σ_j P(z_j ≠ 0)`."""
        return mask.l0_norm()

    def any_kept(self, mask):
        """Probability that some unit is kept, `1 - Π_j (1 - P(z_j ≠ 0))`."""
        return 1.0 - ops.prod(1.0 - mask.prob_nonzero())


class RealizedCounts:
    """Kept units of the inference mask: those whose value exceeds `threshold`."""

    realized = True

    def __init__(self, threshold=0.0):
        self.threshold = threshold
        self._kept = {}  # one evaluation of each mask per account reading

    def kept(self, mask):
        """Indices of the kept units of `mask`."""
        if id(mask) not in self._kept:
            self._kept[id(mask)] = kept_units(mask, self.threshold)
        return self._kept[id(mask)]

    def count(self, mask):
        return len(self.kept(mask))

    def any_kept(self, mask):
        return int(self.count(mask) > 0)


def factor_pair_pays(rank, a, b):
    """Whether a rank-`rank` factor pair of an `[a, b]` kernel costs less than the kernel:
    compaction keeps the cheaper form, and the realized count counts it."""
    return rank * (a + b) < a * b


@dataclasses.dataclass
class Block:
    """The attention or FFN block of one encoder layer.

    `size` units of `unit_size` features (heads, FFN units; 0 for a block removed before),
    `producers` (dense layers whose outputs are the units), `consumer` (the dense layer they
    feed), `unit_mask` and `block_mask` (`HardConcreteMask`s, or None).
    """

    kind: str
    size: int
    unit_size: int
    producers: tuple
    consumer: object
    unit_mask: object = None
    block_mask: object = None

    def units(self, counts):
        """Kept units if the block stays (`size` without a unit mask)."""
        return self.size if self.unit_mask is None else counts.count(self.unit_mask)

    def any_unit(self, counts):
        """Whether (the probability that) some unit is kept."""
        if self.unit_mask is None:
            return 1 if self.size else 0
        return counts.any_kept(self.unit_mask)

    def stays(self, counts):
        """Whether (the probability that) the block gate keeps the block."""
        return 1 if self.block_mask is None else counts.count(self.block_mask)

    def kept_units(self, counts):
        """Units of the compact block: 0 when the block is removed (realized counts)."""
        return self.units(counts) * self.stays(counts)

    def dense_layers(self):
        return self.producers + ((self.consumer,) if self.consumer is not None else ())

    def features(self, counts):
        """`(feature indices, gate values per feature, block scale)` that compaction keeps,
        from realized `counts`: the kept units' features with their mask values, and the
        block gate's value (1 without one); no features when the block is removed."""
        scale = 1.0
        if self.block_mask is not None:
            scale = float(mask_values(self.block_mask)[0]) if counts.count(self.block_mask) \
                else 0.0
        if scale == 0.0 or not self.size:
            return np.zeros(0, int), np.zeros(0, "float32"), scale
        width = self.size * self.unit_size
        if self.unit_mask is None:
            return np.arange(width), np.ones(width, "float32"), scale
        kept = counts.kept(self.unit_mask)
        features = (kept[:, None] * self.unit_size + np.arange(self.unit_size)).reshape(-1)
        return features, np.repeat(mask_values(self.unit_mask)[kept], self.unit_size), scale

    def kernel_params(self, counts):
        """Kernel parameters of the block's dense layers given the kept units.

        A producer `[a, b]` keeps `unit_size · units` of its `b` outputs, the consumer as many
        of its `a` inputs. A factorized layer at kept rank `r` costs `r·(a + b)`, but a factor
        whose gated side loses every unit goes with it (compaction removes the whole block),
        hence the `any_unit` factor on its ungated side; realized, it costs the cheaper of the
        factor pair and the merged kernel, as compaction builds it. The block gate scales the
        whole.
        """
        width = self.unit_size * self.units(counts)
        alive = self.any_unit(counts)
        total = 0
        for layer in self.dense_layers():
            a, b = dense_dims(layer)
            gated_in = layer is self.consumer
            if self.unit_mask is not None:
                a, b = (width, b) if gated_in else (a, width)
            if isinstance(layer, FactorizedDense):
                rank = counts.count(layer.gate) if layer.gate is not None else layer.rank
                cost = rank * ((a + b * alive) if gated_in else (a * alive + b))
                if counts.realized and not factor_pair_pays(rank, a, b):
                    cost = a * b
            else:
                cost = a * b
            total = total + cost
        return self.stays(counts) * total

    def bias_params(self, counts):
        """Bias parameters left after compaction: the producers' kept outputs (none when the
        block is removed); the consumer's bias always stays (as a `PrunedSublayer` when the
        block is removed)."""
        total = 0
        for layer in self.producers:
            if layer.use_bias:
                total += self.unit_size * self.kept_units(counts) if self.unit_mask is not None \
                    else dense_dims(layer)[1] * self.stays(counts)
        if self.consumer is not None and self.consumer.use_bias:
            total += dense_dims(self.consumer)[1]
        return total


class StructureAccount:
    """Every encoder block of a `BertClassifier` (or the pruning model of one) with its gates.

    `layers` is one `(attention Block, ffn Block)` pair per encoder layer, read from the model's
    own `layer_shapes` and layers. Sums over the encoder: `kernel_params(counts)`,
    `bias_params(counts)`; `dense_params()` (`Σ a·b`, the dense kernels) and
    `factorized_params()` (the kernels as they are, `(a+b)·k` when factorized).

    Example:
    >>> import keras_flop
    >>> config = keras_flop.BertConfig(vocab_size=30, hidden_size=16, num_hidden_layers=1,
    ...                                num_attention_heads=2, intermediate_size=32)
    >>> pruning_model = keras_flop.factorize(keras_flop.build_bert_classifier(config),
    ...                                      structure="heads+ffn")
    >>> account = StructureAccount(pruning_model)
    >>> account.dense_params(), account.kernel_params(RealizedCounts())
    (2048, 2048)
    >>> [block.size for block in account.layers[0]]
    [2, 32]
    """

    def __init__(self, model):
        network = getattr(model, "network", model)
        self.network = network
        self.config, _, shapes = bert_structure_of(network)
        self.parts = encoder_layer_parts(network)
        self.layers = []
        for part, (heads, units) in zip(self.parts, shapes):
            dense = part.dense
            qkv = tuple(dense[s] for s in ("attention_query", "attention_key",
                                           "attention_value") if s in dense)
            self.layers.append((
                Block("attention", heads, self.config.head_size, qkv,
                      dense.get("attention_output"), part.masks["head"],
                      part.masks["attention"]),
                Block("ffn", units, 1, tuple(d for d in (dense.get("intermediate"),) if d),
                      dense.get("output"), part.masks["intermediate"], part.masks["ffn"])))

    @property
    def blocks(self):
        return [block for pair in self.layers for block in pair]

    def gates(self):
        return all_gates(self.network)

    def dense_layers(self):
        return [layer for block in self.blocks for layer in block.dense_layers()]

    def kernel_params(self, counts):
        return sum(block.kernel_params(counts) for block in self.blocks)

    def bias_params(self, counts):
        return sum(block.bias_params(counts) for block in self.blocks)

    def dense_params(self):
        return int(sum(np.prod(dense_dims(layer)) for layer in self.dense_layers()))

    def factorized_params(self):
        return int(sum(layer.factor_params if isinstance(layer, FactorizedDense)
                       else np.prod(dense_dims(layer)) for layer in self.dense_layers()))

    def rank_features(self, layer, counts):
        """`(kept rank indices, their gate values)` of a factorized layer, all ranks for an
        ungated one (realized counts)."""
        if layer.gate is None:
            return np.arange(layer.rank), np.ones(layer.rank, "float32")
        kept = counts.kept(layer.gate)
        return kept, mask_values(layer.gate)[kept]


def unit_kernel_params(config):
    """`(head, FFN unit)` kernel parameters of a dense encoder layer: a head's q, k, v columns
    and attention-output rows, `4·hidden·head_size`; an FFN unit's column and row,
    `2·hidden`."""
    return 4 * config.hidden_size * config.head_size, 2 * config.hidden_size


def require_account(model):
    """The `StructureAccount` of a pruning model (or its network); an error if it has no
    gate."""
    network = getattr(model, "network", model)
    if not all_gates(network):
        raise ValueError(f"Model {model.name!r} has no gates: build the pruning model with "
                         "keras_flop.factorize(...) first.")
    return StructureAccount(network)


class ParamsCost:
    """The parameter cost: the fraction of the encoder's dense kernel parameters removed.

    `sparsity(account, counts)` is `1 - kept kernel parameters / D`, `D` the dense kernels
    (`denominator="dense"`) or the factorized ones (`"factorized"`, FLOP's figure).
    """

    name = "params"

    def __init__(self, denominator="dense"):
        if denominator not in DENOMINATORS:
            raise ValueError(f"`sparsity_denominator` must be one of {DENOMINATORS}; "
                             f"got {denominator!r}.")
        self.denominator = denominator

    def check(self, account):
        """Nothing to check: every gate has a parameter cost."""

    def total(self, account):
        return float(account.dense_params() if self.denominator == "dense" else
                     account.factorized_params())

    def sparsity(self, account, counts):
        kept = account.kernel_params(counts)
        if not counts.realized:
            kept = ops.cast(ops.convert_to_tensor(kept), "float32")
        return 1.0 - kept / self.total(account)
