"""Learning-rate schedules and the three optimizers of FLOP (`algorithm.md` §4)."""

import keras
from keras import ops

from keras_flop.compat import learning_rate_of

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


# Peak learning rate × pruning steps of the run-sized schedules. Adam moves a variable by about
# its learning rate per step, and these rates add up to half their peak × steps over a run:
# about 40 in `log α` for the gates (an open gate starts at 5 and reaches p(z ≠ 0) = 1/2 at
# -2.4; 40 measured less lag behind the rising target than 20) and about 100 for λ (enough for
# the constraint to outweigh the task on the real MiniLM encoder early in the run; twice that
# reached the target a few steps sooner but chose a worse mask). Measurements:
# docs/benchmarks.md, "Reaching the target".
GATE_RATE_STEPS = 80.0
LAMBDA_RATE_STEPS = 200.0
SIZED_WARMUP_FRACTION = 0.05


def sized_schedule(total_steps, rate_steps, peak=None):
    """The schedule of `sized_gate_optimizer` and `sized_lambda_optimizer`: a linear warmup
    over the first 5 % of `total_steps` to `peak` (default `rate_steps / total_steps`), then
    a linear decay to 0 at `total_steps`.

    >>> schedule = sized_schedule(100, GATE_RATE_STEPS)
    >>> (schedule.peak, schedule.total_steps, schedule.warmup_steps)
    (0.8, 100, 5)
    """
    if isinstance(total_steps, bool) or int(total_steps) < 1:
        raise ValueError(f"`total_steps` must be an integer >= 1; got {total_steps}.")
    total_steps = int(total_steps)
    peak = rate_steps / total_steps if peak is None else peak
    return WarmupLinearDecay(peak, total_steps,
                             max(1, int(round(SIZED_WARMUP_FRACTION * total_steps))))


def _sized_optimizer(total_steps, peak, rate_steps, name):
    return keras.optimizers.Adam(learning_rate=sized_schedule(total_steps, rate_steps, peak),
                                 epsilon=1e-8, name=name)


def sized_gate_optimizer(total_steps, peak=None):
    """Adam for the gates' `log_alpha` with a schedule sized to a run of `total_steps`: a
    linear warmup over its first 5 % to `peak` (default `80 / total_steps`), then a linear
    decay to 0 at its end, so that the mask settles before the run ends.

    Example:
    >>> from keras_flop.compat import learning_rate_of
    >>> schedule = learning_rate_of(sized_gate_optimizer(200))   # peak 80 / 200 at step 10
    >>> [round(float(schedule(step)), 3) for step in (0, 10, 105, 200)]
    [0.0, 0.4, 0.2, 0.0]
    """
    return _sized_optimizer(total_steps, peak, GATE_RATE_STEPS, "alpha_optimizer")


def sized_lambda_optimizer(total_steps, peak=None):
    """Adam for λ (ascent) with the schedule of `sized_gate_optimizer`, peak default
    `200 / total_steps`."""
    return _sized_optimizer(total_steps, peak, LAMBDA_RATE_STEPS, "lambda_optimizer")


def is_frozen(optimizer):
    """Whether `optimizer` is None or has a constant learning rate of 0 (the model is then
    frozen). Takes what `keras.Model.compile` takes: an instance, a name, a config dict."""
    if optimizer is None:
        return True
    optimizer = keras.optimizers.get(optimizer)
    rate = learning_rate_of(optimizer)
    if isinstance(rate, LearningRateSchedule) or callable(rate):
        return False
    return float(ops.convert_to_numpy(optimizer.learning_rate)) == 0.0
