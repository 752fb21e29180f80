"""The inline-threshold decision: small payloads travel inline, large ones as a `BlobRef`."""

from __future__ import annotations

from cmo_server.blob._protocol import BlobRef, BlobStore

__all__ = ["offload", "resolve", "should_offload"]


def should_offload(size: int, *, threshold: int) -> bool:
    """Whether a payload of `size` bytes goes to the blob store: only when it is above `threshold`.

    A payload of exactly `threshold` bytes stays inline; `threshold=0` offloads everything but
    empty payloads.

    Raises:
        ValueError: `threshold` or `size` is negative.
    """
    if threshold < 0:
        raise ValueError(f"inline threshold must be >= 0, got {threshold}")
    if size < 0:
        raise ValueError(f"payload size must be >= 0, got {size}")
    return size > threshold


async def offload(data: bytes, store: BlobStore, *, threshold: int) -> bytes | BlobRef:
    """`data` itself if it is small enough to keep inline, else the ref of its copy in `store`.

    Raises:
        ValueError: `threshold` is negative.
    """
    if should_offload(len(data), threshold=threshold):
        return await store.put(data)
    return data


async def resolve(payload: bytes | BlobRef, store: BlobStore) -> bytes:
    """The bytes of a payload `offload` returned: inline bytes as they are, a ref read (verified) from `store`.

    Raises:
        BlobNotFound: the ref's blob is not in `store`.
        BlobCorrupted: the stored copy does not match the ref.
    """
    if isinstance(payload, BlobRef):
        return await store.get(payload)
    return payload
