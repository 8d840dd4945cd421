"""Replace the encoder's dense layers by SVD-initialized `FactorizedDense` layers."""

import keras
import numpy as np

from keras_flop.layers.factorized_dense import FactorizedDense
from keras_flop.models.bert import bert_network, bert_structure_of, build_bert_classifier
from keras_flop.gates.structure import parse_structure, structural_masks
from keras_flop.lagrangian.arguments import check_pruning_arguments, is_real, shown


BREAK_EVEN = "break_even"


def check_dense(model, caller="factorize"):
    """The dense `BertClassifier` `model`; a `ValueError` saying what to pass instead for a
    pruning model, a network with gates or factorized layers, or any other model."""
    network = bert_network(model)
    if network is not model:
        raise ValueError(
            f"{caller} takes the dense BertClassifier; got the pruning model {model.name!r} "
            f"({type(model).__name__}): pass the dense model it was made from, or compact it "
            "(keras_flop.compact).")
    if network.encoder_dense_layers() and not network.is_dense():
        raise ValueError(
            f"Model {model.name!r} is already factorized or gated (a pruning model's "
            f"network): {caller} takes the dense BertClassifier; pass the dense model it was "
            "made from.")
    return network


def break_even_rank(a, b):
    """The largest rank at which the factors of an `[a, b]` kernel cost no more than it.

    Example:
    >>> from keras_flop.lagrangian.factorization import break_even_rank
    >>> break_even_rank(768, 768), break_even_rank(768, 3072)  # BERT-base's two kernel shapes
    (384, 614)
    """
    return max(1, a * b // (a + b))


def encoder_dense_layers(model):
    """The model's encoder dense layers (`Dense` or `FactorizedDense`), in graph order.

    Example:
    >>> import keras_flop
    >>> config = keras_flop.BertConfig(vocab_size=30, hidden_size=8, num_hidden_layers=1,
    ...                                num_attention_heads=2, intermediate_size=16,
    ...                                max_position_embeddings=16)
    >>> from keras_flop.lagrangian.factorization import encoder_dense_layers
    >>> [layer.name for layer in encoder_dense_layers(keras_flop.build_bert_classifier(config))]
    ['layer_0_attention_query', 'layer_0_attention_key', 'layer_0_attention_value',
     'layer_0_attention_output', 'layer_0_intermediate', 'layer_0_output']
    """
    return bert_network(model).encoder_dense_layers()


def copy_into(source, target, skip=()):
    """Copies the weights of every layer of `target` with weights from the layer of the same
    name in `source`, except the layers named in `skip`.

    Example:
    >>> import keras, numpy as np
    >>> from keras_flop.lagrangian.factorization import copy_into
    >>> def mlp():
    ...     return keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, name="hidden"),
    ...                              keras.layers.Dense(1, name="head")])
    >>> source, target = mlp(), mlp()
    >>> copy_into(source, target, skip={"head"})
    >>> np.array_equal(source.get_layer("hidden").kernel, target.get_layer("hidden").kernel)
    True
    >>> np.array_equal(source.get_layer("head").kernel, target.get_layer("head").kernel)
    False
    """
    for layer in target.layers:
        if layer.weights and layer.name not in skip:
            layer.set_weights(source.get_layer(layer.name).get_weights())


def factorize_model(model, rank=None, energy=None, sigma="full", rank_policy="min",
                    gated=True, gate_config=None, structure="rank"):
    """The model with every encoder dense layer as a gated `FactorizedDense`, and the
    structural gates `structure` asks for.

    Args:
        model: a dense `BertClassifier` (`build_bert_classifier`, `load_tf1_checkpoint`); a
            pruning model, or a network with gates or factorized layers, is a `ValueError`.
        structure: which units are gated: `"rank"` (FLOP: the SVD ranks of every dense layer),
            `"heads+ffn"` (attention heads and FFN intermediate units; the dense layers stay
            dense), `"heads+ffn+layers"` (also whole attention and FFN blocks), or `"all"`
            (ranks, heads, FFN units and blocks).
        rank: the rank of every factorization: an int (capped at each layer's full rank), a
            float in (0, 1] meaning that fraction of `Σ σ²` (energy) is kept, `"break_even"`
            (each `[a, b]` kernel at `⌊ab / (a + b)⌋`, where the factor pair costs what the
            kernel costs, so that the expected sparsity starts at 0 instead of below it), or
            None for full rank.
        energy: same as a float `rank`, by keyword.
        sigma, rank_policy: see `keras_flop.layers.svd.svd_factors`.
        gated: attach a rank gate to each factorized layer (default) or not.
        gate_config: keyword arguments of each `HardConcreteMask`.

    Returns:
        A new `BertClassifier` with `model`'s architecture and the structural gates (no
        variables shared with `model`). With all gates open (the default `log_alpha = 5`,
        under either `eval_mask`) its inference outputs equal `model`'s.

    Example:
    >>> import keras_flop
    >>> config = keras_flop.BertConfig(vocab_size=30, hidden_size=8, num_hidden_layers=1,
    ...                                num_attention_heads=2, intermediate_size=16,
    ...                                max_position_embeddings=16)
    >>> dense = keras_flop.build_bert_classifier(config)
    >>> network = keras_flop.factorize_model(dense, rank="break_even")
    >>> [layer.rank for layer in network.layers
    ...  if isinstance(layer, keras_flop.layers.FactorizedDense)]  # [8, 8] and [8, 16] kernels
    [4, 4, 4, 4, 5, 5]
    >>> round(float(keras_flop.expected_sparsity(network)), 2)  # starts near 0, not below
    0.03
    """
    factorized, structural = parse_structure(structure)
    if energy is not None and not is_real(energy):
        raise TypeError(f"`energy` must be a number in (0, 1] or None; got {shown(energy)}.")
    if gate_config is not None and not isinstance(gate_config, dict):
        raise TypeError("`gate_config` must be a dict of HardConcreteMask arguments or None; "
                        f"got {shown(gate_config)}.")
    if isinstance(rank, float):
        if energy is not None:
            raise ValueError("Pass the energy fraction either as a float `rank` or as "
                             "`energy`, not both.")
        rank, energy = None, rank
    break_even = rank == BREAK_EVEN
    if break_even:
        rank = None
    if rank is not None and (isinstance(rank, bool) or not isinstance(rank, int) or rank < 1):
        raise ValueError(f"`rank` must be a positive int, a float in (0, 1], "
                         f"{BREAK_EVEN!r} or None; got rank={rank!r}.")
    layers = check_dense(model, "factorize_model").encoder_dense_layers()
    if not layers:
        raise ValueError(f"Model {model.name!r} has no encoder dense layers to factorize "
                         "(every attention and FFN block was removed).")

    def replace(name, units, activation):
        layer = model.get_layer(name)
        if not factorized:
            copy = keras.layers.Dense.from_config(layer.get_config())
            copy.build((None, layer.kernel.shape[0]))
            copy.set_weights(layer.get_weights())
            return copy
        kernel = np.asarray(layer.kernel)
        bias = np.asarray(layer.bias) if layer.use_bias else None
        layer_rank = None if rank is None else min(rank, min(kernel.shape))
        if break_even:
            layer_rank = break_even_rank(*kernel.shape)
        return FactorizedDense.from_kernel(
            kernel, bias, rank=layer_rank, energy=energy, sigma=sigma, rank_policy=rank_policy,
            gated=gated, activation=layer.activation, gate_config=gate_config, name=layer.name,
            dtype=layer.dtype_policy)

    config, num_labels, shapes = bert_structure_of(model)
    network = build_bert_classifier(config, num_labels, dense_factory=replace, name=model.name,
                                    gates=structural, gate_config=gate_config,
                                    layer_shapes=shapes, dtype=model.dtype_policy)
    copy_into(model, network, skip={layer.name for layer in encoder_dense_layers(network)} |
              {mask.name for mask in structural_masks(network)})
    return network


def factorize(model, rank=None, energy=None, sigma="full", rank_policy="min", gate_config=None,
              structure="rank", **pruning_kwargs):
    """The pruning model of a dense BERT: its encoder gated as `structure` says.

    Factorizes as `factorize_model` (same `rank`, `energy`, `sigma`, `rank_policy`,
    `gate_config`, `structure`) and wraps the result in a `PruningModel`; `pruning_kwargs` go to it
    (`target_sparsity`, `target_sparsity_warmup`, `sparsity_denominator`,
    `regularization_scale`, `teacher`, `distillation_weight`, `distillation_temperature`).
    With every gate open (the default) its outputs equal `model`'s.

    Raises a `ValueError` for a model that is not a dense `BertClassifier` (a pruning model,
    or a network with gates), and a `TypeError` naming the argument for a pruning argument of
    the wrong kind (`check_pruning_arguments`: `target_sparsity="0.5"`, `pruning_steps=2.7`).

    Example:
    >>> import keras_flop, numpy as np
    >>> config = keras_flop.BertConfig(vocab_size=30, hidden_size=8, num_hidden_layers=1,
    ...                                num_attention_heads=2, intermediate_size=16,
    ...                                max_position_embeddings=16)
    >>> dense = keras_flop.build_bert_classifier(config)
    >>> pruning_model = keras_flop.factorize(dense, target_sparsity=0.5)
    >>> type(pruning_model).__name__, pruning_model.target_sparsity
    ('PruningModel', 0.5)
    >>> x = {"token_ids": np.array([[2, 7, 9, 3]], "int32"),
    ...      "segment_ids": np.zeros((1, 4), "int32"), "padding_mask": np.ones((1, 4), bool)}
    >>> np.allclose(pruning_model(x), dense(x), atol=1e-5)  # every gate open: full rank
    True
    """
    # The pruning model builds on this module: imported here, not at the top.
    from keras_flop.lagrangian.pruning_model import PruningModel

    check_dense(model)
    check_pruning_arguments(pruning_kwargs)
    network = factorize_model(model, rank=rank, energy=energy, sigma=sigma,
                              rank_policy=rank_policy, gate_config=gate_config,
                              structure=structure)
    return PruningModel(network, name=f"{model.name}_pruning", **pruning_kwargs)
