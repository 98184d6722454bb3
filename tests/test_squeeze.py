"""The squeeze module T (Fig. 3; reference code ``CompactRepr`` / ``VanillaCompactRepr``)."""

import pytest
import torch
from torch import nn

from solo_sqsp.models.squeeze import SqueezeModule, check_student_width


def pooled_features(in_dims: list[int], n: int = 6, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, c, generator=g) for c in in_dims]


def test_layout_matches_the_paper_code():
    squeeze = SqueezeModule([8, 16, 4], hidden_dim=12, out_dim=10, depth=3)
    assert [(m.in_features, m.out_features) for m in squeeze.lateral] == [
        (8, 12),
        (16, 12),
        (4, 12),
    ]
    assert all(m.bias is not None for m in squeeze.lateral)
    kinds = [type(m) for m in squeeze.head]
    assert kinds == [nn.Linear, nn.BatchNorm1d, nn.ReLU] * 2 + [nn.Linear]
    hidden_linears = [squeeze.head[0], squeeze.head[3]]
    assert all(m.bias is None and m.in_features == m.out_features == 12 for m in hidden_linears)
    last = squeeze.head[-1]
    assert (last.in_features, last.out_features) == (12, 10) and last.bias is not None
    assert squeeze.out_dim == 10
    assert squeeze(pooled_features([8, 16, 4])).shape == (6, 10)


def test_depth_one_is_sum_of_laterals_then_one_linear():
    squeeze = SqueezeModule([3, 5], hidden_dim=4, out_dim=2, depth=1)
    assert len(squeeze.head) == 1
    f1, f2 = pooled_features([3, 5])
    lat1, lat2 = squeeze.lateral
    last = squeeze.head[0]
    summed = f1 @ lat1.weight.T + lat1.bias + f2 @ lat2.weight.T + lat2.bias
    expected = summed @ last.weight.T + last.bias
    torch.testing.assert_close(squeeze([f1, f2]), expected)


def test_depth_zero_is_plain_concatenation():
    squeeze = SqueezeModule([3, 5, 2], depth=0)
    features = pooled_features([3, 5, 2])
    assert squeeze.out_dim == 10
    assert list(squeeze.parameters()) == []
    torch.testing.assert_close(squeeze(features), torch.cat(features, dim=1), rtol=0, atol=0)


@pytest.mark.parametrize("in_dims", [[7], [2, 3, 4, 5, 6]])
def test_any_number_of_features_and_each_receives_gradient(in_dims):
    squeeze = SqueezeModule(in_dims, hidden_dim=8, out_dim=4, depth=2)
    squeeze(pooled_features(in_dims)).pow(2).sum().backward()
    for lateral in squeeze.lateral:
        assert lateral.weight.grad is not None and lateral.weight.grad.abs().sum() > 0


def test_student_width_check():
    vanilla = SqueezeModule([32, 8], depth=0)
    check_student_width(vanilla, 40)
    with pytest.raises(ValueError, match=r"set the projector output dim to 40 or use depth >= 1"):
        check_student_width(vanilla, 2048)
    squeezed = SqueezeModule([32, 8], hidden_dim=16, out_dim=16)
    check_student_width(squeezed, 16)
    with pytest.raises(ValueError, match=r"squeeze module outputs 16 dims.*outputs 2048"):
        check_student_width(squeezed, 2048)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"in_dims": []}, "in_dims is empty"),
        ({"in_dims": [4, 0]}, "must all be positive"),
        ({"in_dims": [4], "depth": -1}, "depth must be >= 0"),
        ({"in_dims": [4], "hidden_dim": 0}, "hidden_dim and out_dim must be positive"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SqueezeModule(**kwargs)


def test_bad_features_are_named():
    squeeze = SqueezeModule([3, 5], hidden_dim=4, out_dim=2, depth=1)
    with pytest.raises(ValueError, match="built for 2 teacher features"):
        squeeze(pooled_features([3]))
    unpooled = [torch.zeros(2, 3, 4, 4), torch.zeros(2, 5)]
    with pytest.raises(ValueError, match=r"feature 0 must be pooled to shape \(N, 3\)"):
        squeeze(unpooled)
