"""Retraining-free pruning: Fisher scores, mask search and rearrangement, least-squares tuning,
compaction."""

import itertools

import keras
import numpy as np
import pytest

import keras_flop
from keras_flop import BertConfig, build_bert_classifier
from keras_flop.fisher import post_training as pt
from keras_flop.fisher import tuning
from keras_flop.gates.structure import encoder_layer_parts, mask_values
from conftest import random_inputs

TINY = dict(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=64, max_position_embeddings=16)


def _inputs(n=6, seq=8, seed=0):
    return random_inputs(n, seq, seed)


def _dense(seed=0, num_labels=2):
    keras.utils.set_random_seed(seed)
    model = build_bert_classifier(BertConfig(**TINY), num_labels=num_labels)
    # Larger weights than the init so that heads and units differ clearly.
    for layer in model.encoder_dense_layers():
        layer.kernel.assign(np.asarray(layer.kernel) * 8.0)
    return model


def _batches(n=12, batch=4, seed=0, num_labels=2):
    x = _inputs(n, seed=seed)
    y = (np.arange(n) % num_labels).astype("int32") if num_labels > 1 else \
        np.linspace(0, 5, n).astype("float32")
    return [({k: v[i:i + batch] for k, v in x.items()}, y[i:i + batch])
            for i in range(0, n, batch)]


def test_masked_forward_equals_the_model_and_the_compact_model_of_a_mask():
    """The method's masked forward pass is the model's own: at all-ones masks it gives the
    model's logits, and at a binary mask those of the compact model that mask cuts."""
    dense = _dense()
    x = _inputs()
    forward = dense.forward_view()
    ones = [np.ones(h, "float32") for h, _ in dense.layer_shapes], \
        [np.ones(u, "float32") for _, u in dense.layer_shapes]
    for logits in (forward(x), forward(x, *ones)):
        np.testing.assert_allclose(np.asarray(logits), np.asarray(dense(x)), atol=1e-5)
    rng = np.random.default_rng(0)
    heads = [np.array([1, 0, 1, 1], "float32"), np.array([0, 0, 0, 1], "float32")]
    units = [(rng.random(64) < 0.5).astype("float32"), np.zeros(64, "float32")]
    masks = pt.PostTrainingMasks(heads, units, heads, units, 0, 0)
    compact_model = keras_flop.compact(pt.masked_model(dense, masks))
    assert compact_model.layer_shapes == ((3, int(units[0].sum())), (1, 0))
    np.testing.assert_allclose(np.asarray(forward(x, heads, units)),
                               np.asarray(compact_model(x)), atol=1e-5)


def _loss_with_scaled_rows(dense, x, y, layer, suffix, rows, factor):
    """Per-example losses of `dense` with kernel rows `rows` of `layer_{layer}_{suffix}`
    scaled by `factor`: the same as a mask of `factor` on what those rows consume."""
    kernel = dense.get_layer(f"layer_{layer}_{suffix}").kernel
    saved = np.asarray(kernel)
    scaled = saved.copy()
    scaled[rows] *= factor
    kernel.assign(scaled)
    logits = np.asarray(dense(x), np.float64)
    kernel.assign(saved)
    if logits.shape[-1] == 1:
        return (logits[:, 0] - y) ** 2
    logits -= logits.max(-1, keepdims=True)
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    return -log_probs[np.arange(len(y)), y]


@pytest.mark.parametrize("num_labels", [2, 1])
def test_per_example_gradients_and_fisher_scores_match_finite_differences(num_labels):
    dense = _dense(seed=1, num_labels=num_labels)
    batches = _batches(n=6, batch=3, num_labels=num_labels)
    head_grads, unit_grads = pt.per_example_mask_gradients(dense, batches)
    x = {k: np.concatenate([b[0][k] for b in batches]) for k in batches[0][0]}
    y = np.concatenate([b[1] for b in batches])
    eps = 1e-2
    head_size = TINY["hidden_size"] // TINY["num_attention_heads"]
    for layer in range(2) if num_labels > 1 else (1,):
        checks = [("attention_output", head_grads[layer][:, h],
                   np.arange(h * head_size, (h + 1) * head_size)) for h in (0, 3)]
        checks += [("output", unit_grads[layer][:, u], [u]) for u in (17, 63)]
        for suffix, grad, rows in checks:
            numeric = (_loss_with_scaled_rows(dense, x, y, layer, suffix, rows, 1 + eps) -
                       _loss_with_scaled_rows(dense, x, y, layer, suffix, rows, 1 - eps)) / \
                (2 * eps)
            np.testing.assert_allclose(grad, numeric, rtol=2e-2, atol=2e-4)
    masks = pt.post_training_masks(dense, batches, target_sparsity=0.4, rearrange=False,
                                   tune=False)
    for layer in range(2):
        np.testing.assert_allclose(masks.head_fisher[layer],
                                   np.mean(head_grads[layer] ** 2, 0), rtol=1e-6)
        np.testing.assert_allclose(masks.unit_fisher[layer],
                                   np.mean(unit_grads[layer] ** 2, 0), rtol=1e-6)


