"""Scheduled EventBridge rules: `rate()`/`cron()` expressions, the rules API and the scheduler.

A rule's ticks are claimed in the store and turned into asynchronous invocations of its Lambda
targets, in one transaction with the durable async queue (see `scheduler.py`).
"""
