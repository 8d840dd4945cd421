"""Retraining-free structured pruning of a fine-tuned BERT (Kwon et al. 2022, "A Fast
Post-Training Pruning Framework for Transformers").

No gradient step touches the weights. On a small sample of the task (2,048 examples by
default) the method:

1. **Fisher scores.** Every attention head and FFN unit gets a mask variable `m = 1`; the
   per-example gradients `g = ∂L/∂m` of the task loss give the diagonal of the empirical
   Fisher information, `F_ii = mean(g_i²)`: the loss increase expected from removing unit `i`.
   Each example gets its own copy of the masks (inputs of shape `[batch, units]`), so one
   backward pass per batch yields every per-example gradient.
2. **Mask search.** Under a parameter budget (a head costs `4·hidden·head_size`, an FFN unit
   `2·hidden`), try every total number of kept heads, fill the rest of the budget with FFN
   units, keep the heads and units of highest Fisher score, and take the split whose kept
   scores sum highest.
3. **Mask rearrangement.** Per layer and kind, keeping the count, greedily swap units so that
   the pruned set's summed per-example gradients are smallest: the block-diagonal Fisher
   approximation of the loss increase, `Σ_n (Σ_{i pruned} g_ni)²`.
4. **Mask tuning.** Layer by layer, the kept heads' and units' outputs are rescaled by linear
   least squares so that each pruned sublayer's output (with its residual, before the
   LayerNorm) on the pruned model's inputs matches the dense sublayer's on the dense model's.

`prune_post_training` runs all four and compacts: the scales are folded into the attention
output and FFN output kernels, the masks into a `heads+ffn` gated model, and
`keras_flop.compact` returns the same plain `BertClassifier` the Lagrangian path produces.
`post_training_masks` stops before compaction; `init_gates_from_masks` starts the Lagrangian
gates from such a mask.
"""

import dataclasses
import time

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from keras_flop.gates.compaction import compact
from keras_flop.lagrangian.factorization import factorize_model
from keras_flop.models.bert import HIDDEN_STATE_SUFFIX, bert_network
from keras_flop.gates.cost import check_cost, unit_kernel_params
from keras_flop.gates.structure import encoder_layer_parts

# Mask tuning leaves a layer's scales at 1 when the least-squares solution is this large: an
# ill-conditioned system, not a better fit (as the authors' implementation does).
MAX_SCALE = 10.0
# log α that makes a hard-concrete gate exactly 1 (or 0) at inference.
_OPEN, _CLOSED = 10.0, -10.0


@dataclasses.dataclass
class PostTrainingMasks:
    """What the post-training search found, per encoder layer.

    Attributes:
        head_scales, unit_scales: per layer, one float per head / FFN unit: 0 for a pruned
            unit, the tuned scale (1 before tuning) for a kept one.
        head_fisher, unit_fisher: per layer, the diagonal Fisher score of each head / unit.
        kept_params, total_params: encoder kernel parameters kept, and of the dense model.
        seconds: wall time of each phase (`fisher`, `search`, `rearrange`, `tune`).
    """

    head_scales: list
    unit_scales: list
    head_fisher: list
    unit_fisher: list
    kept_params: int
    total_params: int
    seconds: dict = dataclasses.field(default_factory=dict)

    @property
    def kept_heads(self):
        return [int(np.count_nonzero(s)) for s in self.head_scales]

    @property
    def kept_units(self):
        return [int(np.count_nonzero(s)) for s in self.unit_scales]


