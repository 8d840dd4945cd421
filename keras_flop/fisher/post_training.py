"""Retraining-free structured pruning of a fine-tuned BERT (Kwon et al. 2022, "A Fast
Post-Training Pruning Framework for Transformers").

No gradient step touches the weights. On a small sample of the task (2,048 examples by
default, `keras_flop.fisher.inputs`) the method, one module of this package a step:

1. **Fisher scores** (`scores`): the diagonal empirical Fisher information of a mask on
   every attention head and FFN unit, from per-example gradients of the task loss.
2. **Mask search** (`search`): under a parameter or latency budget, the heads and units of
   highest total Fisher score across all layers.
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

__all__ = ["MAX_SCALE", "PostTrainingMasks", "init_gates_from_masks", "masked_model",
           "per_example_mask_gradients", "post_training_masks", "prune_post_training",
           "rearrange_mask", "search_masks", "search_masks_by_latency", "solve_scales",
           "tune_masks", "unit_costs"]


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
    network = dense_network(model)
    config, shapes = network.bert_config, network.layer_shapes
    _check_target(target, cost, latency_table, config)
    seconds = {}
    began = time.perf_counter()
    batches = sample_batches(dataset, num_samples)
    head_grads, unit_grads = per_example_mask_gradients(network, batches, verbose)
    head_fisher, unit_fisher = fisher_scores(head_grads), fisher_scores(unit_grads)
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
