"""`partition_of` must agree with the Kafka clients' partitioner, byte for byte: state and the
stream that feeds it are placed by it, and producers outside the worker use the clients'."""

from __future__ import annotations

from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from hypothesis import given
from hypothesis import strategies as st
from kafka.partitioner.default import murmur2 as kafka_murmur2

from streams.pipeline.partitioning import murmur2, partition_of


@given(st.binary(max_size=64))
def test_murmur2_is_aiokafkas_and_kafka_pythons(data: bytes) -> None:
    assert murmur2(data) == aiokafka_murmur2(data) == kafka_murmur2(data)


def test_known_partitions() -> None:
    # The hash of no bytes is the seed mixed with length 0; partitions as the clients pick them.
    assert murmur2(b"") == 275646681
    assert [partition_of(k, 8) for k in (b"a", b"shop-1:buyer-1", "店铺:买家".encode())] == [
        (aiokafka_murmur2(k) & 0x7FFFFFFF) % 8 for k in (b"a", b"shop-1:buyer-1",
                                                         "店铺:买家".encode())
    ]
