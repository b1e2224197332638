"""Probes: direction finders, per-layer classifiers and cosine scores.

A *direction finder* is a ``Callable[[pos, neg], direction]`` made by a factory (the
steering-vectors convention): it takes activations of the positive and negative examples,
``Float[Tensor, "n d"]`` and ``Float[Tensor, "m d"]``, and returns ``Float[Tensor, "d"]``
pointing from negative to positive.

Example:
    >>> import torch
    >>> _ = torch.manual_seed(0)
    >>> pos, neg = torch.randn(50, 8) + 3 * torch.eye(8)[0], torch.randn(50, 8)
    >>> d = mass_mean()(pos, neg)
    >>> int(d.abs().argmax())
    0
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

DirectionFinder = Callable[[Float[Tensor, "n d"], Float[Tensor, "m d"]], Float[Tensor, " d"]]


def mass_mean(covariance: bool = False, ridge: float = 1e-3) -> DirectionFinder:
    """Difference of means; with ``covariance=True``, whitened by the pooled covariance.

    The covariance-corrected version solves ``(Sigma + ridge * I) w = mu_pos - mu_neg``, the
    MMProbe option of the Poser code (which used the plain difference).

    Example:
        >>> mass_mean()(torch.ones(2, 3), torch.zeros(2, 3)).tolist()
        [1.0, 1.0, 1.0]
    """

    def find(pos: Float[Tensor, "n d"], neg: Float[Tensor, "m d"]) -> Float[Tensor, " d"]:
        diff = pos.float().mean(0) - neg.float().mean(0)
        if not covariance:
            return diff
        centred = torch.cat([pos.float() - pos.float().mean(0), neg.float() - neg.float().mean(0)])
        cov = centred.T @ centred / max(len(centred) - 1, 1)
        eye = torch.eye(cov.shape[0])
        return torch.linalg.solve(cov + ridge * cov.diagonal().mean() * eye, diff)

    return find


def logistic(c: float = 1.0, seed: int = 0, max_iter: int = 1000) -> DirectionFinder:
    """The weight vector of an L2-regularised logistic regression (scikit-learn).

    Example:
        >>> _ = torch.manual_seed(0)
        >>> pos, neg = torch.randn(40, 4) + torch.tensor([2.0, 0, 0, 0]), torch.randn(40, 4)
        >>> int(logistic()(pos, neg).abs().argmax())
        0
    """

    def find(pos: Float[Tensor, "n d"], neg: Float[Tensor, "m d"]) -> Float[Tensor, " d"]:
        from sklearn.linear_model import LogisticRegression

        x = torch.cat([pos, neg]).float().numpy()
        y = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
        clf = LogisticRegression(C=c, max_iter=max_iter, random_state=seed).fit(x, y)
        return torch.tensor(clf.coef_[0], dtype=torch.float32)

    return find


def pca(center: bool = True) -> DirectionFinder:
    """First principal component of the paired differences, signed to point neg -> pos.

    Pairs ``pos[i] - neg[i]`` (so ``pos`` and ``neg`` must be aligned, as contrast pairs are).

    Example:
        >>> _ = torch.manual_seed(0)
        >>> pos = torch.randn(30, 5) + torch.tensor([0, 0, 4.0, 0, 0]) * torch.rand(30, 1)
        >>> int(pca(center=False)(pos, torch.zeros(30, 5)).abs().argmax())
        2
    """

    def find(pos: Float[Tensor, "n d"], neg: Float[Tensor, "n d"]) -> Float[Tensor, " d"]:
        if pos.shape != neg.shape:
            raise ValueError("pca needs paired examples (pos and neg of the same shape)")
        diffs = (pos - neg).float()
        x = diffs - diffs.mean(0) if center else diffs
        _, _, vh = torch.linalg.svd(x, full_matrices=False)
        d = vh[0]
        return d if (diffs @ d).mean() >= 0 else -d

    return find


def cosine_scores(
    acts: Float[Tensor, "n d"], direction: Float[Tensor, " d"]
) -> Float[Tensor, " n"]:
    """Cosine similarity of each activation with a direction (raw, uncentred, as Poser S4).

    Example:
        >>> cosine_scores(torch.tensor([[1.0, 0], [0, 2.0]]), torch.tensor([1.0, 0])).tolist()
        [1.0, 0.0]
    """
    return torch.nn.functional.cosine_similarity(acts.float(), direction.float()[None], dim=-1)


def contrast_projection(
    acts: Float[Tensor, "n d"],
    direction: Float[Tensor, " d"],
    pos: Float[Tensor, "p d"],
    neg: Float[Tensor, "m d"],
) -> Float[Tensor, " n"]:
    """Projections on a direction, in units of its own examples' separation along it.

    On the unit direction ``u``, the positive and negative means project to ``p+`` and ``p-``;
    an activation ``x`` maps to ``(x . u - (p+ + p-) / 2) / (p+ - p-)``: 0 halfway between
    the two means, +0.5 at the positive mean, -0.5 at the negative one, whatever the
    model's scale. For the difference of means (:func:`mass_mean`) this is
    ``(x - mid) . d / |d|^2``.

    Example:
        >>> pos, neg = torch.tensor([[4.0, 1.0]]), torch.tensor([[0.0, 1.0]])
        >>> d = mass_mean()(pos, neg)
        >>> contrast_projection(torch.tensor([[4.0, 9.0], [2.0, 0.0], [-2.0, 5.0]]), d, pos,
        ...                     neg).tolist()
        [0.5, 0.0, -1.0]
    """
    unit = direction.float() / direction.float().norm()
    hi, lo = pos.float().mean(0) @ unit, neg.float().mean(0) @ unit
    return (acts.float() @ unit - (hi + lo) / 2) / (hi - lo)


@dataclass
class LayerProbes:
    """One logistic classifier per layer, fit on a seeded split; accuracy per layer.

    Attributes:
        test_fraction: Held-out fraction.
        seed: Split and solver seed.
        c: Inverse L2 strength.
        accuracy: Held-out accuracy per layer (after :meth:`fit`).
        weights: Per-layer ``(coef, intercept)`` (after :meth:`fit`).

    Example:
        >>> probes = LayerProbes(test_fraction=0.25, seed=1)
        >>> _ = torch.manual_seed(0)
        >>> x, y = torch.randn(40, 2, 3), [i % 2 for i in range(40)]
        >>> len(probes.fit(x, y)), len(probes.weights[0][0])
        (2, 3)
    """

    test_fraction: float = 0.2
    seed: int = 0
    c: float = 1.0
    accuracy: list[float] = field(default_factory=list)
    weights: list[tuple[list[float], float]] = field(default_factory=list)

    def split(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The seeded held-out and training rows :meth:`fit` uses for ``n`` examples.

        Example:
            >>> test, train = LayerProbes(test_fraction=0.2, seed=0).split(10)
            >>> len(test), len(train), sorted([*test, *train]) == list(range(10))
            (2, 8, True)
        """
        order = np.random.default_rng(self.seed).permutation(n)
        n_test = max(1, round(self.test_fraction * n))
        return order[:n_test], order[n_test:]

    def fit(self, acts: Float[Tensor, "n layer d"], labels: Sequence[int]) -> list[float]:
        """Fit a probe per layer and return held-out accuracy per layer.

        Example:
            >>> _ = torch.manual_seed(0)
            >>> x = torch.randn(60, 3, 4); y = [i % 2 for i in range(60)]
            >>> x[:, 2, 0] += 5 * torch.tensor(y)
            >>> acc = LayerProbes().fit(x, y)
            >>> acc[2] > 0.9 and acc[0] < 0.8
            True
        """
        from sklearn.linear_model import LogisticRegression

        y = np.asarray(labels)
        if len(y) != acts.shape[0]:
            raise ValueError(f"{len(y)} labels for {acts.shape[0]} examples")
        test, train = self.split(len(y))
        self.accuracy, self.weights = [], []
        x = acts.float().numpy()
        for layer in range(x.shape[1]):
            if len(set(y[train])) < 2:
                self.accuracy.append(float("nan"))
                self.weights.append(([0.0] * x.shape[2], 0.0))
                continue
            clf = LogisticRegression(C=self.c, max_iter=1000, random_state=self.seed)
            clf.fit(x[train, layer], y[train])
            self.accuracy.append(float(clf.score(x[test, layer], y[test])))
            self.weights.append((clf.coef_[0].tolist(), float(clf.intercept_[0])))
        return self.accuracy

    def save(self, path: str | Path) -> None:
        """Write settings, accuracies and weights as JSON.

        Example:
            >>> import tempfile
            >>> with tempfile.TemporaryDirectory() as d:
            ...     LayerProbes(seed=3).save(f"{d}/probes.json")
            ...     LayerProbes.load(f"{d}/probes.json").seed
            3
        """
        Path(path).write_text(json.dumps(asdict(self)))

    @classmethod
    def load(cls, path: str | Path) -> LayerProbes:
        """Read probes written by :meth:`save` (example there)."""
        d = json.loads(Path(path).read_text())
        d["weights"] = [(w, b) for w, b in d["weights"]]
        return cls(**d)
