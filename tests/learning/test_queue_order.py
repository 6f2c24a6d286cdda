"""The live queue's order against the simulation's picks for the same state: no database, no model."""

import numpy as np

from annotation.models import Project
from learning.ml.strategies import get_strategy
from learning.services.pool import learner_order


def clustered_pool():
    """Three tight groups of 40 borderline on the rare label 1, three of 20 borderline on the common label 0.

    A batch of three clusters the 120 most uncertain documents: under the labelled counts, exactly the first
    three groups.
    """
    rng = np.random.default_rng(0)
    sizes = [40, 40, 40, 20, 20, 20]
    centres = np.array([[10.0, 0], [0, 10], [-10, 0], [40, 40], [40, -40], [-40, 40]])
    embeddings = np.vstack([c + rng.normal(scale=0.1, size=(n, 2)) for c, n in zip(centres, sizes, strict=True)])
    probabilities = np.vstack([np.tile([0.02, 0.55], (120, 1)), np.tile([0.45, 0.02], (60, 1))])
    probabilities += rng.uniform(-0.01, 0.01, size=probabilities.shape)
    return probabilities, embeddings


def test_live_batch_is_the_simulations_batch_for_the_same_labelled_counts():
    # Label 1 has one labelled example, label 0 fifty: both loops ask for the borderline label-1 groups, one
    # document each; weighing by the pool's predicted labels instead would ask for the label-0 groups.
    probabilities, embeddings = clustered_pool()
    examples = np.array([50, 1])
    project = Project(query_strategy="diverse_rare_uncertainty", multi_label=True, fast_retrain_every=3)
    simulated = get_strategy("diverse_rare_uncertainty", multi_label=True).select(
        probabilities, 3, embeddings=embeddings, rng=1, examples_per_label=examples
    )
    live = learner_order(project, probabilities, embeddings, None, np.random.default_rng(2), examples)
    assert sorted(int(i) // 40 for i in live[:3]) == sorted(int(i) // 40 for i in simulated) == [0, 1, 2]
    scores = get_strategy("diverse_rare_uncertainty", multi_label=True).scores(
        probabilities, examples_per_label=examples
    )
    assert np.all(np.diff(scores[live[3:]]) <= 0)  # the rest of the queue by the same scores
