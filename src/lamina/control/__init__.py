"""The domain: functions, versions, aliases, layers, policies and their rules.

Nothing here knows about HTTP or SQL.
"""
