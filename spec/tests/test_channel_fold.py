"""channel_fold: C single-channel reference products reassemble the channelwise product."""

from __future__ import annotations

import numpy as np
import pytest
from tp_spec import cgtp, channel_fold, reference


def _folded_apply(d, x1, x2, w):
    f = channel_fold(d)
    b = x1.shape[0]
    x1c = x1[:, f.x1_index].reshape(b, f.channels, -1)
    outs = [reference.apply(f.single, x1c[:, u], x2,
                            None if w is None else w[..., f.weight_index[u]])
            for u in range(f.channels)]
    return np.stack(outs, axis=1).reshape(b, -1)[:, f.out_index]


CASES = {
    "sh": cgtp("3x0e+3x1o+3x2e", "0e+1o+2e", mode="uvu"),
    "filtered": cgtp("2x0e+2x1o+2x1e", "0e+1o", "2x0e+2x1o+2x2e", mode="uvu"),
    "shared_out_unweighted": cgtp(
        "4x0e+4x1o", "0e+1o", "4x0e+4x1o+4x2e",
        instructions=[(0, 0, 0, "uvu", True), (1, 1, 0, "uvu", False),
                      (0, 1, 1, "uvu", False), (1, 0, 1, "uvu", True)]),
}


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("per_sample", [False, True])
def test_fold_reassembles_the_product(name, per_sample):
    d = CASES[name]
    rng = np.random.default_rng(3)
    b = 5
    x1 = rng.standard_normal((b, d.irreps_in1.dim))
    x2 = rng.standard_normal((b, d.irreps_in2.dim))
    w = rng.standard_normal(((b,) if per_sample else ()) + (d.weight_numel,))
    np.testing.assert_allclose(_folded_apply(d, x1, x2, w), reference.apply(d, x1, x2, w),
                               rtol=1e-12, atol=1e-12)


def test_fold_layout_by_hand():
    f = channel_fold(cgtp("2x0e+2x1o", "0e+1o", "2x0e+2x1o",
                          instructions=[(0, 0, 0, "uvu", True), (1, 0, 1, "uvu", True)]))
    # x1 = [a0 a1 | b0x b0y b0z b1x b1y b1z]: channel 0 = a0 b0*, channel 1 = a1 b1*
    assert f.x1_index.tolist() == [0, 2, 3, 4, 1, 5, 6, 7]
    # stacked = [ch0: s v_x v_y v_z | ch1: s v_x v_y v_z] -> [s0 s1 | v0* v1*]
    assert f.out_index.tolist() == [0, 4, 1, 2, 3, 5, 6, 7]
    assert f.single.weight_numel == len(f.single.paths) == f.weight_index.shape[1]


@pytest.mark.parametrize("d", [cgtp("2x0e+3x1o", "0e+1o", mode="uvu"),
                               cgtp("2x0e+2x1o", "2x0e", mode="uvu"),
                               cgtp("2x0e", "1x0e", "3x0e", mode="uvw")],
                         ids=["mixed_mul", "x2_channels", "uvw"])
def test_not_foldable_is_refused(d):
    with pytest.raises(ValueError, match="channel_fold"):
        channel_fold(d)
