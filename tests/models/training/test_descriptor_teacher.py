"""The dlib-descriptor teacher: cross-fitted targets, their cache, and how they blend with the members'."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from models.training.descriptor_teacher import KEYS, cross_fitted_targets, fit_heads, predict_heads  # noqa: E402
from models.training.train import blend_targets  # noqa: E402


def _synthetic(n=300, seed=0):
    """Descriptors whose first entry says gender and second says age (a learnable, real relation)."""
    rng = np.random.default_rng(seed)
    age = rng.integers(1, 90, n)
    gender = rng.integers(0, 2, n)
    base = rng.normal(0, 0.02, (n, 128)).astype(np.float32)
    base[:, 0] += np.where(gender == 1, 0.1, -0.1)
    base[:, 1] += (age - 45) / 300
    descriptors = np.stack([base, base + rng.normal(0, 0.005, base.shape).astype(np.float32)], axis=1)
    from stream.types import age_group_index

    return descriptors, age.astype(np.float32), age_group_index(age), gender


def test_heads_learn_gender_and_age_from_descriptors():
    descriptors, age, group, gender = _synthetic()
    net = fit_heads(descriptors[:200], age[:200], group[:200], gender[:200], seed=0, epochs=40, batch_size=32)
    out = predict_heads(net, descriptors[200:])
    assert ((out["p_female"] >= 0.5) == gender[200:]).mean() > 0.9
    years = out["age_probs"] @ np.arange(out["age_probs"].shape[1])
    assert np.corrcoef(years, age[200:])[0, 1] > 0.8
    np.testing.assert_allclose(out["group_probs"].sum(1), 1, rtol=1e-5)


def test_cross_fitted_targets_cover_train_and_val_only():
    descriptors, age, group, gender = _synthetic()
    train_idx, val_idx = np.arange(0, 240), np.arange(250, 300)  # 240..249 in neither
    targets = cross_fitted_targets(descriptors, age, group, gender, train_idx, val_idx, seed=0, folds=3, epochs=10)
    assert set(targets) == set(KEYS)
    for key in ("group_probs", "age_probs"):
        np.testing.assert_allclose(targets[key][train_idx].sum(1), 1, rtol=1e-5)
        np.testing.assert_allclose(targets[key][val_idx].sum(1), 1, rtol=1e-5)
        assert not targets[key][240:250].any()
    # Out-of-fold: still right on the training rows, without having seen them.
    assert ((targets["p_female"][train_idx] >= 0.5) == gender[train_idx]).mean() > 0.85


def test_blend_targets():
    members = {"group_probs": torch.tensor([[1.0, 0.0]]), "p_female": torch.tensor([1.0])}
    teacher = {"group_probs": torch.tensor([[0.0, 1.0]]), "p_female": torch.tensor([0.0])}
    mixed = blend_targets(members, teacher, 0.25)
    assert torch.allclose(mixed["group_probs"], torch.tensor([[0.75, 0.25]]))
    assert torch.allclose(mixed["p_female"], torch.tensor([0.75]))
    assert blend_targets(None, teacher, 0.25) is teacher  # no members: the teacher alone


class _Fixed(torch.nn.Module):
    """A stand-in net for the ensemble arithmetic: the same outputs for every chip, and the side it was fed."""

    def __init__(self, group_probs, age, p_female):
        super().__init__()
        self.outputs = (torch.log(torch.tensor([group_probs])), torch.tensor([age]),
                        torch.logit(torch.tensor([p_female])))
        self.seen = None

    def forward(self, x):
        self.seen = tuple(x.shape[-2:])
        return tuple(o.expand(len(x), *o.shape[1:]) for o in self.outputs)


def test_descriptor_ensemble_averages_probabilities_years_and_p_female():
    from models.training.descriptor_teacher import AGE_BINS, DescriptorEnsemble, head_probabilities

    net = _Fixed([0.7, 0.3] + [0.0] * 6, 30.0, 0.8)
    descriptor = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(3, 128))
    heads = torch.nn.Linear(128, 8 + AGE_BINS + 1)
    ensemble = DescriptorEnsemble(net, 112, descriptor, heads).eval()
    x = torch.randn(2, 3, 136, 136)
    with torch.no_grad():
        group, years, gender = ensemble(x)
        groups_d, ages_d, female_d = head_probabilities(heads(descriptor(x) * 10.0))
    assert net.seen == (112, 112)  # the net reads the chip resized to its own side
    expected_group = (torch.tensor([0.7, 0.3] + [0.0] * 6) + groups_d) / 2
    torch.testing.assert_close(torch.exp(group), expected_group, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(years, (30.0 + (ages_d * torch.arange(AGE_BINS)).sum(1)) / 2)
    torch.testing.assert_close(torch.sigmoid(gender), (0.8 + female_d) / 2, atol=1e-6, rtol=1e-5)
