"""Low-rank factors of a dense kernel by SVD (`algorithm.md` §1)."""

import numpy as np

SIGMA_MODES = ("full", "sqrt")
RANK_POLICIES = ("min", "input")


def choose_rank(singular_values, energy):
    """Smallest rank whose singular values keep `energy` of `Σ σ_i²`."""
    if not 0.0 < energy <= 1.0:
        raise ValueError(f"`energy` must be in (0, 1]; got energy={energy}.")
    power = np.asarray(singular_values, np.float64) ** 2
    total = power.sum()
    if total == 0.0:
        return 1
    kept = np.cumsum(power) / total
    return int(min(np.searchsorted(kept, energy - 1e-12) + 1, len(power)))


def svd_factors(kernel, rank=None, energy=None, sigma="full", rank_policy="min"):
    """Factors `kernel ≈ P @ Q` with `P: [in, k]`, `Q: [k, out]` by reduced SVD.

    Args:
        kernel: a Keras-layout kernel `[in, out]` (transpose PyTorch `[out, in]` weights first).
        rank: the rank `k`; default `min(in, out)` (or `in` with `rank_policy="input"`).
        energy: alternatively, the fraction of `Σ σ_i²` to keep (chooses the smallest rank).
        sigma: `"full"` puts the singular values in `Q` (`P = U`, `Q = Σ Vᵀ`); `"sqrt"` splits
            them (`P = U √Σ`, `Q = √Σ Vᵀ`).
        rank_policy: `"min"` or `"input"` (`k = in`; beyond `min(in, out)` the extra rows of
            `Q` are exactly zero, as the original FLOP implementation had them).

    Returns:
        `(P, Q, singular_values)` as float32 numpy arrays; `P @ Q == kernel` at full rank up to
        float error.

    Example:
    >>> w = np.random.default_rng(0).normal(size=(6, 4))
    >>> p, q, s = svd_factors(w)
    >>> p.shape, q.shape, bool(np.allclose(p @ q, w, atol=1e-5))
    ((6, 4), (4, 4), True)
    """
    kernel = np.asarray(kernel, np.float64)
    if kernel.ndim != 2:
        raise ValueError(f"Expected a 2-D kernel [in, out]; got shape {kernel.shape}.")
    if sigma not in SIGMA_MODES:
        raise ValueError(f"`sigma` must be one of {SIGMA_MODES}; got sigma={sigma!r}.")
    if rank_policy not in RANK_POLICIES:
        raise ValueError(
            f"`rank_policy` must be one of {RANK_POLICIES}; got rank_policy={rank_policy!r}.")
    if rank is not None and energy is not None:
        raise ValueError("Pass at most one of `rank` and `energy`.")
    fan_in, fan_out = kernel.shape
    full = min(fan_in, fan_out)
    u, s, vt = np.linalg.svd(kernel, full_matrices=False)
    if energy is not None:
        rank = choose_rank(s, energy)
    elif rank is None:
        rank = fan_in if rank_policy == "input" else full
    max_rank = max(full, fan_in) if rank_policy == "input" else full
    if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) \
            or not 1 <= rank <= max_rank:
        raise ValueError(f"`rank` must be an integer in [1, {max_rank}] for a kernel of shape "
                         f"{kernel.shape}; got rank={rank!r}.")
    kept = min(rank, full)
    if sigma == "full":
        p = u[:, :kept]
        q = s[:kept, None] * vt[:kept]
    else:
        root = np.sqrt(s[:kept])
        p = u[:, :kept] * root
        q = root[:, None] * vt[:kept]
    if rank > kept:
        # Ranks past min(in, out) (rank_policy="input"): the rest of a full U, zero rows of Q.
        u_full = np.linalg.svd(kernel, full_matrices=True)[0]
        p = np.concatenate([p, u_full[:, kept:rank]], axis=1)
        q = np.concatenate([q, np.zeros((rank - kept, fan_out))], axis=0)
    return p.astype(np.float32), q.astype(np.float32), s.astype(np.float32)
