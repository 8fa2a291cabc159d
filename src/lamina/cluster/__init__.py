"""Cluster mode: nodes that find each other, route invocations to warm workers, and place
provisioned environments across workers (see docs/cluster.md)."""