def test_search_keeps_the_most_fisher_score_within_the_budget():
    rng = np.random.default_rng(0)
    heads = [rng.random(2), rng.random(2)]
    units = [rng.random(3), rng.random(3)]
    head_cost, unit_cost, budget = 5, 2, 13
    keep_heads, keep_units = pt.search_masks(heads, units, head_cost, unit_cost, budget)
    chosen = np.concatenate(heads)[np.concatenate(keep_heads)].sum() + \
        np.concatenate(units)[np.concatenate(keep_units)].sum()
    cost = np.concatenate(keep_heads).sum() * head_cost + \
        np.concatenate(keep_units).sum() * unit_cost
    assert cost <= budget
    scores = np.concatenate(heads + units)
    costs = np.array([head_cost] * 4 + [unit_cost] * 6)
    best = max(scores[list(s)].sum() for r in range(11)
               for s in itertools.combinations(range(10), r) if costs[list(s)].sum() <= budget)
    assert chosen == pytest.approx(best)


@pytest.mark.parametrize("last_layer_heads", [1, 2])
def test_search_keeps_the_last_layers_best_heads_when_asked(last_layer_heads):
    rng = np.random.default_rng(2)
    heads = [np.array([0.9, 0.8]), np.array([0.05, 0.1])]  # the last layer's score low
    units = [rng.random(3), rng.random(3)]
    head_cost, unit_cost, budget = 5, 2, 13
    plain, _ = pt.search_masks(heads, units, head_cost, unit_cost, budget)
    assert not plain[-1].any()  # the plain search prunes every head of the last layer
    keep_heads, keep_units = pt.search_masks(heads, units, head_cost, unit_cost, budget,
                                             last_layer_heads=last_layer_heads)
    assert keep_heads[-1].sum() >= last_layer_heads and keep_heads[-1][1]  # its best first
    kept = np.concatenate(keep_heads + keep_units)
    costs = np.array([head_cost] * 4 + [unit_cost] * 6)
    assert costs[kept].sum() <= budget
    # The most score of any set that fits and keeps that many heads of the last layer.
    scores = np.concatenate(heads + units)
    best = max(scores[list(s)].sum() for r in range(11)
               for s in itertools.combinations(range(10), r)
               if costs[list(s)].sum() <= budget and sum(i in (2, 3) for i in s) >=
               last_layer_heads)
    assert scores[kept].sum() == pytest.approx(best)


def test_the_last_layers_heads_are_checked_and_paid_for_under_a_latency_budget():
    config = keras_flop.BertConfig(vocab_size=30, hidden_size=16, num_hidden_layers=3,
                                   num_attention_heads=4, intermediate_size=8)
    table = _table(config)
    heads = [np.full(4, 1.0), np.full(4, 1.0), np.array([0.0, 0.01, 0.0, 0.0])]
    units = [np.full(8, 0.5) for _ in range(3)]
    plain, _ = pt.search_masks_by_latency(heads, units, table, 9.5)
    keep_heads, keep_units = pt.search_masks_by_latency(heads, units, table, 9.5,
                                                        last_layer_heads=1)
    assert not plain[-1].any() and keep_heads[-1].tolist() == [False, True, False, False]
    assert sum(table.attention_time(h.sum()) + table.ffn_time(u.sum())
               for h, u in zip(keep_heads, keep_units)) <= 9.5
    for bad in (5, -1, True, 1.0):
        with pytest.raises(ValueError, match="`last_layer_heads` must be an integer in 0..4"):
            pt.search_masks_by_latency(heads, units, table, 9.5, last_layer_heads=bad)
    with pytest.raises(ValueError, match="or lower `last_layer_heads`"):
        pt.search_masks_by_latency(heads, units, table, 2.0, last_layer_heads=1)


def test_rearrangement_keeps_the_count_and_lowers_the_block_fisher_loss():
    rng = np.random.default_rng(1)
    grads = rng.normal(size=(50, 12)) + rng.normal(size=(50, 1))  # correlated units
    keep = np.ones(12, bool)
    keep[np.argsort((grads ** 2).mean(0))[:5]] = False

    def loss(k):
        return np.sum(grads[:, ~k].sum(1) ** 2)

    new = pt.rearrange_mask(keep, grads)
    assert new.sum() == keep.sum()
    assert loss(new) <= loss(keep) + 1e-9


