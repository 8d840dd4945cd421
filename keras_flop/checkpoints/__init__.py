"""Models in: TF1 `bert_model.ckpt` (`tf1`), Hugging Face directories (`hugging_face`, the
model types it reads in `hugging_face_families`), keras-hub models and presets (`keras_hub`),
all into the library's `BertClassifier`; `detect` tells the three kinds of checkpoint apart by
their files (`load_checkpoint`), and `keras_file` loads `.keras` files with errors that say
what is wrong with them."""
