"""`HardConcreteMask`: the L0 gate of FLOP (Louizos et al. 2018's hard-concrete distribution)."""

import math
import zlib

import keras
from keras import ops

_INITS = ("constant", "paper")
_EVAL_MASKS = ("deterministic", "topk")


def derive_seed(seed, name):
    """A seed of its own for the generator named `name`, from a shared integer `seed`.

    Gates configured with one seed would otherwise draw the same noise (and the same `paper`
    init) whenever they have the same size. CRC-32 is stable across processes, unlike
    `hash`, and for a given name distinct seeds (mod 2**32) give distinct results.
    """
    return zlib.crc32(name.encode("utf-8"), seed % 2 ** 32)


@keras.saving.register_keras_serializable(package="keras_flop")
class HardConcreteMask(keras.layers.Layer):
    """A learned hard-concrete gate `z ∈ [0, 1]` for each of `size` units.

    In training every call draws one sample per unit (shared across the batch):
    `u ~ U(ε, 1-ε)`, `s = σ((log u - log(1-u) + logα) / β)`, `z = clip(s (r-l) + l, 0, 1)`.
    In inference the mask is deterministic, by one of two rules:

    - `eval_mask="deterministic"` (the original TF1 rule): `ẑ = clip(σ(logα)(r-l) + l, 0, 1)`,
      the median of `z` at `β = 1`. It keeps the units with `P(z ≠ 0) > 0.5`.
    - `eval_mask="topk"` (the authors' PyTorch count): the `round(size - l0_norm())` units of
      smallest `σ(0.8 logα / β)` are zeroed, so that `round(l0_norm())` units are kept; but a
      unit with `ẑ = 1` is never zeroed (rounding many tiny `P(z = 0)` would otherwise close
      open gates of a large mask, e.g. 2 of 3072 at the initial `logα = 5`). The kept units
      carry `max(ẑ, σ(0.8 logα / β))`:
      the authors keep `σ(0.8 logα / β)` (their approximation of `E[z]`), 0.982 for an open
      gate, so the factorized model would not compute the dense one at step 0; `ẑ` alone
      is 0 for `logα <= -ln 11`, which would drop kept units and give back the threshold
      rule's count. The maximum is 1 for an open gate, `ẑ` for `logα >= 0` (at `β = 1`),
      and the authors' nonzero value below, so the count holds.

    The gate math and `log_alpha` always stay in float32, also under a mixed-precision policy.

    Calling the layer multiplies the last axis of its input by the mask, each gate covering
    `unit_size` consecutive features (an attention head of `head_size` features, a whole
    sublayer output). `mask(training)` returns the mask itself and `l0_norm()` the expected
    number of non-zero gates.

    Args:
        size: number of gated units (positive int).
        init: `"constant"` (every `log_alpha` is `init_log_alpha`; the default 5.0 opens every
            gate) or `"paper"` (`log_alpha ~ N(log(1-m) - log(m), 0.01)`, `m = drop_rate`).
        init_log_alpha: initial `log_alpha` for `init="constant"`.
        drop_rate: the initial drop rate `m` in (0, 1) for `init="paper"`.
        temperature: `β > 0`.
        limit_l: left stretch limit `l < 0`.
        limit_r: right stretch limit `r > 1`.
        epsilon: clamps the uniform noise to `[ε, 1-ε]`, `0 < ε < 0.5`.
        eval_mask: `"deterministic"` or `"topk"`.
        seed: an integer seed of the sampling noise (and of the `"paper"` init), or None to
            draw one from Keras' global random state (`keras.utils.set_random_seed`). The
            gate's own stream is derived from `seed` and its `name`, so gates sharing a
            configuration do not draw the same noise.
        unit_size: features per gate along the input's last axis (positive int); the input's
            last axis must be `size * unit_size`.

    Example:
    >>> import numpy as np
    >>> gate = HardConcreteMask(4)
    >>> x = np.ones((2, 4), "float32")
    >>> tuple(gate(x, training=False).shape)
    (2, 4)
    >>> round(float(gate.l0_norm()), 2)  # all gates open at the default init
    4.0
    """

    def __init__(self, size, init="constant", init_log_alpha=5.0, drop_rate=0.5,
                 temperature=1.0, limit_l=-0.1, limit_r=1.1, epsilon=1e-6,
                 eval_mask="deterministic", seed=None, unit_size=1, **kwargs):
        # The gate is float32 whatever the global policy: sparsity math needs the precision.
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"`size` must be a positive integer; got size={size!r}.")
        if isinstance(unit_size, bool) or not isinstance(unit_size, int) or unit_size < 1:
            raise ValueError(f"`unit_size` must be a positive integer; got "
                             f"unit_size={unit_size!r}.")
        if init not in _INITS:
            raise ValueError(f"`init` must be one of {_INITS}; got init={init!r}.")
        if not 0.0 < drop_rate < 1.0:
            raise ValueError(f"`drop_rate` must be in (0, 1); got drop_rate={drop_rate}.")
        if not temperature > 0.0:
            raise ValueError(f"`temperature` must be > 0; got temperature={temperature}.")
        if not limit_l < 0.0:
            raise ValueError(f"`limit_l` must be < 0; got limit_l={limit_l}.")
        if not limit_r > 1.0:
            raise ValueError(f"`limit_r` must be > 1; got limit_r={limit_r}.")
        if not 0.0 < epsilon < 0.5:
            raise ValueError(f"`epsilon` must be in (0, 0.5); got epsilon={epsilon}.")
        if eval_mask not in _EVAL_MASKS:
            raise ValueError(
                f"`eval_mask` must be one of {_EVAL_MASKS}; got eval_mask={eval_mask!r}.")
        self.size = size
        self.init = init
        self.init_log_alpha = float(init_log_alpha)
        self.drop_rate = float(drop_rate)
        self.temperature = float(temperature)
        self.limit_l = float(limit_l)
        self.limit_r = float(limit_r)
        self.epsilon = float(epsilon)
        self.eval_mask = eval_mask
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"`seed` must be an integer or None; got seed={seed!r}.")
        self.seed = seed
        self.unit_size = unit_size
        self._own_seed = None if seed is None else derive_seed(seed, self.name)
        self.seed_generator = keras.random.SeedGenerator(self._own_seed)
        # Keep the caller's dtype on the gated tensor; only the gate itself is float32.
        self.autocast = False

    def build(self, input_shape=None):
        width = None if input_shape is None else input_shape[-1]
        if width is not None and width != self.size * self.unit_size:
            raise ValueError(
                f"HardConcreteMask {self.name!r} gates {self.size} units of {self.unit_size} "
                f"features: its input's last axis must be {self.size * self.unit_size}; got "
                f"{width}.")
        if self.init == "constant":
            initializer = keras.initializers.Constant(self.init_log_alpha)
        else:
            mean = math.log(1.0 - self.drop_rate) - math.log(self.drop_rate)
            initializer = keras.initializers.RandomNormal(mean, 0.01, seed=self._own_seed)
        self.log_alpha = self.add_weight(
            name="log_alpha", shape=(self.size,), initializer=initializer, dtype="float32",
            # Not cast to float16 inside a mixed-precision parent layer's call.
            autocast=False)
        self.built = True

    def _stretch(self, s):
        return ops.clip(s * (self.limit_r - self.limit_l) + self.limit_l, 0.0, 1.0)

    def sample(self):
        """One training sample of the gates, `[size]`, float32."""
        u = keras.random.uniform((self.size,), minval=self.epsilon, maxval=1.0 - self.epsilon,
                                 dtype="float32", seed=self.seed_generator)
        logits = (ops.log(u) - ops.log(1.0 - u) + self.log_alpha) / self.temperature
        return self._stretch(ops.sigmoid(logits))

    def prob_nonzero(self):
        """`P(z_j != 0) = σ(logα_j - β log(-l / r))` per unit, `[size]`, float32."""
        shift = self.temperature * math.log(-self.limit_l / self.limit_r)
        return ops.sigmoid(ops.convert_to_tensor(self.log_alpha) - shift)

    def l0_norm(self):
        """Expected number of non-zero gates (differentiable in `log_alpha`)."""
        return ops.sum(self.prob_nonzero())

    def deterministic_mask(self):
        """The inference mask of `eval_mask`'s rule (class docstring), `[size]`, float32."""
        log_alpha = ops.convert_to_tensor(self.log_alpha)
        z_hat = self._stretch(ops.sigmoid(log_alpha))
        if self.eval_mask == "deterministic":
            return z_hat
        soft = ops.sigmoid(0.8 * log_alpha / self.temperature)
        num_zeros = ops.minimum(ops.round(self.size - self.l0_norm()),
                                ops.sum(ops.cast(z_hat < 1.0, "float32")))
        # Rank of every unit by soft value (ties by index), shape-static so XLA compiles it.
        # Units with z_hat = 1 have the largest soft values: the cap keeps them all.
        ranks = ops.argsort(ops.argsort(soft))
        return ops.where(ops.cast(ranks, "float32") < num_zeros, 0.0,
                         ops.maximum(z_hat, soft))

    def mask(self, training=False):
        """The gate values: a fresh sample when `training`, else the inference mask."""
        if not self.built:
            self.build()
        return self.sample() if training else self.deterministic_mask()

    def call(self, inputs, training=None):
        z = self.mask(bool(training))
        if self.unit_size > 1:
            z = ops.repeat(z, self.unit_size)
        return inputs * ops.cast(z, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({
            "size": self.size,
            "init": self.init,
            "init_log_alpha": self.init_log_alpha,
            "drop_rate": self.drop_rate,
            "temperature": self.temperature,
            "limit_l": self.limit_l,
            "limit_r": self.limit_r,
            "epsilon": self.epsilon,
            "eval_mask": self.eval_mask,
            "seed": self.seed,
            "unit_size": self.unit_size,
        })
        return config
