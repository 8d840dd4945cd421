"""Retraining-free structured pruning (Fisher scores, mask search, least-squares tuning)."""
