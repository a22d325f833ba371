"""RFC 9162 (Certificate Transparency v2) Merkle tree hashing, proofs and their verification.

* leaf hash ``SHA-256(0x00 || leaf)``, node hash ``SHA-256(0x01 || left || right)``, the empty
  tree ``SHA-256()`` (RFC 9162 section 2.1.1);
* :class:`CompactRange` appends leaves in O(log n) and gives the root at any time, so a new
  tree head costs only the records appended since the last one;
* :func:`inclusion_proof` / :func:`consistency_proof` build the proofs of sections 2.1.3.1 and
  2.1.4.1 from the leaf hashes; :func:`verify_inclusion` / :func:`verify_consistency` are the
  verification algorithms of sections 2.1.3.2 and 2.1.4.2, checked against the test vectors of
  transparency-dev/merkle (tests/ledger).

Why not pymerkle (7.0): its hashing matches RFC 9162, but its proofs are its own format (the
leaf inside the path, plus "rule" and "subset" bit lists), so a receipt could only be checked
with pymerkle, not with any RFC 9162 verifier; the verifiers are the part we need to own anyway
and are a few lines each.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

HASH_SIZE = 32


class ProofError(ValueError):
    """A proof does not verify (or is malformed); the message says what is wrong."""


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


EMPTY_ROOT = hashlib.sha256(b"").digest()


class CompactRange:
    """The roots of the perfect subtrees covering leaves ``[0, size)``, largest first: enough
    to append a leaf and to compute the root without the leaves themselves.

    :param size: leaves already covered (with ``peaks``, from a stored head).
    :param peaks: their subtree roots, largest first.
    """

    def __init__(self, size: int = 0, peaks: Sequence[bytes] = ()) -> None:
        if len(peaks) != bin(size).count("1"):
            raise ValueError(f"a tree of {size} leaves has {bin(size).count('1')} peaks, not {len(peaks)}")
        self.size = size
        self.peaks = list(peaks)

    def append(self, hashed_leaf: bytes) -> None:
        node, size = hashed_leaf, self.size
        # Each trailing 1 bit of size is a peak of equal height to merge with, like binary carry.
        while size & 1:
            node = node_hash(self.peaks.pop(), node)
            size >>= 1
        self.peaks.append(node)
        self.size += 1

    def root(self) -> bytes:
        if not self.peaks:
            return EMPTY_ROOT
        node = self.peaks[-1]
        for peak in reversed(self.peaks[:-1]):
            node = node_hash(peak, node)
        return node


def root_of(leaves: Sequence[bytes]) -> bytes:
    """MTH of hashed leaves (RFC 9162 2.1.1), through a compact range."""
    compact = CompactRange()
    for leaf in leaves:
        compact.append(leaf)
    return compact.root()


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


class _Subtrees:
    """MTH of any range of hashed leaves, memoised: proofs ask for the same subtrees again."""

    def __init__(self, leaves: Sequence[bytes]) -> None:
        self.leaves = leaves
        self.cache: dict[tuple[int, int], bytes] = {}

    def __call__(self, start: int, end: int) -> bytes:
        if end - start == 1:
            return self.leaves[start]
        key = (start, end)
        if key not in self.cache:
            k = _split(end - start)
            self.cache[key] = node_hash(self(start, start + k), self(start + k, end))
        return self.cache[key]


def inclusion_proof(leaves: Sequence[bytes], index: int, size: int | None = None) -> list[bytes]:
    """PATH(index, D[0:size]) of RFC 9162 2.1.3.1: the audit path of leaf ``index``."""
    size = len(leaves) if size is None else size
    if not 0 <= index < size <= len(leaves):
        raise ValueError(f"no leaf {index} in a tree of {size}")
    mth = _Subtrees(leaves)
    path: list[bytes] = []

    def walk(start: int, end: int, m: int) -> None:
        if end - start == 1:
            return
        k = _split(end - start)
        if m < k:
            walk(start, start + k, m)
            path.append(mth(start + k, end))
        else:
            walk(start + k, end, m - k)
            path.append(mth(start, start + k))

    walk(0, size, index)
    return path


def consistency_proof(leaves: Sequence[bytes], old_size: int, new_size: int | None = None) -> list[bytes]:
    """PROOF(old_size, D[0:new_size]) of RFC 9162 2.1.4.1 (empty when the sizes are equal)."""
    new_size = len(leaves) if new_size is None else new_size
    if not 0 < old_size <= new_size <= len(leaves):
        raise ValueError(f"no consistency proof from {old_size} to {new_size}")
    if old_size == new_size:
        return []
    mth = _Subtrees(leaves)
    proof: list[bytes] = []

    def subproof(m: int, start: int, end: int, complete: bool) -> None:
        n = end - start
        if m == n:
            if not complete:
                proof.append(mth(start, end))
            return
        k = _split(n)
        if m <= k:
            subproof(m, start, start + k, complete)
            proof.append(mth(start + k, end))
        else:
            subproof(m - k, start + k, end, False)
            proof.append(mth(start, start + k))

    subproof(old_size, 0, new_size, True)
    return proof


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> None:
    """RFC 9162 2.1.3.2: raise :class:`ProofError` unless ``proof`` shows the hashed ``leaf`` at
    ``index`` in the tree of ``size`` leaves whose root is ``root``."""
    if index >= size or index < 0:
        raise ProofError(f"leaf index {index} is outside a tree of {size}")
    _check_hashes([leaf, root, *proof])
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise ProofError("the proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("the proof is shorter than the tree is deep")
    if r != root:
        raise ProofError("the proof does not lead to the head's root: the record is not in that tree")


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """RFC 9162 2.1.4.2: raise :class:`ProofError` unless the tree of ``new_size`` leaves with
    ``new_root`` extends the tree of ``old_size`` with ``old_root`` (nothing removed or changed)."""
    _check_hashes(proof)
    if old_size > new_size:
        raise ProofError(f"the older head ({old_size}) is larger than the newer ({new_size})")
    if old_size == 0:
        raise ProofError("a consistency proof from the empty tree is meaningless")
    if old_size == new_size:
        if proof:
            raise ProofError("two heads of the same size need an empty proof")
        if old_root != new_root:
            raise ProofError(f"two different roots for the same size {old_size}: the log forked")
        return
    if not proof:
        raise ProofError("an empty proof cannot show consistency")
    _check_hashes([old_root, new_root])
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # a power of two: the old root is the first node
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("the proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("the proof is shorter than the tree is deep")
    if fr != old_root:
        raise ProofError("the proof does not lead to the older head's root: the log was rewritten")
    if sr != new_root:
        raise ProofError("the proof does not lead to the newer head's root")


def _check_hashes(values: Sequence[bytes]) -> None:
    if any(not isinstance(v, bytes) or len(v) != HASH_SIZE for v in values):
        raise ProofError(f"every hash must be {HASH_SIZE} bytes")
