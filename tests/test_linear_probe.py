"""Linear probe against scikit-learn's LogisticRegression; held-out selection; few-shot subsets."""

import numpy as np
import pytest
import torch
from evaluation_helpers import clustered
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from seedzoo.data.subsets import class_balanced_indices, holdout_split
from seedzoo.errors import SeedzooError
from seedzoo.evaluation import LinearProbe, fewshot_probe, linear_probe

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits(return_X_y=True)
    return train_test_split(x.astype(np.float32), y, test_size=0.25, random_state=0, stratify=y)


def sklearn_accuracy(train_x, train_y, test_x, test_y) -> float:
    scaler = StandardScaler().fit(train_x)
    model = LogisticRegression(max_iter=3000).fit(scaler.transform(train_x), train_y)
    return model.score(scaler.transform(test_x), test_y)


def test_probe_agrees_with_sklearn_logistic_regression_on_digit_pixels(digits):
    train_x, test_x, train_y, test_y = digits
    ours = linear_probe(train_x, train_y, test_x, test_y)
    reference = sklearn_accuracy(train_x, train_y, test_x, test_y)
    assert abs(ours["top1"] - reference) <= 0.01, (ours["top1"], reference)
    assert ours["top5"] >= ours["top1"]


def test_probe_agrees_with_sklearn_on_random_projection_features(digits):
    train_x, test_x, train_y, test_y = digits
    projection = np.random.default_rng(0).standard_normal((64, 256)).astype(np.float32)
    train_f, test_f = np.maximum(train_x @ projection, 0), np.maximum(test_x @ projection, 0)
    ours = linear_probe(train_f, train_y, test_f, test_y, epochs=10, min_steps=300)
    reference = sklearn_accuracy(train_f, train_y, test_f, test_y)
    assert abs(ours["top1"] - reference) <= 0.015, (ours["top1"], reference)


def test_weight_decay_is_chosen_on_heldout_training_data():
    train_x, train_y, test_x, test_y = clustered(train=600, dim=64, spread=3.0, seed=3)
    options = {"epochs": 3, "min_steps": 150, "heldout_fraction": 0.2, "seed": 1}
    grid = (0.0, 1e-2, 1.0)
    probe = LinearProbe(weight_decays=grid, **options).fit(train_x, train_y)
    assert list(probe.heldout_top1_) == list(grid)
    best = max(probe.heldout_top1_.values())
    assert probe.weight_decay_ == max(d for d, top1 in probe.heldout_top1_.items() if top1 == best)
    # Each held-out score is that of the same probe fit on the other training rows.
    fit_rows, heldout_rows = holdout_split(train_y, 0.2, seed=1)
    assert len(heldout_rows) == pytest.approx(0.2 * len(train_y), abs=6)
    for decay in grid:
        alone = LinearProbe(weight_decays=[decay], **options)
        alone.fit(train_x[fit_rows], train_y[fit_rows])
        score = alone.score(train_x[heldout_rows], train_y[heldout_rows])
        assert score == pytest.approx(probe.heldout_top1_[decay], abs=1 / len(heldout_rows))
    assert len(set(probe.heldout_top1_.values())) > 1  # the grid makes a difference here


def test_predictions_use_the_original_labels():
    train_x, train_y, test_x, test_y = clustered(labels=[5, 17, 2, 40, 8, 11], spread=0.5)
    probe = LinearProbe(weight_decays=[1e-4], epochs=3, min_steps=100).fit(train_x, train_y)
    assert probe.weight_decay_ == 1e-4 and probe.heldout_top1_ == {}
    predicted = probe.predict(test_x)
    assert set(np.unique(predicted)) <= {5, 17, 2, 40, 8, 11}
    assert (predicted == test_y).mean() == pytest.approx(probe.score(test_x, test_y))
    assert probe.score(test_x, test_y) > 0.95
    assert probe.score(test_x, np.full_like(test_y, 999)) == 0.0  # unseen labels are errors
    assert probe.decision_function(torch.from_numpy(test_x)).shape == (len(test_x), 6)


