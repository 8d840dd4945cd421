"""Which of a pruning model's variables each optimizer trains, and which are frozen.

`VariableGroups` is a mixin of `PruningModel`: it reads the model's `network`, `teacher`,
`lambda_1` and `lambda_2`.
"""

from keras_flop.gates.structure import all_gates
from keras_flop.layers.factorized_dense import FactorizedDense


class VariableGroups:
    """The pruning model's variables in the three optimizers' groups: `model_variables`
    (`optimizer`), `gate_variables` (`alpha_optimizer`), `lambda_variables`
    (`lambda_optimizer`); a teacher's variables in none of them.

    Example:
    >>> import keras_flop
    >>> config = keras_flop.BertConfig(vocab_size=30, hidden_size=8, num_hidden_layers=1,
    ...                                num_attention_heads=2, intermediate_size=16,
    ...                                max_position_embeddings=16)
    >>> dense = keras_flop.build_bert_classifier(config)
    >>> pruning_model = keras_flop.factorize(dense, teacher=dense, distillation_weight=1.0)
    >>> len(pruning_model.gate_variables), len(pruning_model.lambda_variables)  # 6 layers
    (6, 2)
    >>> teacher = {id(v) for v in dense.variables}
    >>> any(id(v) in teacher for v in pruning_model.trainable_variables)  # the teacher: frozen
    False
    >>> dense.trainable  # without being changed
    True
    """

    # The teacher is frozen by leaving its weights out of the trainable lists, not by setting
    # `teacher.trainable`: that would change the caller's model (and the layers it shares).
    def _split(self, variables):
        """`(trainable, non_trainable)` of `variables`, the teacher's among the latter."""
        teacher = getattr(self, "teacher", None)
        frozen = set() if teacher is None else {id(v) for v in teacher.variables}
        trains = [self.trainable and v.trainable and id(v) not in frozen for v in variables]
        return ([v for v, t in zip(variables, trains) if t],
                [v for v, t in zip(variables, trains) if not t])

    @property
    def trainable_weights(self):
        return self._split(self.weights)[0]

    @property
    def non_trainable_weights(self):
        return self._split(self.weights)[1]

    @property
    def trainable_variables(self):
        return self._split(self.variables)[0]

    @property
    def non_trainable_variables(self):
        return self._split(self.variables)[1]

    @property
    def gate_variables(self):
        return [gate.log_alpha for gate in all_gates(self.network)]

    @property
    def lambda_variables(self):
        return [self.lambda_1, self.lambda_2]

    @property
    def model_variables(self):
        gates = {id(v) for v in self.gate_variables}
        return [v for v in self.network.trainable_variables if id(v) not in gates]

    def _l2_kernels(self):
        kernels = []
        for layer in self.network.layers:
            if isinstance(layer, FactorizedDense):
                kernels += [layer.p_kernel, layer.q_kernel]
        pooler = next((layer for layer in self.network.layers if layer.name == "pooler"), None)
        if pooler is not None:
            kernels.append(pooler.kernel)
        return kernels

    @property
    def mixed_precision(self):
        return any(layer.dtype_policy.name == "mixed_float16" for layer in self.network.layers)
