"""Retraining-free structured pruning (Kwon et al. 2022), one module a concept.

- `post_training`: the entry points, `prune_post_training` and `post_training_masks`.
- `inputs`: the fine-tuned dense model and the sample of the task the method takes.
- `scores`: Fisher scores of the head and FFN-unit masks.
- `search`: the mask search under a parameter or latency budget, and the rearrangement.
- `tuning`: least-squares tuning of the kept units' scales.
- `masks`: `PostTrainingMasks`, the gated model made from them, the Lagrangian start.
"""
