"""Retraining-free structured pruning of a fine-tuned BERT (Kwon et al. 2022, "A Fast
Post-Training Pruning Framework for Transformers").

No gradient step touches the weights. On a small sample of the task (2,048 examples by
default, `keras_flop.fisher.inputs`) the method, one module of this package a step:

1. **Fisher scores** (`scores`): the diagonal empirical Fisher information of a mask on
   every attention head and FFN unit, from per-example gradients of the task loss.
2. **Mask search** (`search`): under a parameter or latency budget, the heads and units of
   highest total Fisher score across all layers, with at least one head kept in the last
   layer (`last_layer_heads`: the classifier reads the sentence through it).
3. **Mask rearrangement** (`search`): per layer, the same count of units, chosen under the
   block-diagonal Fisher approximation of the loss increase.
4. **Mask tuning** (`tuning`): layer by layer, least-squares scales of the kept heads and
   units so that each pruned sublayer's output matches the dense one's.

`prune_post_training` runs all four and compacts: the scales are folded into the attention
output and FFN output kernels, the masks into a `heads+ffn` gated model (`masks`), and
`keras_flop.compact` returns the same plain `BertClassifier` the Lagrangian path produces.
`post_training_masks` stops before compaction; `init_gates_from_masks` starts the Lagrangian
gates from such a mask.

This module holds the two entry points and exports the steps' public names. Every step runs
the model through its own forward pass, `BertClassifier.forward_view()`.
"""

import time

from keras_flop.fisher.inputs import dense_network, sample_batches
from keras_flop.fisher.masks import PostTrainingMasks, init_gates_from_masks, masked_model
from keras_flop.fisher.scores import fisher_scores, per_example_mask_gradients
from keras_flop.fisher.search import (rearrange_mask, search_masks, search_masks_by_latency,
                                      unit_costs)
from keras_flop.fisher.tuning import MAX_SCALE, solve_scales, tune_masks
from keras_flop.gates.compaction import compact
from keras_flop.gates.cost import check_cost
from keras_flop.lagrangian.arguments import is_real, shown

__all__ = ["MAX_SCALE", "PostTrainingMasks", "init_gates_from_masks", "masked_model",
           "per_example_mask_gradients", "post_training_masks", "prune_post_training",
           "rearrange_mask", "search_masks", "search_masks_by_latency", "solve_scales",
           "tune_masks", "unit_costs"]


def kept_fraction(target_sparsity=None, target_speedup=None, cost=None, latency_table=None,
                  config=None, target=None):
    """`(keep, cost)`: the fraction of the cost the search keeps and the cost it is of.

    A target is what is removed, as everywhere in keras_flop: `target_sparsity` (default 0.5)
    is the fraction of the cost removed, `target_speedup=S` (latency cost) keeps `1/S` of the
    model's time. The old `target=` (the fraction kept) is refused with what to pass instead.

    >>> kept_fraction(target_sparsity=0.25)
    (0.75, 'params')
    >>> kept_fraction(target=0.75)
    Traceback (most recent call last):
    ...
    TypeError: `target` (the fraction kept) is replaced by `target_sparsity`, the fraction
    removed: pass target_sparsity=0.25, or target_speedup=S with a latency table.
    """
    if target is not None:
        sparsity = f"{1.0 - target:.4g}" if isinstance(target, (int, float)) else "1 - target"
        raise TypeError(f"`target` (the fraction kept) is replaced by `target_sparsity`, the "
                        f"fraction removed: pass target_sparsity={sparsity}, or "
                        "target_speedup=S with a latency table.")
    if cost is None:
        cost = "latency" if target_speedup is not None else "params"
    check_cost(cost, latency_table)
    if latency_table is not None and config is not None:
        latency_table.check(config)
    for name, value in (("target_sparsity", target_sparsity),
                        ("target_speedup", target_speedup)):
        if value is not None and not is_real(value):
            raise TypeError(f"`{name}` must be a number; got {shown(value)}.")
    if target_speedup is not None:
        if target_sparsity is not None:
            raise ValueError("Pass either `target_speedup` or `target_sparsity`, not both "
                             "(a speedup S is the latency sparsity 1 - 1/S).")
        if cost != "latency":
            raise ValueError("`target_speedup` is a latency target: pass a `latency_table` "
                             "(keras_flop.measure_latency_table) and cost='latency' or none.")
        if not target_speedup >= 1.0:
            raise ValueError(f"`target_speedup` must be >= 1; got {target_speedup}.")
        return 1.0 / target_speedup, cost
    if target_sparsity is None:
        target_sparsity = 0.5
    if not 0.0 <= target_sparsity < 1.0:
        what = "model's time" if cost == "latency" else "encoder's head and FFN parameters"
        raise ValueError(f"`target_sparsity` is the fraction of the {what} to remove, in "
                         f"[0, 1); got {target_sparsity!r}.")
    return 1.0 - target_sparsity, cost


