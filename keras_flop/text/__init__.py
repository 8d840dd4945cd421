"""Text to model inputs: `BertTokenizer` (the original BERT rules as TF ops) and
`BertPreprocessor` (packing; used in training and embedded in exports)."""
