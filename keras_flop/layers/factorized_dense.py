"""`FactorizedDense`: a dense layer as two low-rank factors with an optional L0 gate between."""

import keras
from keras import ops

from keras_flop.layers.hard_concrete_mask import HardConcreteMask, derive_seed
from keras_flop.layers.svd import svd_factors


@keras.saving.register_keras_serializable(package="keras_flop")
class FactorizedDense(keras.layers.Layer):
    """`y = activation(((x P) ⊙ z) Q + b)` with `P: [in, rank]`, `Q: [rank, units]`.

    `z` is a `HardConcreteMask` over the `rank` units when `gated=True`, else 1. Build one from
    a trained dense kernel with `FactorizedDense.from_kernel`, which initializes `P` and `Q` by
    SVD so that at full rank and with all gates open the layer computes the dense layer.

    Args:
        units: output dimension (positive int).
        rank: inner dimension (int >= 1; 0 is allowed for an ungated layer whose every rank
            was pruned: it outputs `activation(b)`).
        gated: attach a `HardConcreteMask` between the factors.
        activation: applied after `Q` and the bias.
        use_bias: whether the layer has a bias (carried by `Q`).
        kernel_initializer, bias_initializer: for `P`, `Q` and the bias when not built from
            a kernel.
        gate_config: keyword arguments of the `HardConcreteMask` (e.g. `init_log_alpha`,
            `eval_mask`, `seed`: each layer's gate derives its own stream from the seed and
            the layer's name).

    Example:
    >>> import numpy as np
    >>> w = np.random.default_rng(0).normal(size=(8, 6)).astype("float32")
    >>> layer = FactorizedDense.from_kernel(w, np.zeros(6, "float32"))
    >>> x = np.random.default_rng(1).normal(size=(3, 8)).astype("float32")
    >>> bool(np.allclose(layer(x), x @ w, atol=1e-4))
    True
    >>> layer.rank, float(layer.gate.l0_norm()) > 5.9
    (6, True)
    """

    def __init__(self, units, rank, gated=True, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 gate_config=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(units, bool) or not isinstance(units, int) or units < 1:
            raise ValueError(f"`units` must be a positive integer; got units={units!r}.")
        min_rank = 1 if gated else 0
        if isinstance(rank, bool) or not isinstance(rank, int) or rank < min_rank:
            raise ValueError(f"`rank` must be an integer >= {min_rank} "
                             f"({'gated' if gated else 'ungated'} layer); got rank={rank!r}.")
        self.units = units
        self.rank = rank
        self.gated = bool(gated)
        self.activation = keras.activations.get(activation)
        self.use_bias = use_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.gate_config = dict(gate_config or {})
        self.gate = None
        if self.gated:
            gate_config = dict(self.gate_config)
            if gate_config.get("seed") is not None:
                # Every rank gate is named "gate": the layer's name tells their streams apart.
                gate_config["seed"] = derive_seed(gate_config["seed"], self.name)
            self.gate = HardConcreteMask(rank, name="gate", **gate_config)

    @classmethod
    def from_kernel(cls, kernel, bias=None, rank=None, energy=None, sigma="full",
                    rank_policy="min", gated=True, activation=None, gate_config=None,
                    **kwargs):
        """A built layer whose factors are the SVD of `kernel` `[in, out]` (see `svd_factors`).

        `bias` (shape `[out]`, or None for no bias) is kept unchanged.
        """
        p, q, _ = svd_factors(kernel, rank=rank, energy=energy, sigma=sigma,
                              rank_policy=rank_policy)
        layer = cls(units=q.shape[1], rank=p.shape[1], gated=gated, activation=activation,
                    use_bias=bias is not None, gate_config=gate_config, **kwargs)
        layer.build((None, p.shape[0]))
        layer.p_kernel.assign(p)
        layer.q_kernel.assign(q)
        if bias is not None:
            layer.bias.assign(bias)
        return layer

    def build(self, input_shape):
        input_dim = input_shape[-1]
        if input_dim is None:
            raise ValueError("FactorizedDense needs a known last input dimension; "
                             f"got input_shape={input_shape}.")
        self.input_dim = int(input_dim)
        self.p_kernel = self.add_weight(name="p_kernel", shape=(self.input_dim, self.rank),
                                        initializer=self.kernel_initializer)
        self.q_kernel = self.add_weight(name="q_kernel", shape=(self.rank, self.units),
                                        initializer=self.kernel_initializer)
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(name="bias", shape=(self.units,),
                                        initializer=self.bias_initializer)
        if self.gate is not None:
            self.gate.build()
        self.built = True

    def call(self, inputs, training=None):
        hidden = ops.matmul(inputs, self.p_kernel)
        if self.gate is not None:
            hidden = hidden * ops.cast(self.gate.mask(bool(training)), hidden.dtype)
        outputs = ops.matmul(hidden, self.q_kernel)
        if self.bias is not None:
            outputs = outputs + self.bias
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    @property
    def factor_params(self):
        """Parameters of the two factors, `rank * (in + units)`."""
        return self.rank * (self.input_dim + self.units)

    @property
    def dense_params(self):
        """Parameters of the dense kernel this layer stands for, `in * units`."""
        return self.input_dim * self.units

    def merged_kernel(self, training=False):
        """`P diag(z) Q` as one `[in, units]` kernel, with the inference mask by default."""
        p = ops.convert_to_tensor(self.p_kernel)
        if self.gate is not None:
            p = p * ops.cast(self.gate.mask(training), p.dtype)
        return ops.matmul(p, self.q_kernel)

    def get_config(self):
        config = super().get_config()
        config.update({
            "units": self.units,
            "rank": self.rank,
            "gated": self.gated,
            "activation": keras.activations.serialize(self.activation),
            "use_bias": self.use_bias,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            "gate_config": dict(self.gate_config),
        })
        return config