def test_holdout_split_is_class_balanced_disjoint_and_seeded():
    labels = np.repeat(np.arange(5), [50, 20, 10, 2, 1])
    fit, heldout = holdout_split(labels, 0.1, seed=0)
    assert np.intersect1d(fit, heldout).size == 0
    assert np.union1d(fit, heldout).tolist() == list(range(len(labels)))
    assert np.bincount(labels[heldout], minlength=5).tolist() == [5, 2, 1, 1, 0]
    assert np.array_equal(heldout, holdout_split(labels, 0.1, seed=0)[1])
    assert not np.array_equal(heldout, holdout_split(labels, 0.1, seed=1)[1])


@pytest.mark.parametrize("fraction", [0.01, 0.1])
def test_fewshot_subsets_are_class_balanced_and_reproducible(fraction):
    labels = np.random.default_rng(0).permutation(np.repeat(np.arange(10), 600))
    subset = class_balanced_indices(labels, fraction, seed=0)
    counts = np.bincount(labels[subset], minlength=10)
    assert counts.tolist() == [round(600 * fraction)] * 10
    assert len(np.unique(subset)) == len(subset)
    assert np.array_equal(subset, class_balanced_indices(labels, fraction, seed=0))
    assert not np.array_equal(subset, class_balanced_indices(labels, fraction, seed=1))
    with pytest.raises(SeedzooError, match="fraction"):
        class_balanced_indices(labels, 0.0)


def test_fewshot_probe_trains_on_the_subset_only():
    train_x, train_y, test_x, test_y = clustered(train=3000, spread=0.8)
    result = fewshot_probe(train_x, train_y, test_x, test_y, 0.01, seed=0, epochs=5,
                           min_steps=150)
    assert result["train_size"] == len(class_balanced_indices(train_y, 0.01, seed=0))
    assert result["top1"] > 0.8
    again = fewshot_probe(torch.from_numpy(train_x), torch.from_numpy(train_y), test_x,
                          test_y, 0.01, seed=0, epochs=5, min_steps=150)
    assert again["top1"] == result["top1"]


def test_bad_probe_inputs_are_clear_errors():
    train_x, train_y, test_x, _ = clustered()
    with pytest.raises(SeedzooError, match="not fitted"):
        LinearProbe().predict(test_x)
    with pytest.raises(SeedzooError, match="labels"):
        LinearProbe().fit(train_x, train_y[:-1])
    with pytest.raises(SeedzooError, match="weight decays"):
        LinearProbe(weight_decays=[-1.0])
    probe = LinearProbe(weight_decays=[0.0], epochs=1, min_steps=5).fit(train_x, train_y)
    with pytest.raises(SeedzooError, match="shape"):
        probe.predict(test_x[:, :3])


@pytest.mark.parametrize("option, value, message", [
    ("lr", 0.0, "learning rate"), ("lr", -0.05, "learning rate"),
    ("lr", float("nan"), "learning rate"), ("lr", float("inf"), "learning rate"),
    ("momentum", 1.0, "momentum"), ("momentum", -0.1, "momentum"),
    ("batch_size", 0, "batch size"),
    ("heldout_fraction", 0.0, "held-out fraction"), ("heldout_fraction", 1.0, "held-out fraction"),
    ("weight_decays", [1e-4, float("nan")], "weight decays"),
    ("weight_decays", [float("inf")], "weight decays"), ("weight_decays", [], "weight decays"),
    ("epochs", 0, "epoch count"), ("min_steps", -1, "minimum step count"),
])
def test_bad_probe_options_are_refused_before_training(option, value, message):
    with pytest.raises(SeedzooError, match=f"linear probe's {message} must be"):
        LinearProbe(**{option: value})


@pytest.mark.parametrize("where", ["train", "test"])
def test_non_finite_features_get_no_probe_score(where):
    rng = np.random.default_rng(0)
    train_x, test_x = rng.normal(size=(60, 4)), rng.normal(size=(20, 4))
    train_y, test_y = np.arange(60) % 3, np.arange(20) % 3
    (train_x if where == "train" else test_x)[5, 1] = np.nan
    name = "training" if where == "train" else "test"
    with pytest.raises(SeedzooError, match=f"1 of .* {name} features are NaN or infinite"):
        linear_probe(train_x, train_y, test_x, test_y)
    with pytest.raises(SeedzooError, match="NaN or infinite"):
        fewshot_probe(train_x, train_y, test_x, test_y, 1.0)
