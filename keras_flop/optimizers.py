"""Learning-rate schedules and the three optimizers of FLOP (`algorithm.md` §4)."""

import keras
from keras import ops

LearningRateSchedule = keras.optimizers.schedules.LearningRateSchedule


@keras.saving.register_keras_serializable(package="keras_flop")
class WarmupLinearDecay(LearningRateSchedule):
    """Linear warmup from 0 to `peak` over `warmup_steps`, then linear decay to 0 at
    `total_steps` (BERT's schedule).

    Example:
    >>> schedule = WarmupLinearDecay(1e-4, total_steps=100, warmup_steps=10)
    >>> [round(float(schedule(s)), 6) for s in (0, 5, 10, 55, 100)]
    [0.0, 5e-05, 0.0001, 5e-05, 0.0]
    """

    def __init__(self, peak, total_steps, warmup_steps=0):
        if peak < 0:
            raise ValueError(f"The learning rate must be >= 0; got {peak}.")
        if total_steps < 1 or not 0 <= warmup_steps <= total_steps:
            raise ValueError(f"Need total_steps >= 1 and 0 <= warmup_steps <= total_steps; got "
                             f"total_steps={total_steps}, warmup_steps={warmup_steps}.")
        self.peak = float(peak)
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        warmup = step / max(self.warmup_steps, 1)
        decay = (self.total_steps - step) / max(self.total_steps - self.warmup_steps, 1)
        fraction = ops.where(step < self.warmup_steps, warmup, decay)
        return self.peak * ops.clip(fraction, 0.0, 1.0)

    def get_config(self):
        return {"peak": self.peak, "total_steps": self.total_steps,
                "warmup_steps": self.warmup_steps}


@keras.saving.register_keras_serializable(package="keras_flop")
class NoamSchedule(LearningRateSchedule):
    """`scale · min((step+1) / w^1.5, 1 / sqrt(step+1)) / sqrt(d)`: the gates' and λ's rate.

    The original FLOP implementation used `step` (a rate of 0 at step 0); `step + 1` is used
    here so that the first step already learns.

    Example:
    >>> schedule = NoamSchedule(10.0, warmup_steps=200)
    >>> round(float(schedule(199)) * 1000, 3)   # the peak, at the end of the warmup
    25.516
    """

    def __init__(self, scale, warmup_steps=200, model_dim=768):
        if scale < 0:
            raise ValueError(f"The learning rate scale must be >= 0; got {scale}.")
        if warmup_steps < 1 or model_dim < 1:
            raise ValueError(f"`warmup_steps` and `model_dim` must be >= 1; got "
                             f"warmup_steps={warmup_steps}, model_dim={model_dim}.")
        self.scale = float(scale)
        self.warmup_steps = int(warmup_steps)
        self.model_dim = int(model_dim)

    def __call__(self, step):
        step = ops.cast(step, "float32") + 1.0
        rate = ops.minimum(step / self.warmup_steps ** 1.5, ops.rsqrt(step))
        return self.scale * rate / self.model_dim ** 0.5

    def get_config(self):
        return {"scale": self.scale, "warmup_steps": self.warmup_steps,
                "model_dim": self.model_dim}


def model_optimizer(learning_rate, total_steps, warmup_fraction=0.1, weight_decay=0.01,
                    clipnorm=1.0):
    """AdamW for the model weights: warmup + linear decay, no decay on LayerNorm and biases,
    global-norm clipping. `learning_rate=0` freezes the model in `PruningModel`."""
    if learning_rate < 0:
        raise ValueError(f"The learning rate must be >= 0; got {learning_rate}.")
    if not 0.0 <= warmup_fraction <= 1.0:
        raise ValueError(f"`warmup_fraction` must be in [0, 1]; got {warmup_fraction}.")
    if learning_rate == 0:
        rate = 0.0
    else:
        rate = WarmupLinearDecay(learning_rate, total_steps,
                                 int(round(warmup_fraction * total_steps)))
    optimizer = keras.optimizers.AdamW(learning_rate=rate, weight_decay=weight_decay,
                                       beta_1=0.9, beta_2=0.999, epsilon=1e-6,
                                       global_clipnorm=clipnorm, name="model_optimizer")
    optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    return optimizer


def gate_optimizer(learning_rate=5.0, warmup_steps=200, name="alpha_optimizer"):
    """Adam for the gates' `log_alpha` with the Noam schedule (`alpha_lr · noam(step)`)."""
    return keras.optimizers.Adam(learning_rate=NoamSchedule(learning_rate, warmup_steps),
                                 epsilon=1e-8, name=name)


def lambda_optimizer(learning_rate=10.0, warmup_steps=200):
    """Adam for the Lagrange multipliers (`PruningModel` negates their gradient: ascent)."""
    return gate_optimizer(learning_rate, warmup_steps, name="lambda_optimizer")


def is_frozen(optimizer):
    """Whether `optimizer` is None or has a constant learning rate of 0 (the model is then
    frozen). Takes what `keras.Model.compile` takes: an instance, a name, a config dict."""
    if optimizer is None:
        return True
    optimizer = keras.optimizers.get(optimizer)
    rate = getattr(optimizer, "_learning_rate", None)
    if isinstance(rate, LearningRateSchedule) or callable(rate):
        return False
    return float(ops.convert_to_numpy(optimizer.learning_rate)) == 0.0
