"""The audit ledger's evidence against whoever controls the database: a Merkle tree over the
records (RFC 9162), signed tree heads, and their copies published to a witness."""
