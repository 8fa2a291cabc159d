"""Dataclasses shared by the domain (control/) and the stores (store/)."""
