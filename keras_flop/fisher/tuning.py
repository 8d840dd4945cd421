"""Least-squares mask tuning (step 4 of `keras_flop.fisher.post_training`).

Layer by layer, the kept heads' and units' outputs are rescaled by linear least squares so
that each pruned sublayer's output (with its residual, before the LayerNorm) on the pruned
model's inputs matches the dense sublayer's on the dense model's. The hidden states, the
attention contexts, the intermediate activations and the masked blocks all come from the
model's own forward pass (`BertClassifier.forward_view()`); this module only builds and solves
the normal equations.
"""

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from keras_flop.fisher.inputs import dense_network
from keras_flop.gates.structure import encoder_layer_parts

# Mask tuning leaves a layer's scales at 1 when the least-squares solution is this large: an
# ill-conditioned system, not a better fit (as the authors' implementation does).
MAX_SCALE = 10.0


def solve_scales(ata, atb):
    """The least-squares scales from the normal equations `AᵀA s = Aᵀb` (float64;
    `numpy.linalg.lstsq` handles a singular system); ones when the solution is not finite or
    exceeds `MAX_SCALE` in magnitude.

    Example:
    >>> import numpy as np
    >>> solve_scales(np.array([[2.0, 0.0], [0.0, 4.0]]), np.array([2.0, 2.0])).tolist()
    [1.0, 0.5]
    >>> solve_scales(np.array([[1e-3]]), np.array([1.0])).tolist()  # 1000: ill-conditioned
    [1.0]
    """
    scales = np.linalg.lstsq(np.asarray(ata, np.float64), np.asarray(atb, np.float64),
                             rcond=None)[0]
    if not np.all(np.isfinite(scales)) or np.max(np.abs(scales), initial=0.0) > MAX_SCALE:
        return np.ones_like(scales)
    return scales


def _left_to_add(out, x_student, target):
    """What the kept units must add through the projection `out` for the block's residual sum
    on `x_student` to reach `target`: the target less the input and `out`'s bias."""
    return target - x_student - (ops.convert_to_tensor(out.bias) if out.use_bias else 0.0)


class _Tuner:
    """Normal equations of the least-squares mask tuning of one sublayer, from the model's
    own forward pass (`forward`, a `BertForward`) and its output projections' kernels."""

    def __init__(self, network):
        self.forward = network.forward_view()
        self.parts = encoder_layer_parts(network)
        self.shapes = network.layer_shapes
        self.head_size = network.bert_config.head_size

    @staticmethod
    def _token_weights(padding_mask, dtype):
        return ops.cast(padding_mask, dtype)[:, :, None]

    def attention_system(self, index, x_student, target, padding_mask, kept):
        """`(AᵀA, Aᵀb)` over the real tokens: column `j` of `A` is kept head `j`'s output
        through the attention output kernel; `b` is what the kept heads must add to
        `x_student + bias` to reach `target`."""
        out = self.parts[index].dense["attention_output"]
        heads = self.shapes[index][0]
        context = self.forward.attention_context(index, x_student, padding_mask)
        batch, seq = ops.shape(context)[0], ops.shape(context)[1]
        context = ops.take(ops.reshape(context, (batch, seq, heads, self.head_size)), kept,
                           axis=2)
        kernel = ops.take(ops.reshape(ops.convert_to_tensor(out.kernel),
                                      (heads, self.head_size, -1)), kept, axis=0)
        columns = ops.einsum("bshd,hdo->bsho", context, kernel)
        residual = _left_to_add(out, x_student, target)
        weights = self._token_weights(padding_mask, columns.dtype)
        weighted = columns * weights[..., None]
        return (ops.einsum("bsho,bsgo->hg", weighted, columns),
                ops.einsum("bsho,bso->h", weighted, residual))

    def ffn_system(self, index, x_student, target, padding_mask, kept):
        """As `attention_system`, one column per kept FFN unit."""
        out = self.parts[index].dense["output"]
        hidden = ops.take(self.forward.intermediate(index, x_student), kept, axis=2)
        kernel = ops.take(ops.convert_to_tensor(out.kernel), kept, axis=0)
        residual = _left_to_add(out, x_student, target)
        hidden = hidden * self._token_weights(padding_mask, hidden.dtype)
        flat = ops.reshape(hidden, (-1, ops.shape(hidden)[-1]))
        ata = ops.matmul(ops.transpose(flat), flat) * ops.matmul(kernel, ops.transpose(kernel))
        atb = ops.sum(hidden * ops.einsum("bso,ko->bsk", residual, kernel), axis=(0, 1))
        return ata, atb


def tune_masks(model, batches, head_keep, unit_keep, verbose=0):
    """Least-squares scales of the kept heads and units, layer by layer (module docstring).

    Returns `(head_scales, unit_scales)`: per layer float arrays, 0 where not kept.
    """
    network = dense_network(model)
    for which, keep, kind in (("head_keep", head_keep, 0), ("unit_keep", unit_keep, 1)):
        sizes = [shape[kind] for shape in network.layer_shapes]
        if [np.size(k) for k in keep] != sizes:
            raise ValueError(f"`{which}` needs one bool array per encoder layer, of "
                             f"{sizes} units; got {[np.size(k) for k in keep]} (pass the "
                             "masks of the search, e.g. `search_masks`).")
    tuner = _Tuner(network)
    forward = tuner.forward
    features = [f for f, _ in batches]
    masks = [ops.cast(f["padding_mask"], "bool") for f in features]
    teacher = [forward.embed(f) for f in features]
    student = list(teacher)
    scales_of = {"attention": [], "ffn": []}
    num_layers = len(network.layer_shapes)
    # Eager: a few large ops per batch, where tracing a function per layer and length
    # bucket would cost more than it saves.
    progress = keras.utils.Progbar(num_layers, unit_name="layer",
                                   verbose=verbose) if verbose else None
    for index in range(num_layers):
        for kind, keep in (("attention", head_keep[index]), ("ffn", unit_keep[index])):
            if kind == "attention":
                def block(x, padding_mask, mask=None):
                    return forward.attention(index, x, padding_mask, mask)
                system = tuner.attention_system
            else:
                def block(x, padding_mask, mask=None):
                    return forward.ffn(index, x, mask)
                system = tuner.ffn_system
            # The dense block on the dense model's states: the targets (the sums before the
            # LayerNorm) and the next states.
            blocks = [block(t, m) for t, m in zip(teacher, masks)]
            targets, teacher = [b.residual for b in blocks], [b.output for b in blocks]
            del blocks
            scales = keep.astype("float32")
            kept = np.flatnonzero(keep)
            if len(kept):
                ata, atb = 0.0, 0.0
                for s, t, m in zip(student, targets, masks):
                    a, b = system(index, s, t, m, tf.constant(kept))
                    ata, atb = ata + np.asarray(a, np.float64), atb + np.asarray(b, np.float64)
                scales[kept] = solve_scales(ata, atb)
            scales_of[kind].append(scales)
            student = [block(s, m, tf.constant(scales)).output for s, m in zip(student, masks)]
        if progress:
            progress.update(index + 1)
    return scales_of["attention"], scales_of["ffn"]
