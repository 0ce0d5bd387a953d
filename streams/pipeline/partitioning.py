"""Which partition a key lives in, computed the way Kafka's default partitioner does.

Facts, re-keyed chat and table changelogs are all sent with an explicit partition from here, so
that state always sits in the same partition number as the stream that feeds it, whatever the
client library or the event being processed at the time.

`murmur2` is Kafka's (org.apache.kafka.common.utils.Utils.murmur2), as aiokafka and
kafka-python implement it; kept here so the runtime needs no Kafka client (only the Faust
adapter imports aiokafka). tests/pipeline/test_partitioning.py checks it against aiokafka's.
"""

from __future__ import annotations

from functools import lru_cache

_SEED = 0x9747B28C
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's 32-bit MurmurHash2 of `data` (unsigned)."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    for i in range(0, length - length % 4, 4):
        k = data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24)
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    rest = length % 4
    tail = length & ~3
    if rest >= 3:
        h ^= data[tail + 2] << 16
    if rest >= 2:
        h ^= data[tail + 1] << 8
    if rest >= 1:
        h ^= data[tail]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


@lru_cache(maxsize=1 << 17)
def partition_of(key: bytes, partitions: int) -> int:
    """murmur2(key) mod partitions, as Java, kafka-python and aiokafka producers compute it.

    Cached: the same conversation and agent keys come back batch after batch, and murmur2 is
    pure Python (~10 µs); 131,072 recent keys cost ~20 MB at most.
    """
    return (murmur2(key) & 0x7FFFFFFF) % partitions
