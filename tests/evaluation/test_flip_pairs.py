"""Flip test of a data set whose classes a mirror swaps (DATASET.FLIP_PAIRS): the
mirrored pass's class scores are permuted back before they are averaged."""
import math
import os
import sys

import pytest
import torch

from evaluation.passes import EvalModes, multi_pass_inference
from evaluation.run import build_eval_modes

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'models'))
from tiny import tiny_cfg  # noqa: E402

# A toy "network" of 3 classes that looks at where a pixel lies, not at what it shows:
# the left column is class 1 ('left arm'), the right column class 2 ('right arm').
# float32 roundings of exp, the softmax's sum and division and the mean: a few units each.
RTOL = 16 * 2.0 ** -24
LEFT_RIGHT = torch.tensor([[[[0.0, 0.0]], [[2.0, 0.0]], [[0.0, 2.0]]]])  # 1 x 3 x 1 x 2


def toy_forward(x):
    return [LEFT_RIGHT.expand(1, 3, *x.shape[-2:]).clone()], None


def test_flipped_scores_are_permuted_by_the_flip_pairs():
    image = torch.zeros(1, 3, 1, 2)
    swapped = multi_pass_inference(toy_forward, image,
                                   EvalModes(flip=True, pad_multiple=1, flip_permutation=(0, 2, 1)))
    # By hand: the mirrored pass scores the left pixel [0, 0, 2] (it lay on the right);
    # swapping classes 1 and 2 makes that [0, 2, 0], the same as the plain pass, so the
    # mean of the two softmaxes is the plain pass's softmax: [1, e^2, 1] / (2 + e^2).
    e2 = math.exp(2.0)
    left = torch.tensor([1.0, e2, 1.0]) / (2 + e2)
    expected = torch.stack([left, left[[0, 2, 1]]], dim=-1)[None, :, None]  # 1 x 3 x 1 x 2
    scores = swapped.scores(0)
    assert torch.allclose(scores, expected, rtol=RTOL, atol=0)
    assert scores.argmax(1).tolist() == [[[1, 2]]]

    # Without the pairs, the two passes disagree and classes 1 and 2 tie everywhere.
    plain = multi_pass_inference(toy_forward, image, EvalModes(flip=True, pad_multiple=1))
    tied = plain.scores(0)
    assert torch.allclose(tied[:, 1], tied[:, 2], rtol=RTOL, atol=0)
    assert not torch.allclose(tied[:, 1, :, 0], scores[:, 1, :, 0], rtol=0.1)


@pytest.mark.parametrize('pairs, expected', [([], ()), ([[1, 2]], (0, 2, 1) + tuple(range(3, 19)))])
def test_evaluation_modes_take_the_flip_pairs_of_the_config(pairs, expected):
    cfg = tiny_cfg('ee', 'TEST.FLIP_TEST', True, 'DATASET.FLIP_PAIRS', pairs)
    assert build_eval_modes(cfg).flip_permutation == expected
