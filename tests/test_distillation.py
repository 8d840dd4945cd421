"""Distiller: a student fine-tuned on its task loss plus distillation from a teacher."""

import keras
import numpy as np
import pytest

import keras_flop
from keras_flop import BertConfig, Distiller, build_bert_classifier
from keras_flop.training.distillation import TEACHER_LOGITS

TINY = dict(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=64, max_position_embeddings=16, hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0)
CE = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _data(n=16, seq=8, seed=0):
    rng = np.random.default_rng(seed)
    x = {"token_ids": rng.integers(1, 50, (n, seq)).astype("int32"),
         "segment_ids": np.zeros((n, seq), "int32"),
         "padding_mask": np.ones((n, seq), bool)}
    return x, (x["token_ids"][:, 1] > 25).astype("int32")


def _models(seed=0, layer_shapes=((2, 32), (4, 0))):
    keras.utils.set_random_seed(seed)
    config = BertConfig(**TINY)
    teacher = build_bert_classifier(config, num_labels=2)
    student = build_bert_classifier(config, num_labels=2, layer_shapes=list(layer_shapes))
    return teacher, student


def _log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def test_the_loss_is_the_task_loss_plus_the_weighted_kl_at_temperature():
    teacher, student = _models()
    x, y = _data()
    distiller = Distiller(student, teacher, distillation_weight=0.7, temperature=3.0)
    distiller.compile("sgd", CE)
    s = np.asarray(student.predict(x, verbose=0), "float64")
    t = np.asarray(teacher.predict(x, verbose=0), "float64")
    task = -np.mean(_log_softmax(s)[np.arange(len(y)), y])
    p = np.exp(_log_softmax(t / 3.0))
    kl = np.mean(np.sum(p * (_log_softmax(t / 3.0) - _log_softmax(s / 3.0)), -1))
    loss = distiller.compute_loss(x=x, y=y, y_pred=distiller(x, training=True), training=True)
    np.testing.assert_allclose(float(loss), task + 0.7 * 9.0 * kl, rtol=1e-5)
    # Evaluation is the student's task loss alone.
    evaluated = distiller.compute_loss(x=x, y=y, y_pred=distiller(x), training=False)
    np.testing.assert_allclose(float(evaluated), task, rtol=1e-5)


def test_evaluate_and_validation_report_the_task_and_distillation_losses():
    """Evaluation's `task_loss` and distillation losses are those of the evaluation data
    (before, both were 0.0): means over the examples, a short last batch weighing its size."""
    from keras_flop.training.distillation import feature_view

    keras.utils.set_random_seed(0)
    config = BertConfig(**TINY, initializer_range=0.2)  # logits of order 1: a KL that shows
    teacher = build_bert_classifier(config, num_labels=2)
    student = build_bert_classifier(config, num_labels=2, layer_shapes=[(2, 32), (4, 0)])
    x, y = _data(n=20)  # batches of 8, 8 and 4
    distiller = Distiller(student, teacher, distillation_weight=0.7, temperature=3.0,
                          hidden_distillation_weight=0.5)
    distiller.compile("sgd", CE)

    def reference():
        s = [np.asarray(a, "float64") for a in feature_view(student).predict(x, verbose=0)]
        t = [np.asarray(a, "float64") for a in feature_view(teacher).predict(x, verbose=0)]
        task = -np.mean(_log_softmax(s[0])[np.arange(len(y)), y])
        p = np.exp(_log_softmax(t[0] / 3.0))
        kl = 9.0 * np.mean(np.sum(p * (_log_softmax(t[0] / 3.0) -
                                       _log_softmax(s[0] / 3.0)), -1))
        hidden = np.mean([np.mean((a - b) ** 2) for a, b in zip(s[1:], t[1:])])
        return {"loss": task, "task_loss": task, "distillation_loss": kl,
                "hidden_distillation_loss": hidden}

    expected = reference()
    results = distiller.evaluate(x, y, batch_size=8, verbose=0, return_dict=True)
    assert set(results) == set(expected)
    for key, value in expected.items():
        assert results[key] == pytest.approx(value, rel=1e-5), key
    # Validation in fit: the same figures, of the weights at the epoch's end.
    history = distiller.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0,
                            validation_data=(x, y)).history
    for key, value in reference().items():
        assert history[f"val_{key}"][-1] == pytest.approx(value, rel=1e-5), key
    # Without the teacher, evaluation leaves the distillation loss out unless the
    # evaluation batches carry the teacher's outputs.
    logits = np.asarray(teacher.predict(x, verbose=0))
    fed = Distiller(student, None, distillation_weight=1.0, temperature=3.0)
    fed.compile("sgd", CE)
    assert set(fed.evaluate(x, y, verbose=0, return_dict=True)) == {"loss", "task_loss"}
    results = fed.evaluate(dict(x, teacher_logits=logits), y, batch_size=8, verbose=0,
                           return_dict=True)
    assert results["distillation_loss"] == pytest.approx(reference()["distillation_loss"],
                                                         rel=1e-5)