def post_training_masks(model, dataset, *, target_sparsity=None, target_speedup=None,
                        cost=None, num_samples=2048, rearrange=True, tune=True, verbose=0,
                        latency_table=None, target=None, last_layer_heads=1):
    """The post-training masks of a fine-tuned dense model (steps 1-4 of the module
    docstring), as a `PostTrainingMasks`; `prune_post_training` compacts them.

    Arguments as for `prune_post_training`.
    """
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"`num_samples` must be a positive integer; got {num_samples!r}.")
    network = dense_network(model)
    config, shapes = network.bert_config, network.layer_shapes
    keep, cost = kept_fraction(target_sparsity, target_speedup, cost, latency_table, config,
                               target)
    seconds = {}
    began = time.perf_counter()
    batches = sample_batches(dataset, num_samples, network.num_labels)
    head_grads, unit_grads = per_example_mask_gradients(network, batches, verbose)
    head_fisher, unit_fisher = fisher_scores(head_grads), fisher_scores(unit_grads)
    seconds["fisher"] = time.perf_counter() - began

    began = time.perf_counter()
    head_cost, unit_cost = unit_costs(config)
    total = sum(h * head_cost + u * unit_cost for h, u in shapes)
    if cost == "latency":  # the fixed part (embeddings, classifier...) stays
        budget = keep * latency_table.dense_seconds(shapes) - latency_table.fixed_seconds
        head_keep, unit_keep = search_masks_by_latency(head_fisher, unit_fisher,
                                                       latency_table, budget, last_layer_heads)
    else:
        head_keep, unit_keep = search_masks(head_fisher, unit_fisher, head_cost, unit_cost,
                                            keep * total, last_layer_heads)
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


def prune_post_training(model, dataset, *, target_sparsity=None, target_speedup=None,
                        cost=None, num_samples=2048, rearrange=True, tune=True, verbose=0,
                        return_masks=False, latency_table=None, target=None,
                        last_layer_heads=1):
    """Prunes heads and FFN units of a fine-tuned dense BERT without retraining.

    Kwon et al. 2022 (module docstring): Fisher scores from per-example mask gradients on
    `num_samples` examples, a global search under the parameter budget, per-layer
    rearrangement, least-squares rescaling of what is kept, then compaction. Takes about as
    long as a few forward and backward passes over the sample.

    Args:
        model: the fine-tuned dense `BertClassifier` (no gates).
        dataset: `(features, labels)` batches of the task's training data, e.g.
            `keras_flop.glue.make_dataset(...)`; the first `num_samples` examples are used.
        target_sparsity: what to remove, in [0, 1) (default 0.5): with `cost="params"` the
            fraction of the encoder's head and FFN kernel parameters (as the Lagrangian
            path's `target_sparsity`, dense denominator); with `cost="latency"` the fraction
            of the model's time as `latency_table` predicts it.
        target_speedup: `S >= 1` instead of `target_sparsity`: keep `1 / S` of the time the
            `latency_table` predicts (the cost is then the latency).
        cost: `"params"` (the default), or `"latency"` (the default with `target_speedup`:
            the search budgets the table's block times, and a block whose units are all
            pruned costs nothing).
        num_samples: examples for the Fisher scores and the tuning (the paper's 2,048).
        rearrange, tune: run steps 3 and 4 (both on by default, as in the paper).
        last_layer_heads: heads the last encoder layer keeps whatever their Fisher score
            (`keras_flop.fisher.search`: with none, the first token's pooled vector reads no
            attention in the last layer); 0 searches as the paper does.
        verbose: 0 silent, 1 progress bars, 2 one line per bar when it ends (for logs).
        return_masks: also return the `PostTrainingMasks`.
        latency_table: the `keras_flop.LatencyTable` of `cost="latency"`.
        target: no longer taken (it was the fraction kept): a `TypeError` says what to pass.

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
    >>> small, masks = keras_flop.prune_post_training(dense, data, target_sparsity=0.5,
    ...                                               return_masks=True)
    >>> masks.kept_params <= 0.5 * masks.total_params
    True
    >>> small.count_params() < dense.count_params()
    True
    """
    masks = post_training_masks(model, dataset, target_sparsity=target_sparsity,
                                target_speedup=target_speedup, cost=cost,
                                num_samples=num_samples, rearrange=rearrange, tune=tune,
                                verbose=verbose, latency_table=latency_table, target=target,
                                last_layer_heads=last_layer_heads)
    compact_model = compact(masked_model(model, masks))
    return (compact_model, masks) if return_masks else compact_model