class _Encoder:
    """The inference pass of a dense `BertClassifier`, layer by layer, with a multiplicative
    mask on every head's context and every FFN unit; masks are `[units]` or per example
    `[batch, units]`. Uses the model's own layers."""

    def __init__(self, network):
        self.network = network
        self.parts = encoder_layer_parts(network)
        self.config = network.bert_config
        self.shapes = network.layer_shapes
        self.embed = keras.Model(network.inputs,
                                 network.get_layer("embeddings_layer_norm").output)

    def layer(self, index, suffix):
        return self.network.get_layer(f"layer_{index}_{suffix}")

    @staticmethod
    def _scale(x, mask, unit_size):
        if mask is None:
            return x
        mask = ops.cast(mask, x.dtype)
        if unit_size > 1:
            mask = ops.repeat(mask, unit_size, axis=-1)
        return x * ops.reshape(mask, (-1, 1, ops.shape(mask)[-1]))

    def contexts(self, index, x, padding_mask):
        """The attention contexts of every head, `[batch, seq, heads·head_size]`."""
        dense = self.parts[index].dense
        q, k, v = (dense[s](x) for s in ("attention_query", "attention_key",
                                         "attention_value"))
        return self.layer(index, "attention")(q, k, v, padding_mask, training=False)

    def attention_sum(self, index, x, padding_mask, head_mask=None):
        """`x + attention(x)`: the residual sum before the LayerNorm."""
        if not self.shapes[index][0]:
            return x + self.layer(index, "attention_pruned")(x)
        context = self._scale(self.contexts(index, x, padding_mask), head_mask,
                              self.config.head_size)
        return x + self.parts[index].dense["attention_output"](context)

    def ffn_sum(self, index, x, unit_mask=None):
        if not self.shapes[index][1]:
            return x + self.layer(index, "output_pruned")(x)
        hidden = self._scale(self.parts[index].dense["intermediate"](x), unit_mask, 1)
        return x + self.parts[index].dense["output"](hidden)

    def attention_norm(self, index, x):
        return self.layer(index, "attention_layer_norm")(x)

    def output_norm(self, index, x):
        return self.layer(index, HIDDEN_STATE_SUFFIX)(x)

    def logits(self, inputs, head_masks=None, unit_masks=None):
        padding_mask = ops.cast(inputs["padding_mask"], "bool")
        x = self.embed(inputs, training=False)
        for index in range(len(self.parts)):
            x = self.attention_norm(index, self.attention_sum(
                index, x, padding_mask, None if head_masks is None else head_masks[index]))
            x = self.output_norm(index, self.ffn_sum(
                index, x, None if unit_masks is None else unit_masks[index]))
        pooled = self.network.get_layer("pooler")(x[:, 0, :])
        return self.network.get_layer("classifier")(pooled)


def _check_dense(model):
    network = bert_network(model)
    if not network.is_dense():
        raise ValueError(
            f"Model {network.name!r} has gates or factorized layers: post-training pruning "
            "takes the fine-tuned dense BertClassifier (the model before keras_flop.factorize).")
    return network


def _sample_batches(dataset, num_samples):
    """`(features, labels)` batches from `dataset` holding `num_samples` examples in all."""
    batches, count = [], 0
    for batch in dataset:
        if not isinstance(batch, (tuple, list)) or len(batch) < 2:
            raise ValueError("`dataset` must yield `(features, labels)` batches (labels are "
                             "needed for the Fisher information), e.g. "
                             "keras_flop.glue.make_dataset(...).")
        features, labels = batch[0], batch[1]
        if isinstance(labels, dict):
            labels = labels["labels"]
        take = min(num_samples - count, int(ops.shape(labels)[0]))
        features = {name: features[name][:take] for name in
                    ("token_ids", "segment_ids", "padding_mask")}
        batches.append((features, labels[:take]))
        count += take
        if count >= num_samples:
            break
    if not batches:
        raise ValueError("`dataset` yielded no batches.")
    return batches


def _per_example_loss(logits, labels):
    if logits.shape[-1] == 1:
        return ops.square(logits[:, 0] - ops.cast(labels, logits.dtype))
    return keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)


