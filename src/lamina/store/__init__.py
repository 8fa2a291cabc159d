"""Persistence behind narrow protocols; nothing above this package writes SQL."""
