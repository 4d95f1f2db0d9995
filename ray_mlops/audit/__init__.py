"""The audit trail: an append-only, hash-chained log of every state-changing action."""