def per_example_mask_gradients(model, batches, verbose=0):
    """`(head_grads, unit_grads)`: per encoder layer, `[examples, units]` arrays of
    `∂ loss_n / ∂ m` at `m = 1` for every head / FFN unit (empty for a removed block).

    `batches`: an iterable of `(features, labels)`.
    """
    network = _check_dense(model)
    encoder = _Encoder(network)
    shapes = encoder.shapes

    @tf.function(reduce_retracing=True)
    def step(features, labels):
        size = tf.shape(labels)[0]
        heads = [tf.ones((size, max(h, 1))) for h, _ in shapes]
        units = [tf.ones((size, max(u, 1))) for _, u in shapes]
        with tf.GradientTape() as tape:
            tape.watch(heads + units)
            logits = encoder.logits(features, [m if h else None for m, (h, _) in
                                               zip(heads, shapes)],
                                    [m if u else None for m, (_, u) in zip(units, shapes)])
            # A sum: example n's loss depends only on its own mask row, so the gradient of
            # the sum w.r.t. row n is example n's gradient.
            loss = ops.sum(_per_example_loss(ops.cast(logits, "float32"), labels))
        grads = tape.gradient(loss, heads + units)
        return [tf.zeros_like(m) if g is None else g for g, m in zip(grads, heads + units)]

    batches = list(batches)
    progress = keras.utils.Progbar(len(batches), unit_name="batch",
                                   verbose=verbose) if verbose else None
    collected = []
    for index, (features, labels) in enumerate(batches):
        collected.append([g.numpy() for g in step(features, labels)])
        if progress:
            progress.update(index + 1)
    n = len(shapes)
    grads = [np.concatenate([c[i] for c in collected]) for i in range(2 * n)]
    trim = [grads[i][:, :shapes[i][0]] for i in range(n)], \
        [grads[n + i][:, :shapes[i][1]] for i in range(n)]
    return trim


def unit_costs(config):
    """Encoder kernel parameters of one head and of one FFN unit (the cost account's)."""
    return unit_kernel_params(config)


def _prefix_search(head_fisher, unit_fisher, most_units, too_small):
    """The search both budgets share. Heads and FFN units are each taken in decreasing Fisher
    order across all layers; for every count of kept heads, `most_units(num_heads, head_order,
    unit_order)` gives the most units (in their order) that still fit, or None when the heads
    alone do not; the count with the most total Fisher score wins. Binary masks `(heads,
    units)` per layer; a `ValueError` saying `too_small` when nothing fits."""
    heads_flat, units_flat = np.concatenate(head_fisher), np.concatenate(unit_fisher)
    head_order, unit_order = np.argsort(-heads_flat, kind="stable"), \
        np.argsort(-units_flat, kind="stable")
    head_prefix = np.concatenate([[0.0], np.cumsum(heads_flat[head_order])])
    unit_prefix = np.concatenate([[0.0], np.cumsum(units_flat[unit_order])])
    best = None
    for num_heads in range(len(heads_flat) + 1):
        num_units = most_units(num_heads, head_order, unit_order)
        if num_units is None:
            continue
        score = head_prefix[num_heads] + unit_prefix[num_units]
        if best is None or score > best[0]:
            best = (score, num_heads, num_units)
    if best is None:
        raise ValueError(too_small)
    _, num_heads, num_units = best

    def split(order, count, like):
        keep = np.zeros(sum(len(a) for a in like), bool)
        keep[order[:count]] = True
        return np.split(keep, np.cumsum([len(a) for a in like])[:-1])

    return split(head_order, num_heads, head_fisher), split(unit_order, num_units, unit_fisher)


