"""The gates and what they cost: where they are (`structure`), what each controls (`cost`, the one
account), sparsity and mask calibration (`sparsity`), folding them into a smaller dense model
(`compaction`) and its parameter report (`report`)."""
