"""Models in: TF1 `bert_model.ckpt` (`tf1`), Hugging Face directories (`hugging_face`), keras-hub
models (`keras_hub`), all into the library's `BertClassifier`."""
