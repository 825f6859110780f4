"""Training batches: HF's random sampler by default (``training.group_by_length: false``); length-grouped
batches (little padding on a long epoch, random enough on a short one) when asked."""

from __future__ import annotations

import numpy as np

from lmtune.training.batches import group_size, train_batches


def _padding(lengths: np.ndarray, batches: list[np.ndarray]) -> int:
    return int(sum(lengths[b].max() * len(b) - lengths[b].sum() for b in batches))


def test_every_row_once_and_the_same_batches_for_the_same_seed_and_epoch() -> None:
    lengths = np.random.default_rng(1).integers(1, 64, size=203)
    a = train_batches(lengths, 8, seed=3, epoch=1, by_length=True)
    assert sorted(np.concatenate(a).tolist()) == list(range(203))
    again = train_batches(lengths, 8, seed=3, epoch=1, by_length=True)
    assert all((x == y).all() for x, y in zip(a, again, strict=True))
    assert not all(len(x) == len(y) and (x == y).all()
                   for x, y in zip(a, train_batches(lengths, 8, seed=3, epoch=2, by_length=True), strict=False))


def test_a_short_epoch_is_not_cut_into_length_bands() -> None:
    # 64 rows in batches of 8: one window over the whole epoch (the old rule) made each batch one eighth
    # of the length range; windows of a quarter of the epoch keep each batch a draw from 16 random rows.
    lengths = np.arange(1, 65)
    assert group_size(64, 8) == 2
    windows = train_batches(lengths, 8, seed=0, epoch=0, by_length=True)
    spans = [int(lengths[b].max() - lengths[b].min()) for b in windows]
    one_window = train_batches(lengths, 8, seed=0, epoch=0, by_length=True, group=50)
    banded = [int(lengths[b].max() - lengths[b].min()) for b in one_window]
    assert banded == [7] * 8
    assert np.mean(spans) > 20


def test_a_long_epoch_still_pads_far_less_than_random_batches() -> None:
    lengths = np.random.default_rng(0).integers(4, 64, size=6400)
    assert group_size(6400, 32) == 50
    grouped = _padding(lengths, train_batches(lengths, 32, seed=0, epoch=0, by_length=True))
    perm = np.random.default_rng(0).permutation(6400)
    shuffled = _padding(lengths, [perm[i:i + 32] for i in range(0, 6400, 32)])
    assert grouped < shuffled / 10


def test_the_default_order_is_one_shuffle_cut_in_slices_as_hfs_random_sampler() -> None:
    lengths = np.random.default_rng(2).integers(1, 64, size=203)
    batches = train_batches(lengths, 8, seed=5, epoch=0, by_length=False)
    order = np.random.default_rng([5, 0]).permutation(203)
    assert [b.tolist() for b in batches] == [order[i:i + 8].tolist() for i in range(0, 203, 8)]
    assert len(batches[-1]) == 203 % 8  # the last batch is partial, as HF keeps it (drop_last off)
    grouped = train_batches(lengths, 8, seed=5, epoch=0, by_length=True)
    assert _padding(lengths, grouped) < _padding(lengths, batches)