def test_fed_teacher_logits_train_as_the_teacher_does_and_the_teacher_is_left_alone():
    x, y = _data()
    weights = []
    for fed in (False, True):
        teacher, student = _models()
        before = [np.array(w) for w in teacher.get_weights()]
        inputs = dict(x)
        if fed:
            inputs[TEACHER_LOGITS] = np.asarray(teacher.predict(x, verbose=0))
        distiller = Distiller(student, None if fed else teacher, distillation_weight=1.0)
        # Only the student trains (and is checkpointed): the teacher is not tracked.
        assert len(distiller.trainable_weights) == len(student.trainable_weights)
        distiller.compile(keras.optimizers.SGD(0.1), CE)
        history = distiller.fit(inputs, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
        assert set(history.history) == {"loss", "task_loss", "distillation_loss"}
        assert history.history["loss"][-1] > history.history["task_loss"][-1]
        for b, a in zip(before, teacher.get_weights()):
            np.testing.assert_array_equal(b, a)
        weights.append(student.get_weights())
    for a, b in zip(*weights):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_hidden_state_distillation_is_zero_for_a_copy_and_trains_the_student():
    teacher, _ = _models()
    copy = build_bert_classifier(BertConfig(**TINY), num_labels=2)
    copy.set_weights(teacher.get_weights())
    x, y = _data()
    distiller = Distiller(copy, teacher, distillation_weight=1.0, hidden_distillation_weight=2.0)
    distiller.compile("sgd", CE)
    task = float(CE(y, copy.predict(x, verbose=0)))
    loss = distiller.compute_loss(x=x, y=y, y_pred=distiller(x, training=True), training=True)
    np.testing.assert_allclose(float(loss), task, rtol=1e-5)

    teacher, student = _models()
    distiller = Distiller(student, teacher, distillation_weight=0.0, hidden_distillation_weight=1.0)
    distiller.compile(keras.optimizers.Adam(1e-2), CE)
    history = distiller.fit(x, y, epochs=3, verbose=0)
    hidden = history.history["hidden_distillation_loss"]
    assert hidden[0] > 0 and hidden[-1] < hidden[0]
    assert "distillation_loss" not in history.history


def test_hidden_states_of_an_emptied_layer_are_left_out():
    """A layer the compact model emptied passes its input on: its state is not matched to
    the teacher's layer again; the others are, layer i to layer i."""
    from keras_flop.training.distillation import distilled_layers, feature_view

    teacher, student = _models(layer_shapes=((0, 0), (2, 16)))
    assert distilled_layers(student) == [1] and distilled_layers(teacher) == [0, 1]
    x, y = _data()
    distiller = Distiller(student, teacher, distillation_weight=0.0, hidden_distillation_weight=1.0)
    distiller.compile("sgd", CE)
    s = [np.asarray(a, "float64") for a in feature_view(student).predict(x, verbose=0)]
    t = [np.asarray(a, "float64") for a in feature_view(teacher).predict(x, verbose=0)]
    task = -np.mean(_log_softmax(s[0])[np.arange(len(y)), y])
    hidden = np.mean((s[2] - t[2]) ** 2)  # layer 1 only: [logits, layer 0, layer 1]
    loss = distiller.compute_loss(x=x, y=y, y_pred=distiller(x, training=True), training=True)
    np.testing.assert_allclose(float(loss), task + hidden, rtol=1e-5)
    _, emptied = _models(layer_shapes=((0, 0), (0, 0)))
    with pytest.warns(UserWarning, match="nothing to match"):
        distiller = Distiller(emptied, teacher, hidden_distillation_weight=1.0)
    distiller.compile("sgd", CE)
    assert "hidden_distillation_loss" not in distiller.fit(x, y, verbose=0).history


# float32 under XLA in the second tier: mixed precision here covers XLA and the loss scale
@pytest.mark.process  # XLA compiles the whole step: the fast suite keeps test_structures' one
@pytest.mark.parametrize("policy", ["float32", "mixed_float16"])
def test_distiller_trains_under_xla(policy):
    keras.mixed_precision.set_global_policy(policy)
    try:
        teacher, student = _models()
        x, y = _data()
        distiller = Distiller(student, teacher, distillation_weight=1.0,
                              hidden_distillation_weight=1.0)
        distiller.compile(keras.optimizers.Adam(1e-3), CE, jit_compile=True)
        history = distiller.fit(x, y, epochs=2, verbose=0, validation_data=(x, y))
        assert all(np.isfinite(v[-1]) for v in history.history.values())
        assert history.history["val_task_loss"][-1] > 0
        assert history.history["val_hidden_distillation_loss"][-1] > 0
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_distiller_survives_a_keras_round_trip(tmp_path):
    teacher, student = _models()
    x, _ = _data()
    distiller = Distiller(student, teacher, distillation_weight=0.5, temperature=4.0)
    path = str(tmp_path / "distiller.keras")
    distiller.save(path)
    loaded = keras.saving.load_model(path, compile=False)
    assert isinstance(loaded, Distiller)
    assert (loaded.distillation_weight, loaded.temperature) == (0.5, 4.0)
    np.testing.assert_allclose(np.asarray(loaded.predict(x, verbose=0)),
                               np.asarray(student.predict(x, verbose=0)), atol=1e-5)


def test_bad_distiller_arguments_say_what_to_do():
    teacher, student = _models()
    with pytest.raises(ValueError, match="must be >= 0"):
        Distiller(student, teacher, distillation_weight=-1.0)
    with pytest.raises(ValueError, match="temperature"):
        Distiller(student, teacher, temperature=0.0)
    with pytest.raises(ValueError, match="needs a `teacher`"):
        Distiller(student, None, hidden_distillation_weight=1.0)
    regressor = build_bert_classifier(BertConfig(**TINY), num_labels=1)
    with pytest.raises(ValueError, match="distill between models of one task"):
        Distiller(student, regressor)
    distiller = Distiller(student, None, distillation_weight=1.0)
    distiller.compile("sgd", CE)
    x, y = _data()
    with pytest.raises(ValueError, match=TEACHER_LOGITS):
        distiller.fit(x, y, epochs=1, verbose=0)
    assert keras_flop.Distiller is Distiller
