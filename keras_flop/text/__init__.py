"""Text to model inputs: `BertTokenizer` (`tokenizer`: the original BERT rules as TF ops),
`SubwordTokenizer` (`subword`: RoBERTa's byte-level BPE and XLM-R's SentencePiece, and which
tokenizer a file is) and `BertPreprocessor` (`preprocessor`: each family's packing; used in
training and embedded in exports)."""
