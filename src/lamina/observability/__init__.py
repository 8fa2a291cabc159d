"""Logs, metrics, traces and billing, fed by lifecycle events from invoke/ and sandbox/."""
