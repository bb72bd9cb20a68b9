"""How a stage cuts its episodes into shards and into chunks kept for a resume (hand-checked)."""

from skillmaster.stages.common import chunk_slices, shard_slices


def test_shards_are_contiguous_and_near_equal():
    assert shard_slices(10, 3) == [range(0, 3), range(3, 7), range(7, 10)]
    assert shard_slices(2, 5) == [range(0, 1), range(1, 2)]  # no empty shard


def test_chunks_hold_at_most_chunk_items():
    assert chunk_slices(384, 128) == [range(0, 128), range(128, 256), range(256, 384)]
    assert chunk_slices(10, 4) == [range(0, 3), range(3, 7), range(7, 10)]  # 3 chunks, near-equal
    assert chunk_slices(10, None) == [range(0, 10)]
    assert chunk_slices(10, 100) == [range(0, 10)]
