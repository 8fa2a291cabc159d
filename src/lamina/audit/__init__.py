"""The audit trail: who called which control-plane operation, when, and what came of it."""