def _system_check(kind, dense, seed=0):
    """`(tuned scales, explicit lstsq scales, errors)` of layer 1's `kind` sublayer, the
    columns of `A` made explicitly from the masked forward pass with one-hot masks."""
    encoder, tuner = dense.forward_view(), tuning._Tuner(dense)
    x = _inputs(seed=seed)
    pm = x["padding_mask"]
    teacher = encoder.embed(x)
    rng = np.random.default_rng(seed)
    student = teacher + rng.normal(0, 0.3, teacher.shape).astype("float32")
    size = 4 if kind == "attention" else 64
    kept = np.sort(rng.choice(size, 3 if kind == "attention" else 40, replace=False))
    if kind == "attention":
        def forward(inp, mask):
            return np.asarray(encoder.attention(1, inp, pm, mask).residual)
        ata, atb = tuner.attention_system(1, student, forward(teacher, None), pm, kept)
    else:
        def forward(inp, mask):
            return np.asarray(encoder.ffn(1, inp, mask).residual)
        ata, atb = tuner.ffn_system(1, student, forward(teacher, None), pm, kept)
    target = forward(teacher, None)[pm]
    base = forward(student, np.zeros(size, "float32"))[pm]
    columns = []
    for j in kept:
        one_hot = np.zeros(size, "float32")
        one_hot[j] = 1.0
        columns.append((forward(student, one_hot)[pm] - base).reshape(-1))
    a = np.stack(columns, 1).astype(np.float64)
    b = (target - base).reshape(-1).astype(np.float64)
    tuned = pt.solve_scales(np.asarray(ata), np.asarray(atb))
    explicit = np.linalg.lstsq(a, b, rcond=None)[0]
    mask = np.zeros(size, "float32")
    mask[kept] = 1.0
    before = np.sum((forward(student, mask)[pm] - target) ** 2)
    mask[kept] = tuned
    after = np.sum((forward(student, mask)[pm] - target) ** 2)
    return tuned, explicit, before, after


@pytest.mark.parametrize("kind", ["attention", "ffn"])
def test_least_squares_tuning_equals_lstsq_and_reduces_the_error(kind):
    tuned, explicit, before, after = _system_check(kind, _dense(seed=2))
    np.testing.assert_allclose(tuned, explicit, rtol=1e-3, atol=1e-4)
    assert after < before


def _table(config, fixed=1.0):
    """A hand-made latency table: blocks cost an overhead plus a time per unit."""
    heads, units = config.num_attention_heads, config.intermediate_size
    return keras_flop.LatencyTable(
        {f: getattr(config, f) for f in ("hidden_size", "num_attention_heads",
                                         "intermediate_size", "num_hidden_layers")},
        batch_size=2, seq_length=8, attention_heads=list(range(heads + 1)),
        attention_seconds=[0.0] + [2.0 + h for h in range(1, heads + 1)],
        ffn_units=[0, 1, units], ffn_seconds=[0.0, 1.5, 1.5 + 0.25 * (units - 1)],
        fixed_seconds=fixed)


def test_latency_search_fits_the_budget_and_adds_nothing_that_would_fit():
    rng = np.random.default_rng(1)
    config = keras_flop.BertConfig(vocab_size=30, hidden_size=16, num_hidden_layers=3,
                                   num_attention_heads=4, intermediate_size=8)
    table = _table(config)
    heads = [rng.random(4) for _ in range(3)]
    units = [rng.random(8) for _ in range(3)]

    def seconds(keep_heads, keep_units):
        return sum(table.attention_time(h.sum()) + table.ffn_time(u.sum())
                   for h, u in zip(keep_heads, keep_units))

    for budget in (4.0, 9.5, 17.0):
        keep_heads, keep_units = pt.search_masks_by_latency(heads, units, table, budget)
        assert seconds(keep_heads, keep_units) <= budget
        # The next FFN unit in Fisher order no longer fits.
        flat = np.concatenate(keep_units)
        left = np.flatnonzero(~flat)
        if len(left):
            nxt = left[np.argmax(np.concatenate(units)[left])]
            grown = flat.copy()
            grown[nxt] = True
            assert seconds(keep_heads, np.split(grown, 3)) > budget
    with pytest.raises(ValueError, match="cannot hold anything"):
        pt.search_masks_by_latency(heads, units, table, -1.0)


