import pytest
import torch

from moss_components.data.length_buckets import LengthBucketBatchSampler, padded_fill


def _lengths(n=203, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (0.6 + 3.0 * torch.rand(n, generator=g) ** 2).tolist()  # skewed like read speech: many short clips


def test_each_index_once_per_epoch_in_batches_of_batch_size():
    lengths = _lengths()
    sampler = LengthBucketBatchSampler(lengths, batch_size=16, bucket_batches=4)
    for _ in range(3):
        batches = list(sampler)
        assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
        assert len(batches) == len(sampler) == 13  # ceil(203 / 16)
        assert sorted(len(b) for b in batches)[1:] == [16] * 12  # one short batch: 203 = 12 x 16 + 11


def test_buckets_pad_less_than_random_batches_and_more_with_bigger_pools():
    lengths = _lengths()
    torch.manual_seed(0)
    fills = [padded_fill(lengths, list(LengthBucketBatchSampler(lengths, 16, k))) for k in (1, 4, 13)]
    # one batch per pool is random batching; one pool of all 13 batches is fully sorted
    assert fills[0] < 0.75 < fills[1] < fills[2]
    assert fills[2] == pytest.approx(padded_fill(lengths, list(LengthBucketBatchSampler(lengths, 16, shuffle=False))))


def test_padded_fill_is_audio_over_padded_area():
    assert padded_fill([1.0, 3.0, 2.0, 2.0], [[0, 1], [2, 3]]) == pytest.approx((4 + 4) / (2 * 3 + 2 * 2))


def test_epochs_differ_and_repeat_under_the_same_seed():
    lengths = _lengths()
    torch.manual_seed(1)
    first = [list(LengthBucketBatchSampler(lengths, 16, 4)) for _ in range(2)]
    torch.manual_seed(1)
    again = [list(LengthBucketBatchSampler(lengths, 16, 4)) for _ in range(2)]
    assert first == again and first[0] != first[1]


def test_short_first_epoch_goes_from_short_to_long_then_shuffles():
    lengths = _lengths()
    sampler = LengthBucketBatchSampler(lengths, 16, 4, short_first_epoch=True)
    longest = [max(lengths[i] for i in b) for b in sampler]
    assert longest == sorted(longest)
    later = [max(lengths[i] for i in b) for b in sampler]
    assert later != sorted(later)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"batch_size": 0}, "batch_size 0 must be >= 1"),
        ({"bucket_batches": 0}, "bucket_batches 0 must be >= 1"),
        ({"lengths": [1.0, float("nan")]}, "length of item 1 is nan"),
        ({"lengths": [1.0, -2.0]}, "length of item 1 is -2.0"),
    ],
)
def test_bad_arguments(kwargs, match):
    args = {"lengths": [1.0, 2.0], "batch_size": 2, **kwargs}
    with pytest.raises(ValueError, match=match):
        LengthBucketBatchSampler(**args)
