"""The promotion decision: judge a candidate against the champion, the gate, the model card,
the recorded decision and the promote/rollback operations."""
