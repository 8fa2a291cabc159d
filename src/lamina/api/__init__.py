"""The thin ASGI layer: routing, (de)serialisation and AWS error shapes. No business logic."""
