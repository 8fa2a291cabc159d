"""Asynchronous invocation: accept events durably, then run them until each ends somewhere.

Modules, in the order an event meets them:

- `dispatcher`: accepts events (committed to the `AsyncQueue` before the caller hears back)
  and wires the parts below; `build_dispatcher` is what the server calls.
- `writer`: group commit of queue writes on one thread.
- `feeder`: leases due events to the workers and keeps the leases alive.
- `runner`: runs one leased event through the engine, the same one synchronous calls use,
  so reserved and account concurrency apply.
- `policy`: decides from the event and what happened whether it runs again and when, or
  takes the failure path (retry attempts, event age, backoff); `recursion` stops chains of
  destination invocations.
- `outcomes` and `records`: which deliveries an outcome owes, in AWS's formats.
- `settlement`: ends the event: acknowledged, sent on (`destinations`, behind the
  `Destinations` protocol), or parked in the queue's `failed` state where `lamina events`
  shows it. Nothing is dropped silently.

Leases are renewed while events run; after a crash they expire and the events run again
(at-least-once, as on AWS).
"""
