"""Query strategies: which unlabelled documents a reviewer should label next.

Each strategy is a small object with two methods, in the shape of modAL and small-text:
`scores(probabilities)` gives every pool document an informativeness (higher = label it sooner) in one
vectorised pass, which the live loop writes as queue priorities; `select(probabilities, k, ...)` returns the
indices of the next batch, which may add diversity on top of the scores. The simulation calls the very same
objects, so what the benchmark measures is what runs in production.

Single-label uncertainty is modAL's own math on probabilities. Multi-label probabilities are independent
per label with the decision at 0.5 (the classifier folds thresholds into the head), so each label's
uncertainty is its closeness to 0.5 and the strategies differ in how they combine labels:
least_confident takes the most uncertain label, margin the mean distance from 0.5 over labels, entropy the
mean binary entropy.

Beyond modAL's: "rare_margin" weights each label's uncertainty by how rarely the model predicts that label,
"rare_uncertainty" by how few labelled examples it has, and "diverse" spreads a batch over k-means clusters
of the most uncertain candidates. Clustered (`diverse`, and the project default `diverse_rare_uncertainty`)
they beat random and plain uncertainty on unseen OPP-115 policies up to about 100 labels; plain uncertainty
alone does not (docs/benchmarks.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from sklearn.cluster import KMeans

from learning.ml.exceptions import UnknownStrategy

# modAL is imported where a pool is scored, not with this module: modAL.utils imports torch (for its optional
# tensor input), seconds and hundreds of MB that every web process would otherwise pay when the URLs load.

Rng = np.random.Generator | int | None


def top_k(scores: np.ndarray, k: int, rng: Rng = None) -> np.ndarray:
    """Indices of the `k` highest scores, ties broken at random (so equal scores do not favour low ids)."""
    rng = np.random.default_rng(rng)
    k = min(k, len(scores))
    if k <= 0:
        return np.empty(0, dtype=np.int64)
    shuffled = rng.permutation(len(scores))
    order = np.argsort(-scores[shuffled], kind="stable")[:k]
    return shuffled[order].astype(np.int64)


def label_uncertainty(probabilities: np.ndarray) -> np.ndarray:
    """Per-label uncertainty of independent (multi-label) probabilities: 1 at p=0.5, 0 at p=0 or 1."""
    return 1.0 - np.abs(2.0 * probabilities - 1.0)


def binary_entropy(probabilities: np.ndarray) -> np.ndarray:
    """Per-label entropy in bits (0..1) of independent probabilities."""
    p = np.clip(probabilities, 1e-12, 1 - 1e-12)
    return -(p * np.log2(p) + (1 - p) * np.log2(1 - p))


class QueryStrategy:
    """Base: score every pool document, select the top `k`. Subclasses change `scores` or `select`."""

    name: ClassVar[str] = ""

    def __init__(self, multi_label: bool = False) -> None:
        self.multi_label = multi_label

    def scores(
        self, probabilities: np.ndarray, *, rng: Rng = None, examples_per_label: np.ndarray | None = None
    ) -> np.ndarray:
        """Informativeness of each row of `probabilities` (n, n_labels); higher = more informative."""
        raise NotImplementedError

    def select(
        self,
        probabilities: np.ndarray,
        k: int,
        *,
        embeddings: np.ndarray | None = None,
        labelled_embeddings: np.ndarray | None = None,
        rng: Rng = None,
        examples_per_label: np.ndarray | None = None,
    ) -> np.ndarray:
        """Indices (into the rows of `probabilities`) of the next `k` documents to label, best first."""
        rng = np.random.default_rng(rng)
        probabilities = np.asarray(probabilities, dtype=np.float64)
        scores = self.scores(probabilities, rng=rng, examples_per_label=examples_per_label)
        return top_k(scores, k, rng)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(multi_label={self.multi_label})"


class RandomSampling(QueryStrategy):
    """The baseline every other strategy has to beat: uniform draws from the pool."""

    name = "random"

    def scores(
        self, probabilities: np.ndarray, *, rng: Rng = None, examples_per_label: np.ndarray | None = None
    ) -> np.ndarray:
        return np.random.default_rng(rng).random(len(probabilities))


class LeastConfident(QueryStrategy):
    """Single-label: 1 - max p (modAL). Multi-label: the label nearest 0.5 decides."""

    name = "least_confident"

    def scores(
        self, probabilities: np.ndarray, *, rng: Rng = None, examples_per_label: np.ndarray | None = None
    ) -> np.ndarray:
        if self.multi_label:
            return label_uncertainty(probabilities).max(axis=1)
        from modAL.uncertainty import _proba_uncertainty  # modAL loads torch: imported where used

        return _proba_uncertainty(probabilities)


class Margin(QueryStrategy):
    """Single-label: 1 - (p1 - p2) (modAL's margin). Multi-label: 1 - mean distance from 0.5 over labels."""

    name = "margin"

    def scores(
        self, probabilities: np.ndarray, *, rng: Rng = None, examples_per_label: np.ndarray | None = None
    ) -> np.ndarray:
        if self.multi_label:
            return label_uncertainty(probabilities).mean(axis=1)
        from modAL.uncertainty import _proba_margin  # modAL loads torch: imported where used

        return 1.0 - _proba_margin(probabilities)


class Entropy(QueryStrategy):
    """Single-label: entropy of the distribution (modAL). Multi-label: mean binary entropy over labels."""

    name = "entropy"

    def scores(
        self, probabilities: np.ndarray, *, rng: Rng = None, examples_per_label: np.ndarray | None = None
    ) -> np.ndarray:
        if self.multi_label:
            return binary_entropy(probabilities).mean(axis=1)
        from modAL.uncertainty import _proba_entropy  # modAL loads torch: imported where used

        return _proba_entropy(probabilities)


class RareLabelMargin(QueryStrategy):
    """Multi-label margin with each label's uncertainty weighted by how rarely the model predicts it.

    A label the model predicts for few pool documents is one it has seen little of; its uncertain
    documents are worth more than yet another borderline "First Party Collection" paragraph. The weight is
    1/sqrt(predicted prevalence), normalised to mean 1. Single-label: the same with softmax columns.
    """

    name = "rare_margin"

    def scores(
        self, probabilities: np.ndarray, *, rng: Rng = None, examples_per_label: np.ndarray | None = None
    ) -> np.ndarray:
        n = max(len(probabilities), 1)
        if self.multi_label:
            uncertainty = label_uncertainty(probabilities)
            prevalence = (probabilities >= 0.5).sum(axis=0) / n
        else:
            uncertainty = probabilities * (1 - probabilities)
            prevalence = np.bincount(np.argmax(probabilities, axis=1), minlength=probabilities.shape[1]) / n
        weights = 1 / np.sqrt(np.maximum(prevalence, 1 / n))
        weights /= weights.mean()
        return (uncertainty * weights).mean(axis=1)


def labelled_counts(targets: np.ndarray, n_labels: int, multi_label: bool) -> np.ndarray:
    """How many labelled documents carry each label: column sums of multi-hot rows, or class counts."""
    targets = np.asarray(targets, dtype=np.int64)
    if multi_label:
        return targets.reshape(-1, n_labels).sum(axis=0)
    return np.bincount(targets, minlength=n_labels)


def label_rarity_weights(
    probabilities: np.ndarray, examples_per_label: np.ndarray | None, multi_label: bool, *, power: float = 0.5
) -> np.ndarray:
    """One weight per label, higher for labels with fewer labelled examples: 1/(examples + 1)^power, mean 1.

    `examples_per_label` holds each label's labelled documents in the columns' order (`labelled_counts`);
    without them (a caller that has none at hand) the pool's predicted prevalence stands in.
    """
    n_labels = probabilities.shape[1]
    if examples_per_label is not None and len(examples_per_label):
        counts = np.asarray(examples_per_label)
    else:
        decided = probabilities >= 0.5 if multi_label else np.eye(n_labels)[np.argmax(probabilities, axis=1)]
        counts = decided.sum(axis=0)
    weights = 1 / (np.asarray(counts, dtype=np.float64) + 1) ** power
    return weights / weights.mean()


class RareLabelExamples(QueryStrategy):
    """Likely examples of the labels with the fewest labelled documents: max over labels of weight x p.

    Macro-F1 weighs a label with 17 examples in 2,298 as much as one with 800; a model that has seen one
    example of "Do Not Track" needs the next one more than another borderline first-party paragraph.
    Weights come from the labelled documents' counts (`label_rarity_weights`).
    """

    name = "rare_labels"

    def scores(
        self, probabilities: np.ndarray, *, rng: Rng = None, examples_per_label: np.ndarray | None = None
    ) -> np.ndarray:
        weights = label_rarity_weights(probabilities, examples_per_label, self.multi_label)
        return (probabilities * weights).max(axis=1)


class RareLabelUncertainty(QueryStrategy):
    """Each label's uncertainty weighted by the inverse of its labelled count, averaged over labels.

    `rare_margin` weighs by what the model predicts; this weighs by what reviewers have labelled
    (1 / (examples + 1), mean 1), so a borderline call on a label with two examples outweighs one on a
    label with two hundred. Single-label: p(1 - p) per class stands in for the uncertainty.
    """

    name = "rare_uncertainty"

    def scores(
        self, probabilities: np.ndarray, *, rng: Rng = None, examples_per_label: np.ndarray | None = None
    ) -> np.ndarray:
        uncertainty = label_uncertainty(probabilities) if self.multi_label else probabilities * (1 - probabilities)
        weights = label_rarity_weights(probabilities, examples_per_label, self.multi_label, power=1.0)
        return (uncertainty * weights).mean(axis=1)


class GradientEmbedding(QueryStrategy):
    """BADGE (Ash et al.): k-means++ seeding on the head's gradient embeddings, weighted by label rarity.

    For a logistic head the loss gradient of a document under the label the model would give it is
    (p - decision) x embedding, one block per label; its length is the uncertainty and its direction what
    the document would teach. k-means++ on these picks a batch that is both uncertain and varied, with no
    candidate pool to tune. Each label's block is weighted by `label_rarity_weights` (power 1).
    """

    name = "badge"

    def scores(
        self, probabilities: np.ndarray, *, rng: Rng = None, examples_per_label: np.ndarray | None = None
    ) -> np.ndarray:
        return label_uncertainty(probabilities).mean(axis=1) if self.multi_label else 1 - probabilities.max(axis=1)

    def select(
        self,
        probabilities: np.ndarray,
        k: int,
        *,
        embeddings: np.ndarray | None = None,
        labelled_embeddings: np.ndarray | None = None,
        rng: Rng = None,
        examples_per_label: np.ndarray | None = None,
    ) -> np.ndarray:
        if embeddings is None:
            raise ValueError("the badge strategy needs the pool's embeddings")
        rng = np.random.default_rng(rng)
        probabilities = np.asarray(probabilities, dtype=np.float64)
        k = min(k, len(probabilities))
        if k <= 0:
            return np.empty(0, dtype=np.int64)
        if self.multi_label:
            decision = (probabilities >= 0.5).astype(np.float64)
        else:
            decision = np.eye(probabilities.shape[1])[np.argmax(probabilities, axis=1)]
        weights = label_rarity_weights(probabilities, examples_per_label, self.multi_label, power=1.0)
        residual = (probabilities - decision) * weights
        gradients = (residual[:, :, None] * np.asarray(embeddings, dtype=np.float64)[:, None, :]).reshape(
            len(probabilities), -1
        )
        return _kmeans_plus_plus(gradients, k, rng)


def _kmeans_plus_plus(points: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding: the longest point first, then each next with probability ~ squared distance."""
    chosen = [int(np.argmax((points**2).sum(axis=1)))]
    distance = ((points - points[chosen[0]]) ** 2).sum(axis=1)
    while len(chosen) < k:
        if distance.sum() <= 0:
            # Every remaining point coincides with a chosen one: fill the batch at random.
            rest = np.setdiff1d(np.arange(len(points)), chosen)
            chosen.extend(int(i) for i in rng.choice(rest, size=k - len(chosen), replace=False))
            break
        pick = int(rng.choice(len(points), p=distance / distance.sum()))
        chosen.append(pick)
        distance = np.minimum(distance, ((points - points[pick]) ** 2).sum(axis=1))
    return np.asarray(chosen, dtype=np.int64)


@dataclass
class _PrecomputedLearner:
    """Just enough of a modAL learner for `uncertainty_batch_sampling` to run on precomputed numbers.

    modAL asks the learner for `predict_proba(X)` and its training data; the pool's probabilities are
    already known, so this returns them for the pool it was built for.
    """

    pool_probabilities: np.ndarray
    X_training: np.ndarray | None
    on_transformed: bool = False

    def predict_proba(self, X: Any, **kwargs: Any) -> np.ndarray:
        if len(X) != len(self.pool_probabilities):
            raise ValueError("this learner only answers for the pool it was built with")
        return self.pool_probabilities


class RankedBatch(QueryStrategy):
    """modAL's ranked batch-mode sampling (Cardoso et al.): uncertainty traded off against distance to
    what is labelled or already in the batch, so one batch is not twenty near-duplicates."""

    name = "batch"

    def __init__(self, multi_label: bool = False) -> None:
        super().__init__(multi_label)
        self._uncertainty = LeastConfident(multi_label)

    def scores(
        self, probabilities: np.ndarray, *, rng: Rng = None, examples_per_label: np.ndarray | None = None
    ) -> np.ndarray:
        return self._uncertainty.scores(probabilities, examples_per_label=examples_per_label)

    def select(
        self,
        probabilities: np.ndarray,
        k: int,
        *,
        embeddings: np.ndarray | None = None,
        labelled_embeddings: np.ndarray | None = None,
        rng: Rng = None,
        examples_per_label: np.ndarray | None = None,
    ) -> np.ndarray:
        if embeddings is None:
            raise ValueError("the batch strategy needs the pool's embeddings to keep a batch diverse")
        rng = np.random.default_rng(rng)
        probabilities = np.asarray(probabilities, dtype=np.float64)
        k = min(k, len(probabilities))
        if k <= 0:
            return np.empty(0, dtype=np.int64)
        if self.multi_label:
            # modAL scores 1 - max(row); rows (1 - u/2, u/2) make that exactly half our uncertainty u.
            half = self.scores(probabilities) / 2
            pool_probabilities = np.column_stack([1 - half, half])
        else:
            pool_probabilities = probabilities
        first: list[int] = []
        if labelled_embeddings is None or len(labelled_embeddings) == 0:
            # modAL's own cold start is O(n^2); start from the most uncertain document instead.
            first = [int(top_k(self.scores(probabilities), 1, rng)[0])]
            labelled_embeddings = embeddings[first]
        learner = _PrecomputedLearner(pool_probabilities, np.asarray(labelled_embeddings))
        # That first document is still in modAL's pool, so ask for k and drop it if modAL takes it again.
        from modAL.batch import uncertainty_batch_sampling  # modAL loads torch: imported where used

        picked, _ = uncertainty_batch_sampling(learner, np.asarray(embeddings), n_instances=k)
        rest = [int(i) for i in picked if int(i) not in first]
        return np.asarray((first + rest)[:k], dtype=np.int64)


class DiverseUncertainty(QueryStrategy):
    """Uncertainty first, then diversity: cluster the most uncertain candidates and take one per cluster.

    Zhdanov's "diverse mini-batch" sampling: the `pool_factor * k` most uncertain documents are clustered
    into `k` groups with k-means weighted by uncertainty, and the candidate nearest each centre is chosen.
    Plain top-k uncertainty on a fresh model picks many near-identical paragraphs (the same boilerplate
    from many policies); this keeps the batch informative and spread out. The defaults (rare-label margin,
    40 candidates per pick) won on OPP-115 over 10 seeds, see docs/benchmarks.md; fewer candidates
    approach plain uncertainty, the whole pool approaches plain clustering, and both did worse.
    """

    name = "diverse"

    def __init__(self, multi_label: bool = False, pool_factor: int = 40, base: str = "rare_margin") -> None:
        super().__init__(multi_label)
        self.pool_factor = pool_factor
        self._uncertainty = STRATEGIES[base](multi_label)

    def scores(
        self, probabilities: np.ndarray, *, rng: Rng = None, examples_per_label: np.ndarray | None = None
    ) -> np.ndarray:
        return self._uncertainty.scores(probabilities, examples_per_label=examples_per_label)

    def select(
        self,
        probabilities: np.ndarray,
        k: int,
        *,
        embeddings: np.ndarray | None = None,
        labelled_embeddings: np.ndarray | None = None,
        rng: Rng = None,
        examples_per_label: np.ndarray | None = None,
    ) -> np.ndarray:
        if embeddings is None:
            raise ValueError("the diverse strategy needs the pool's embeddings to spread a batch")
        rng = np.random.default_rng(rng)
        scores = self.scores(np.asarray(probabilities, dtype=np.float64), examples_per_label=examples_per_label)
        k = min(k, len(scores))
        if k <= 1:
            return top_k(scores, k, rng)
        candidates = top_k(scores, min(len(scores), self.pool_factor * k), rng)
        if len(candidates) <= k:
            return candidates
        points = np.asarray(embeddings, dtype=np.float64)[candidates]
        weights = scores[candidates] + 1e-6
        kmeans = KMeans(n_clusters=k, n_init=1, random_state=int(rng.integers(2**31 - 1)))
        assignment = kmeans.fit_predict(points, sample_weight=weights)
        distances = ((points - kmeans.cluster_centers_[assignment]) ** 2).sum(axis=1)
        picked = []
        for cluster in range(k):
            members = np.flatnonzero(assignment == cluster)
            if len(members):
                picked.append(candidates[members[np.argmin(distances[members])]])
        if len(picked) < k:
            rest = [c for c in candidates if c not in set(picked)]
            picked.extend(rest[: k - len(picked)])
        picked_array = np.asarray(picked, dtype=np.int64)
        # Best first, so a caller that takes fewer still gets the most informative.
        return picked_array[np.argsort(-scores[picked_array], kind="stable")]


class DiverseRareUncertainty(DiverseUncertainty):
    """`diverse` on `rare_uncertainty`: labelled-count-weighted uncertainty, spread over clusters.

    The project default. It needs each label's count of labelled examples (`examples_per_label`); the live
    loop passes the serving model's training counts, the simulation its labelled set's.
    """

    name = "diverse_rare_uncertainty"

    def __init__(self, multi_label: bool = False, pool_factor: int = 40) -> None:
        super().__init__(multi_label, pool_factor=pool_factor, base="rare_uncertainty")


class DiverseRareLabels(DiverseUncertainty):
    """`diverse` on likely examples of the rarest labels (`rare_labels`) instead of their uncertainty."""

    name = "diverse_rare"

    def __init__(self, multi_label: bool = False, pool_factor: int = 40) -> None:
        super().__init__(multi_label, pool_factor=pool_factor, base="rare_labels")


STRATEGIES: dict[str, type[QueryStrategy]] = {
    strategy.name: strategy
    for strategy in (
        LeastConfident,
        Margin,
        Entropy,
        RankedBatch,
        RandomSampling,
        DiverseUncertainty,
        RareLabelMargin,
        RareLabelExamples,
        DiverseRareLabels,
        RareLabelUncertainty,
        DiverseRareUncertainty,
        GradientEmbedding,
    )
}


def get_strategy(name: str, multi_label: bool = False, **options: Any) -> QueryStrategy:
    """The strategy registered under `name`, for a single- or multi-label task."""
    try:
        strategy = STRATEGIES[name]
    except KeyError:
        raise UnknownStrategy(f"unknown query strategy {name!r}; choose one of {', '.join(STRATEGIES)}") from None
    return strategy(multi_label, **options)
