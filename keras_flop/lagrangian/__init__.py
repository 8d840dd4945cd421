"""FLOP's Lagrangian: SVD factors (`svd`, `factorization`), `PruningModel` and its train step
(`pruning_model`), and a family of targets pruned in one run (`family`)."""
