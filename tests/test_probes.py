import pytest
import torch

from poser_lens.probes import LayerProbes, cosine_scores, logistic, mass_mean, pca


def planted(n=80, d=12, seed=0):
    gen = torch.Generator().manual_seed(seed)
    direction = torch.zeros(d)
    direction[3] = 1.0
    neg = torch.randn(n, d, generator=gen)
    pos = torch.randn(n, d, generator=gen) + 2.5 * direction
    return pos, neg, direction


@pytest.mark.parametrize("finder", [mass_mean(), mass_mean(covariance=True), logistic()])
def test_planted_direction_is_recovered(finder):
    pos, neg, direction = planted()
    found = finder(pos, neg)
    assert cosine_scores(found[None], direction)[0] > 0.8


def test_pca_on_paired_differences_points_neg_to_pos():
    pos, neg, direction = planted()
    # The contrast varies in strength along the direction (centred PCA needs variance there).
    strength = 0.5 + 4 * torch.rand(len(pos), 1, generator=torch.Generator().manual_seed(2))
    neg_paired = pos - strength * direction + 0.1 * torch.randn_like(pos)
    found = pca()(pos, neg_paired)
    assert cosine_scores(found[None], direction)[0] > 0.8
    with pytest.raises(ValueError):
        pca()(pos, neg[:10])


def test_layer_probes_find_the_planted_layer(tmp_path):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(200, 4, 8, generator=gen)
    y = [i % 2 for i in range(200)]
    x[:, 2, 5] += 4.0 * torch.tensor(y, dtype=torch.float32)
    probes = LayerProbes(seed=0)
    acc = probes.fit(x, y)
    assert acc[2] > 0.95 and max(acc[0], acc[1], acc[3]) < 0.75
    probes.save(tmp_path / "p.json")
    again = LayerProbes.load(tmp_path / "p.json")
    assert again.accuracy == acc and again.weights[2][1] == probes.weights[2][1]
    with pytest.raises(ValueError):
        probes.fit(x, y[:10])
