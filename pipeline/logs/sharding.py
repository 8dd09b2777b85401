"""Stable id hashing: which shard a user's rows live in, which bucket a session is grouped in.

Python's `hash` is salted per process; Ray tasks need the same answer everywhere, so we use
SplitMix64 (Steele et al., 2014), a cheap bijective mixer, vectorised over uint64.
"""

from __future__ import annotations

import numpy as np

_GOLDEN = 0x9E3779B97F4A7C15
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def splitmix64(ids: np.ndarray, salt: int = 0) -> np.ndarray:
    z = ids.astype(np.int64).view(np.uint64) + np.uint64(_GOLDEN * (salt + 1) % 2**64)
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def shard_of(user_ids: np.ndarray, shards: int) -> np.ndarray:
    """The output shard of each user id: every row of a user lands in the same shard."""
    return (splitmix64(user_ids) % np.uint64(shards)).astype(np.int32)


def bucket_of(session_ids: np.ndarray, buckets: int) -> np.ndarray:
    """The grouping bucket of each session id (salted apart from `shard_of`)."""
    return (splitmix64(session_ids, salt=1) % np.uint64(buckets)).astype(np.int32)
