"""FLOP's Lagrangian: the factorized model (`factorization`), `PruningModel` and its train step
(`pruning_model`), and a family of targets pruned in one run (`family`)."""
