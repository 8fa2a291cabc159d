"""Bootstraps that run inside an execution environment, and the map from runtime ids to them."""