def search_masks(head_fisher, unit_fisher, head_cost, unit_cost, budget):
    """Binary masks `(heads, units)` (per layer, bool arrays) keeping the most Fisher score
    with `kept heads · head_cost + kept units · unit_cost <= budget`.

    For every total number of kept heads the rest of the budget goes to FFN units; both are
    taken in decreasing Fisher order across all layers, and the best total wins.
    """
    num_units = sum(len(a) for a in unit_fisher)

    def most_units(num_heads, head_order, unit_order):
        left = budget - num_heads * head_cost
        return None if left < 0 else min(num_units, int(left // unit_cost))

    return _prefix_search(head_fisher, unit_fisher, most_units,
                          f"A budget of {budget} parameters cannot hold anything: raise "
                          "`target`.")


def search_masks_by_latency(head_fisher, unit_fisher, table, budget):
    """Binary masks `(heads, units)` keeping the most Fisher score with the encoder blocks'
    time as `table` (a `keras_flop.LatencyTable`) predicts it, `Σ_layers T_att(kept heads) +
    T_ffn(kept units)`, at most `budget` seconds.

    As `search_masks`, both kinds are taken in decreasing Fisher order across all layers; for
    every total of kept heads the most FFN units that fit are found by bisection. A block
    left with no unit costs nothing, so the search sees what removing a whole block saves.

    >>> from keras_flop import LatencyTable
    >>> table = LatencyTable({"hidden_size": 8, "num_attention_heads": 2,
    ...                       "intermediate_size": 4, "num_hidden_layers": 2}, 1, 4,
    ...                      [0, 1, 2], [0.0, 3.0, 4.0], [0, 4], [0.0, 4.0], 0.0)
    >>> heads = [np.array([5.0, 1.0]), np.array([0.2, 0.1])]
    >>> units = [np.array([2.0, 2.0, 2.0, 2.0]), np.array([0.5, 0.5, 0.5, 0.5])]
    >>> keep_heads, keep_units = search_masks_by_latency(heads, units, table, budget=7.0)
    >>> [k.tolist() for k in keep_heads], [int(k.sum()) for k in keep_units]
    ([[True, False], [False, False]], [4, 0])
    """
    layers = len(head_fisher)
    head_layer = np.repeat(np.arange(layers), [len(a) for a in head_fisher])
    unit_layer = np.repeat(np.arange(layers), [len(a) for a in unit_fisher])

    def seconds(kind, order, count, layer_of):  # the blocks' time, the first `count` kept
        counts = np.bincount(layer_of[order[:count]], minlength=layers)
        return sum(table.block_time(kind, c) for c in counts)

    def most_units(num_heads, head_order, unit_order):
        left = budget - seconds("attention", head_order, num_heads, head_layer)
        if left < 0:  # (a measured curve need not rise everywhere: fewer heads may fit)
            return None
        low, high = 0, len(unit_layer)  # bisection: the FFN time rises with the units kept
        while low < high:
            middle = (low + high + 1) // 2
            if seconds("ffn", unit_order, middle, unit_layer) <= left:
                low = middle
            else:
                high = middle - 1
        return low

    return _prefix_search(head_fisher, unit_fisher, most_units,
                          f"A budget of {budget:.4g} s for the encoder blocks cannot hold "
                          "anything: ask for a smaller speedup.")


def rearrange_mask(keep, grads):
    """`keep` (bool `[units]`) with the same count, rearranged greedily under the block-diagonal
    Fisher: the pruned set `P` minimizes `Σ_n (Σ_{i∈P} g_ni)²` (`grads`: `[examples, units]`).

    Starts from the lowest diagonal scores as pruned; each other unit, in increasing score,
    joins the pruned set and the member whose removal leaves the smallest summed gradient
    leaves it.
    """
    num_pruned = int(np.count_nonzero(~keep))
    if num_pruned == 0 or num_pruned == len(keep):
        return keep.copy()
    g = np.asarray(grads, np.float64)
    gram = g.T @ g  # [units, units]: every inner product the search needs, computed once
    norms = np.diag(gram).copy()
    order = np.argsort(norms, kind="stable")
    pruned = list(order[:num_pruned])
    # dots[i] = g_i · s and square = s · s for s, the pruned set's summed gradients.
    dots = gram[:, pruned].sum(1)
    square = float(dots[pruned].sum())
    for index in order[num_pruned:]:
        pruned.append(index)
        square += 2.0 * dots[index] + norms[index]
        dots += gram[:, index]
        members = np.asarray(pruned)
        # ‖s - g_i‖² for every member i
        out = int(np.argmin(square - 2.0 * dots[members] + norms[members]))
        leaving = pruned.pop(out)
        square += -2.0 * dots[leaving] + norms[leaving]
        dots -= gram[:, leaving]
    new = np.ones(len(keep), bool)
    new[pruned] = False
    return new


def solve_scales(ata, atb):
    """The least-squares scales from the normal equations `AᵀA s = Aᵀb` (float64;
    `numpy.linalg.lstsq` handles a singular system); ones when the solution is not finite or
    exceeds `MAX_SCALE` in magnitude."""
    scales = np.linalg.lstsq(np.asarray(ata, np.float64), np.asarray(atb, np.float64),
                             rcond=None)[0]
    if not np.all(np.isfinite(scales)) or np.max(np.abs(scales), initial=0.0) > MAX_SCALE:
        return np.ones_like(scales)
    return scales


class _Tuner:
    """Normal equations of the least-squares mask tuning of one sublayer."""

    def __init__(self, encoder):
        self.encoder = encoder
        self.head_size = encoder.config.head_size

    @staticmethod
    def _token_weights(padding_mask, dtype):
        return ops.cast(padding_mask, dtype)[:, :, None]

    def attention_system(self, index, x_student, target, padding_mask, kept):
        """`(AᵀA, Aᵀb)` over the real tokens: column `j` of `A` is kept head `j`'s output
        through the attention output kernel; `b` is what the kept heads must add to
        `x_student + bias` to reach `target`."""
        enc = self.encoder
        out = enc.parts[index].dense["attention_output"]
        heads = enc.shapes[index][0]
        context = enc.contexts(index, x_student, padding_mask)
        batch, seq = ops.shape(context)[0], ops.shape(context)[1]
        context = ops.take(ops.reshape(context, (batch, seq, heads, self.head_size)), kept,
                           axis=2)
        kernel = ops.take(ops.reshape(ops.convert_to_tensor(out.kernel),
                                      (heads, self.head_size, -1)), kept, axis=0)
        columns = ops.einsum("bshd,hdo->bsho", context, kernel)
        residual = target - x_student - (ops.convert_to_tensor(out.bias) if out.use_bias
                                         else 0.0)
        weights = self._token_weights(padding_mask, columns.dtype)
        weighted = columns * weights[..., None]
        return (ops.einsum("bsho,bsgo->hg", weighted, columns),
                ops.einsum("bsho,bso->h", weighted, residual))

    def ffn_system(self, index, x_student, target, padding_mask, kept):
        """As `attention_system`, one column per kept FFN unit."""
        dense = self.encoder.parts[index].dense
        hidden = ops.take(dense["intermediate"](x_student), kept, axis=2)
        kernel = ops.take(ops.convert_to_tensor(dense["output"].kernel), kept, axis=0)
        out = dense["output"]
        residual = target - x_student - (ops.convert_to_tensor(out.bias) if out.use_bias
                                         else 0.0)
        hidden = hidden * self._token_weights(padding_mask, hidden.dtype)
        flat = ops.reshape(hidden, (-1, ops.shape(hidden)[-1]))
        ata = ops.matmul(ops.transpose(flat), flat) * ops.matmul(kernel, ops.transpose(kernel))
        atb = ops.sum(hidden * ops.einsum("bso,ko->bsk", residual, kernel), axis=(0, 1))
        return ata, atb


def tune_masks(model, batches, head_keep, unit_keep, verbose=0):
    """Least-squares scales of the kept heads and units, layer by layer (module docstring, 4).

    Returns `(head_scales, unit_scales)`: per layer float arrays, 0 where not kept.
    """
    network = _check_dense(model)
    encoder = _Encoder(network)
    tuner = _Tuner(encoder)
    features = [f for f, _ in batches]
    masks = [ops.cast(f["padding_mask"], "bool") for f in features]
    teacher = [encoder.embed(f, training=False) for f in features]
    student = list(teacher)
    head_scales, unit_scales = [], []
    # Eager: a few large ops per batch, where tracing a function per layer and length
    # bucket would cost more than it saves.
    attention_system, ffn_system = tuner.attention_system, tuner.ffn_system
    progress = keras.utils.Progbar(len(encoder.parts), unit_name="layer",
                                   verbose=verbose) if verbose else None
    for index in range(len(encoder.parts)):
        for kind, keep in (("attention", head_keep[index]), ("ffn", unit_keep[index])):
            scales = keep.astype("float32")
            if kind == "attention":
                targets = [encoder.attention_sum(index, t, m) for t, m in zip(teacher, masks)]
                system = attention_system
            else:
                targets = [encoder.ffn_sum(index, t) for t in teacher]
                system = ffn_system
            kept = np.flatnonzero(keep)
            if len(kept):
                ata, atb = 0.0, 0.0
                for s, t, m in zip(student, targets, masks):
                    a, b = system(index, s, t, m, tf.constant(kept))
                    ata, atb = ata + np.asarray(a, np.float64), atb + np.asarray(b, np.float64)
                scales[kept] = solve_scales(ata, atb)
            if kind == "attention":
                head_scales.append(scales)
                student = [encoder.attention_norm(index, encoder.attention_sum(
                    index, s, m, tf.constant(scales))) for s, m in zip(student, masks)]
                teacher = [encoder.attention_norm(index, t) for t in targets]
            else:
                unit_scales.append(scales)
                student = [encoder.output_norm(index, encoder.ffn_sum(
                    index, s, tf.constant(scales))) for s in student]
                teacher = [encoder.output_norm(index, t) for t in targets]
        if progress:
            progress.update(index + 1)
    return head_scales, unit_scales


def _check_target(target, cost, latency_table, config):
    check_cost(cost, latency_table)
    if latency_table is not None:
        latency_table.check(config)
    what = ("time of the model (1 / speedup)" if cost == "latency" else
            "encoder's head and FFN parameters")
    if isinstance(target, bool) or not isinstance(target, (int, float)) or \
            not 0.0 < target <= 1.0:
        raise ValueError(f"`target` is the fraction of the {what} to keep, in (0, 1]; got "
                         f"{target!r}.")


def post_training_masks(model, dataset, target=0.5, cost="params", num_samples=2048,
                        rearrange=True, tune=True, verbose=0, latency_table=None):
    """The post-training masks of a fine-tuned dense model (steps 1-4 of the module
    docstring), as a `PostTrainingMasks`; `prune_post_training` compacts them.

    Arguments as for `prune_post_training`.
    """
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"`num_samples` must be a positive integer; got {num_samples!r}.")
    network = _check_dense(model)
    config, shapes = network.bert_config, network.layer_shapes
    _check_target(target, cost, latency_table, config)
    seconds = {}
    began = time.perf_counter()
    batches = _sample_batches(dataset, num_samples)
    head_grads, unit_grads = per_example_mask_gradients(network, batches, verbose)
    head_fisher = [np.mean(np.square(g), axis=0) for g in head_grads]
    unit_fisher = [np.mean(np.square(g), axis=0) for g in unit_grads]
    seconds["fisher"] = time.perf_counter() - began

    began = time.perf_counter()
    head_cost, unit_cost = unit_costs(config)
    total = sum(h * head_cost + u * unit_cost for h, u in shapes)
    if cost == "latency":  # the fixed part (embeddings, classifier...) stays
        budget = target * latency_table.dense_seconds(shapes) - latency_table.fixed_seconds
        head_keep, unit_keep = search_masks_by_latency(head_fisher, unit_fisher,
                                                       latency_table, budget)
    else:
        head_keep, unit_keep = search_masks(head_fisher, unit_fisher, head_cost, unit_cost,
                                            target * total)
    seconds["search"] = time.perf_counter() - began

    began = time.perf_counter()
    if rearrange:
        head_keep = [rearrange_mask(k, g) for k, g in zip(head_keep, head_grads)]
        unit_keep = [rearrange_mask(k, g) for k, g in zip(unit_keep, unit_grads)]
    seconds["rearrange"] = time.perf_counter() - began

    began = time.perf_counter()
    if tune:
        head_scales, unit_scales = tune_masks(network, batches, head_keep, unit_keep, verbose)
    else:
        head_scales = [k.astype("float32") for k in head_keep]
        unit_scales = [k.astype("float32") for k in unit_keep]
    seconds["tune"] = time.perf_counter() - began
    kept = sum(int(h.sum()) * head_cost + int(u.sum()) * unit_cost
               for h, u in zip(head_keep, unit_keep))
    return PostTrainingMasks(head_scales, unit_scales, head_fisher, unit_fisher, kept, total,
                             seconds)


def masked_model(model, masks):
    """A `heads+ffn` gated copy of the dense `model` computing the pruned, tuned model: the
    gates are exactly open (kept) or closed, the tuned scales folded into the rows of the
    attention output and FFN output kernels. `keras_flop.compact` turns it into the plain
    compact model."""
    network = _check_dense(model)
    gated = factorize_model(network, structure="heads+ffn")
    head_size = network.bert_config.head_size
    for part, heads, units in zip(encoder_layer_parts(gated), masks.head_scales,
                                  masks.unit_scales):
        for kind, scales, consumer, unit in (("head", heads, "attention_output", head_size),
                                             ("intermediate", units, "output", 1)):
            if part.masks[kind] is None:
                continue
            part.masks[kind].log_alpha.assign(np.where(scales != 0, _OPEN, _CLOSED)
                                              .astype("float32"))
            layer = part.dense[consumer]
            rows = np.repeat(np.where(scales != 0, scales, 1.0), unit)[:, None]
            layer.kernel.assign(np.asarray(layer.kernel) * rows.astype("float32"))
    return gated


def prune_post_training(model, dataset, target=0.5, cost="params", num_samples=2048,
                        rearrange=True, tune=True, verbose=0, return_masks=False,
                        latency_table=None):
    """Prunes heads and FFN units of a fine-tuned dense BERT without retraining.

    Kwon et al. 2022 (module docstring): Fisher scores from per-example mask gradients on
    `num_samples` examples, a global search under the parameter budget, per-layer
    rearrangement, least-squares rescaling of what is kept, then compaction. Takes about as
    long as a few forward and backward passes over the sample.

    Args:
        model: the fine-tuned dense `BertClassifier` (no gates).
        dataset: `(features, labels)` batches of the task's training data, e.g.
            `keras_flop.glue.make_dataset(...)`; the first `num_samples` examples are used.
        target: what to keep, in (0, 1]: with `cost="params"` the fraction of the encoder's
            head and FFN kernel parameters (`1 - target_sparsity` of the Lagrangian path,
            dense denominator); with `cost="latency"` the fraction of the model's time as
            `latency_table` predicts it, `1 / S` for a speedup `S`.
        cost: `"params"`, or `"latency"` (the search budgets the table's block times, and a
            block whose units are all pruned costs nothing).
        num_samples: examples for the Fisher scores and the tuning (the paper's 2,048).
        rearrange, tune: run steps 3 and 4 (both on by default, as in the paper).
        verbose: 0 silent, 1 progress bars, 2 one line per bar when it ends (for logs).
        return_masks: also return the `PostTrainingMasks`.
        latency_table: the `keras_flop.LatencyTable` of `cost="latency"`.

    Returns:
        The compact `BertClassifier` (as `keras_flop.compact` makes it), or
        `(compact_model, masks)`.

    Example:
    >>> import keras_flop, numpy as np
    >>> config = keras_flop.BertConfig(vocab_size=30, hidden_size=16, num_hidden_layers=1,
    ...                                num_attention_heads=2, intermediate_size=32)
    >>> dense = keras_flop.build_bert_classifier(config)
    >>> x = {"token_ids": np.ones((8, 6), "int32"), "segment_ids": np.zeros((8, 6), "int32"),
    ...      "padding_mask": np.ones((8, 6), bool)}
    >>> data = [(x, np.zeros(8, "int32"))]
    >>> small, masks = keras_flop.prune_post_training(dense, data, target=0.5,
    ...                                               return_masks=True)
    >>> masks.kept_params <= 0.5 * masks.total_params
    True
    >>> small.count_params() < dense.count_params()
    True
    """
    masks = post_training_masks(model, dataset, target, cost, num_samples, rearrange, tune,
                                verbose, latency_table)
    compact_model = compact(masked_model(model, masks))
    return (compact_model, masks) if return_masks else compact_model


def init_gates_from_masks(pruning_model, masks, log_alpha=5.0):
    """Starts the head and FFN-unit gates of a pruning model from a post-training mask:
    `log α = +log_alpha` for kept units (open, `ẑ = 1`), `-log_alpha` for pruned ones
    (`ẑ = 0`); the gates stay trainable.

    `pruning_model` must gate heads and FFN units (`structure` `heads+ffn`,
    `heads+ffn+layers` or `all`) and have the encoder `masks` were computed on.
    """
    parts = encoder_layer_parts(getattr(pruning_model, "network", pruning_model))
    if len(parts) != len(masks.head_scales):
        raise ValueError(f"The masks are for {len(masks.head_scales)} encoder layers; the "
                         f"model has {len(parts)}.")
    for part, heads, units in zip(parts, masks.head_scales, masks.unit_scales):
        for kind, scales in (("head", heads), ("intermediate", units)):
            gate = part.masks[kind]
            if gate is None:
                raise ValueError("A Fisher initial mask needs head and FFN-unit gates: build "
                                 "the pruning model with structure='heads+ffn', "
                                 "'heads+ffn+layers' or 'all'.")
            if gate.size != len(scales):
                raise ValueError(f"{gate.name} has {gate.size} units, the mask "
                                 f"{len(scales)}.")
            gate.log_alpha.assign(np.where(np.asarray(scales) != 0, log_alpha, -log_alpha)
                                  .astype("float32"))
    return pruning_model
