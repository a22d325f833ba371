"""RFC 9162 hashing, proofs and verification, against the test vectors of transparency-dev/merkle
(``merkle_vectors.json``: copied verbatim with its provenance) and the RFC 6962 reference tree."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from gdpr_erasure.ledger.merkle import (
    EMPTY_ROOT,
    CompactRange,
    ProofError,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    root_of,
    verify_consistency,
    verify_inclusion,
)

VECTORS = json.loads((Path(__file__).parent / "merkle_vectors.json").read_text())
# The 8 leaves of the RFC 6962 reference tree that the vectors' happy paths are built on.
REFERENCE_LEAVES = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
REFERENCE_ROOTS = {  # RFC 6962 reference roots for each prefix size (transparency-dev/merkle rfc6962 tests)
    1: "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    8: "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
}


def b64(value: str) -> bytes:
    return base64.b64decode(value)


def _decode(values):
    return [b64(v) for v in values or []]


@pytest.mark.parametrize("name", sorted(VECTORS["inclusion"]))
def test_inclusion_vectors(name):
    v = VECTORS["inclusion"][name]
    check = lambda: verify_inclusion(  # noqa: E731
        b64(v["leafHash"]) if v.get("leafHash") else b"",
        v["leafIdx"],
        v["treeSize"],
        _decode(v["proof"]),
        b64(v["root"]) if v.get("root") else b"",
    )
    if v["wantErr"]:
        with pytest.raises(ProofError):
            check()
    else:
        check()


@pytest.mark.parametrize("name", sorted(VECTORS["consistency"]))
def test_consistency_vectors(name):
    v = VECTORS["consistency"][name]
    check = lambda: verify_consistency(  # noqa: E731
        v["size1"],
        v["size2"],
        b64(v["root1"]) if v.get("root1") else b"",
        b64(v["root2"]) if v.get("root2") else b"",
        _decode(v["proof"]),
    )
    if v["wantErr"]:
        with pytest.raises(ProofError):
            check()
    else:
        check()


def test_the_reference_tree_gives_the_reference_roots_and_proofs():
    leaves = [leaf_hash(leaf) for leaf in REFERENCE_LEAVES]
    for size, root in REFERENCE_ROOTS.items():
        assert root_of(leaves[:size]).hex() == root
    assert root_of([]) == EMPTY_ROOT
    # The happy-path vectors were generated from this tree: our proofs are the same bytes.
    for name, v in VECTORS["inclusion"].items():
        if v["desc"] == "happy path":
            assert inclusion_proof(leaves, v["leafIdx"], v["treeSize"]) == _decode(v["proof"]), name
    for name, v in VECTORS["consistency"].items():
        if v["desc"] == "happy path" and v["size1"] > 0:
            assert consistency_proof(leaves, v["size1"], v["size2"]) == _decode(v["proof"]), name


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 8, 9, 16, 17, 31, 64, 100])
def test_every_proof_we_build_verifies_and_a_changed_leaf_fails(size):
    leaves = [leaf_hash(str(i).encode()) for i in range(size)]
    roots = [root_of(leaves[:n]) for n in range(size + 1)]
    for index in range(size):
        verify_inclusion(leaves[index], index, size, inclusion_proof(leaves, index), roots[size])
        with pytest.raises(ProofError):
            verify_inclusion(leaf_hash(b"forged"), index, size, inclusion_proof(leaves, index), roots[size])
    for old in range(1, size + 1):
        verify_consistency(old, size, roots[old], roots[size], consistency_proof(leaves, old, size))
    if size > 1:  # a rewritten first record breaks consistency with every earlier head
        forged = [leaf_hash(b"forged"), *leaves[1:]]
        with pytest.raises(ProofError):
            verify_consistency(1, size, roots[1], root_of(forged), consistency_proof(forged, 1, size))


def test_a_compact_range_restarts_from_stored_peaks():
    leaves = [leaf_hash(str(i).encode()) for i in range(1000)]
    first = CompactRange()
    for leaf in leaves[:613]:
        first.append(leaf)
    resumed = CompactRange(first.size, first.peaks)
    for leaf in leaves[613:]:
        resumed.append(leaf)
    assert resumed.root() == root_of(leaves)
    with pytest.raises(ValueError, match="has 2 peaks"):
        CompactRange(5, first.peaks[:1])
