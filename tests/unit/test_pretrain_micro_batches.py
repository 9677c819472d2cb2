"""Length-grouped micro-batches of the world's pretraining: less padding, the same gradient."""

import itertools
import random

import pytest
import torch

from powerflow.world.config import PretrainConfig
from powerflow.world.pretrain import accumulated_loss, build_base_model, language_model_loss, length_groups


def padded_cost(lengths, groups, overhead):
    return sum(len(g) * max(lengths[i] for i in g) + overhead for g in groups)


def brute_force_cost(lengths, max_groups, overhead):
    ordered = sorted(lengths)
    n, best = len(ordered), float("inf")
    for g in range(1, max_groups + 1):
        for cuts in itertools.combinations(range(1, n), g - 1):
            bounds = (0, *cuts, n)
            best = min(best, sum((b - a) * ordered[b - 1] + overhead for a, b in zip(bounds, bounds[1:])))
    return best


@pytest.mark.parametrize("seed", range(5))
def test_groups_hold_every_document_once_at_the_least_padding(seed):
    rng = random.Random(seed)
    lengths = [rng.choice([6, 9, 14, 23, 31, 45, 67]) for _ in range(10)]
    for max_groups, overhead in ((1, 0), (3, 0), (3, 20), (4, 128)):
        groups = length_groups(lengths, max_groups, overhead)
        assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
        assert 1 <= len(groups) <= max_groups
        assert padded_cost(lengths, groups, overhead) == brute_force_cost(lengths, max_groups, overhead)


def test_one_length_is_one_group_and_a_long_tail_is_split_off():
    assert length_groups([9] * 64, 4) == [list(range(64))]
    lengths = [20] * 45 + [60] * 19
    groups = length_groups(lengths, 4)
    assert sorted(len(g) for g in groups) == [19, 45]  # 45·20 + 19·60 + 2·128 < 64·60 + 128


def test_micro_batches_give_the_gradient_of_one_pass():
    cfg = PretrainConfig(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32)
    model = build_base_model(30, cfg, eos_token_id=0, pad_token_id=0)
    gen = torch.Generator().manual_seed(0)
    lengths = [3, 12, 5, 4, 6, 7] * 8 + [20, 19] * 4  # 56 documents, a long tail worth its own pass
    ids = torch.randint(1, 30, (len(lengths), 20), generator=gen)
    mask = torch.zeros_like(ids)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
        ids[i, n:] = 0

    def gradient(micro_batches):
        model.zero_grad(set_to_none=True)
        loss = accumulated_loss(model, ids, mask, tokens_per_document=9.0, micro_batches=micro_batches)
        return float(loss), torch.cat([p.grad.flatten() for p in model.parameters()])

    one_loss, one = gradient(1)
    split_loss, split = gradient(4)
    assert len(length_groups(lengths, 4)) > 1  # the batch was split
    assert split_loss == pytest.approx(one_loss, rel=1e-5)
    assert float(language_model_loss(model, ids, mask, 9.0)) == pytest.approx(one_loss, rel=1e-6)
    assert torch.allclose(split, one, rtol=1e-4, atol=1e-7)
