"""The mask search and the mask rearrangement (steps 2 and 3 of
`keras_flop.fisher.post_training`).

2. **Mask search.** Under a parameter budget (a head costs `4·hidden·head_size`, an FFN unit
   `2·hidden`), try every total number of kept heads, fill the rest of the budget with FFN
   units, keep the heads and units of highest Fisher score, and take the split whose kept
   scores sum highest (`search_masks`); under a latency budget the same with a latency
   table's block times (`search_masks_by_latency`). `last_layer_heads` keeps that many of
   the last layer's heads whatever their score: a classifier that pools the first token
   reads the sentence through the last layer's attention, and the diagonal Fisher prices each
   of those heads as if the others stayed. With all of them pruned, MiniLM-L6 fine-tuned on
   SST-2 gave the same logits for every sentence (dev accuracy 0.5092, the majority class)
   at 3x; one head kept gave 0.58 and two 0.77, before any tuning.
3. **Mask rearrangement.** Per layer and kind, keeping the count, greedily swap units so that
   the pruned set's summed per-example gradients are smallest: the block-diagonal Fisher
   approximation of the loss increase, `Σ_n (Σ_{i pruned} g_ni)²` (`rearrange_mask`).

Plain numpy on the scores and gradients: nothing here runs the model.
"""

import numpy as np

from keras_flop.gates.cost import unit_kernel_params


def unit_costs(config):
    """Encoder kernel parameters of one head and of one FFN unit (the cost account's)."""
    return unit_kernel_params(config)


def _head_order(head_fisher, last_layer_heads):
    """Flat head indices in the order the search keeps them: the last layer's
    `last_layer_heads` best first, then every other head in decreasing Fisher score."""
    if isinstance(last_layer_heads, bool) or not isinstance(last_layer_heads, int) or not (
            0 <= last_layer_heads <= len(head_fisher[-1])):
        raise ValueError(f"`last_layer_heads` must be an integer in 0..{len(head_fisher[-1])} "
                         f"(the last layer's heads); got {last_layer_heads!r}.")
    heads_flat = np.concatenate(head_fisher)
    order = np.argsort(-heads_flat, kind="stable")
    last = len(heads_flat) - len(head_fisher[-1])
    first = last + np.argsort(-np.asarray(head_fisher[-1]), kind="stable")[:last_layer_heads]
    return np.concatenate([first, order[~np.isin(order, first)]]).astype(int)


def _prefix_search(head_fisher, unit_fisher, most_units, too_small, last_layer_heads=0):
    """The search both budgets share. Heads and FFN units are each taken in decreasing Fisher
    order across all layers (the last layer's `last_layer_heads` best heads first, always
    kept); for every count of kept heads, `most_units(num_heads, head_order, unit_order)`
    gives the most units (in their order) that still fit, or None when the heads alone do
    not; the count with the most total Fisher score wins. Binary masks `(heads, units)` per
    layer; a `ValueError` saying `too_small` when nothing fits."""
    heads_flat, units_flat = np.concatenate(head_fisher), np.concatenate(unit_fisher)
    head_order = _head_order(head_fisher, last_layer_heads)
    unit_order = np.argsort(-units_flat, kind="stable")
    head_prefix = np.concatenate([[0.0], np.cumsum(heads_flat[head_order])])
    unit_prefix = np.concatenate([[0.0], np.cumsum(units_flat[unit_order])])
    best = None
    for num_heads in range(last_layer_heads, len(heads_flat) + 1):
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


def search_masks(head_fisher, unit_fisher, head_cost, unit_cost, budget, last_layer_heads=0):
    """Binary masks `(heads, units)` (per layer, bool arrays) keeping the most Fisher score
    with `kept heads · head_cost + kept units · unit_cost <= budget`, and at least
    `last_layer_heads` heads in the last layer (module docstring).

    For every total number of kept heads the rest of the budget goes to FFN units; both are
    taken in decreasing Fisher order across all layers, and the best total wins.
    """
    num_units = sum(len(a) for a in unit_fisher)

    def most_units(num_heads, head_order, unit_order):
        left = budget - num_heads * head_cost
        return None if left < 0 else min(num_units, int(left // unit_cost))

    return _prefix_search(head_fisher, unit_fisher, most_units,
                          f"A budget of {budget} parameters cannot hold anything: raise "
                          "`target`" + (" or lower `last_layer_heads`" if last_layer_heads
                                        else "") + ".", last_layer_heads)


def search_masks_by_latency(head_fisher, unit_fisher, table, budget, last_layer_heads=0):
    """Binary masks `(heads, units)` keeping the most Fisher score with the encoder blocks'
    time as `table` (a `keras_flop.LatencyTable`) predicts it, `Σ_layers T_att(kept heads) +
    T_ffn(kept units)`, at most `budget` seconds, and at least `last_layer_heads` heads in
    the last layer (module docstring).

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
    >>> keep_heads, keep_units = search_masks_by_latency(heads, units, table, budget=7.0,
    ...                                                  last_layer_heads=1)
    >>> [k.tolist() for k in keep_heads], [int(k.sum()) for k in keep_units]
    ([[False, False], [True, False]], [4, 0])
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
                          "anything: ask for a smaller speedup" + (
                              " or lower `last_layer_heads`" if last_layer_heads else "") + ".",
                          last_layer_heads)


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
