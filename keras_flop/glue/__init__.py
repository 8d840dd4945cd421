"""GLUE: the nine tasks, their readers and metrics, and their `tf.data` pipelines."""

from keras_flop.glue.metrics import compute_metrics
from keras_flop.glue.preprocessing import (make_dataset, make_training_stream,
                                           tokenize_examples, write_test_predictions)
from keras_flop.glue.readers import (Example, GlueDataError, available_splits, load_tfds,
                                     read_split)
from keras_flop.glue.tasks import TASKS, GlueTask, get_task

__all__ = ["Example", "GlueDataError", "GlueTask", "TASKS", "available_splits",
           "compute_metrics", "get_task", "load_tfds", "make_dataset", "make_training_stream",
           "read_split", "tokenize_examples", "write_test_predictions"]