def test_post_training_pruning_to_a_speedup_meets_the_predicted_time():
    dense = _dense(seed=3)
    table = _table(dense.bert_config)
    compact_model = keras_flop.prune_post_training(dense, _batches(n=16), target_speedup=2.0,
                                                   latency_table=table, num_samples=12)
    assert table.dense_seconds(compact_model.layer_shapes) <= 0.5 * table.dense_seconds()
    with pytest.raises(ValueError, match="with cost='latency' only"):
        keras_flop.prune_post_training(dense, _batches(), latency_table=table)


@pytest.mark.parametrize("target", [0.7, 0.4])
def test_pruned_model_meets_the_budget_and_compacts_exactly(target):
    dense = _dense(seed=3)
    batches = _batches(n=16)
    compact_model, masks = keras_flop.prune_post_training(dense, batches,
                                                          target_sparsity=1.0 - target,
                                                          num_samples=12, return_masks=True)
    assert masks.kept_params <= target * masks.total_params
    head_cost, _ = pt.unit_costs(dense.bert_config)
    assert target * masks.total_params - masks.kept_params < head_cost  # budget used up
    gated = pt.masked_model(dense, masks)
    report = keras_flop.parameter_report(gated)
    assert report["dense_pruned_params"] == masks.kept_params
    assert [h for h, _ in compact_model.layer_shapes] == masks.kept_heads
    assert [u for _, u in compact_model.layer_shapes] == masks.kept_units
    x = _inputs(seed=5)
    np.testing.assert_allclose(np.asarray(compact_model(x)),
                               np.asarray(gated(x, training=False)), atol=1e-5)
    # The gated model is the masked, tuned forward pass.
    np.testing.assert_allclose(
        np.asarray(gated(x, training=False)),
        np.asarray(dense.forward_view()(x, masks.head_scales, masks.unit_scales)),
        atol=1e-5)
    assert set(masks.seconds) == {"fisher", "search", "rearrange", "tune"}


def test_init_gates_from_masks_opens_kept_units_only():
    dense = _dense(seed=4)
    masks = keras_flop.post_training_masks(dense, _batches(), target_sparsity=0.5, tune=False)
    pruning_model = keras_flop.factorize(dense, structure="heads+ffn")
    pt.init_gates_from_masks(pruning_model, masks)
    for part, heads, units in zip(encoder_layer_parts(pruning_model.network),
                                  masks.head_scales, masks.unit_scales):
        np.testing.assert_array_equal(mask_values(part.masks["head"]), heads != 0)
        np.testing.assert_array_equal(mask_values(part.masks["intermediate"]), units != 0)
        assert part.masks["head"].trainable
    with pytest.raises(ValueError, match="needs head and FFN-unit gates"):
        pt.init_gates_from_masks(keras_flop.factorize(dense), masks)


def test_bad_arguments_say_what_to_do():
    dense = _dense()
    with pytest.raises(ValueError, match="needs a `latency_table`"):
        keras_flop.prune_post_training(dense, _batches(), cost="latency")
    with pytest.raises(ValueError, match=r"fraction of the encoder's head and FFN parameters "
                                         r"to remove, in \[0, 1\); got 1.0"):
        keras_flop.prune_post_training(dense, _batches(), target_sparsity=1.0)
    with pytest.raises(ValueError, match="`target_speedup` must be >= 1; got 0.5"):
        keras_flop.prune_post_training(dense, _batches(), target_speedup=0.5,
                                       latency_table=_table(dense.bert_config))
    with pytest.raises(ValueError, match="`target_speedup` is a latency target"):
        keras_flop.prune_post_training(dense, _batches(), target_speedup=2.0, cost="params")
    with pytest.raises(TypeError, match="`target_sparsity` must be a number; got '0.5'"):
        keras_flop.prune_post_training(dense, _batches(), target_sparsity="0.5")
    # The old `target` was the fraction kept: refused, saying what to pass instead.
    with pytest.raises(TypeError, match=r"pass target_sparsity=0.3, or target_speedup=S"):
        keras_flop.prune_post_training(dense, _batches(), target=0.7)
    with pytest.raises(TypeError, match="positional"):
        keras_flop.prune_post_training(dense, _batches(), 0.5)
    with pytest.raises(ValueError, match="fine-tuned dense BertClassifier"):
        keras_flop.prune_post_training(keras_flop.factorize(dense), _batches())
    with pytest.raises(ValueError, match=r"\(features, labels\)"):
        keras_flop.prune_post_training(dense, [_inputs()])
    with pytest.raises(ValueError, match=r"`unit_keep` needs one bool array per encoder layer, "
                                         r"of \[64, 64\] units; got \[64\]"):
        pt.tune_masks(dense, _batches(), [np.ones(4, bool)] * 2, [np.ones(64, bool)])
