"""Events that trigger functions: the EventBridge pattern engine (shared by rules and
event-source-mapping filters) and, later, one poller module per event source kind."""
