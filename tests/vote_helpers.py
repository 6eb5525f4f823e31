"""An independent, brute-force computation of the weighted neighbour votes, shared by the label-vote tests."""

import numpy as np


def loo_votes(Z, y, k, voters):
    """Inverse-distance votes of every row of Z by its k nearest ``voters`` rows, itself excluded (brute force)."""
    d = np.linalg.norm(Z[:, None, :] - Z[None, voters], axis=-1)
    d[voters, np.arange(voters.size)] = np.inf
    probs = np.zeros((Z.shape[0], int(y.max()) + 1))
    for i in range(Z.shape[0]):
        nn = np.argsort(d[i], kind="stable")[:k]
        probs[i] = np.bincount(y[voters[nn]], weights=1 / (d[i, nn] + 1e-6), minlength=probs.shape[1])
    return probs / probs.sum(1, keepdims=True)
