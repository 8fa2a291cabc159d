"""Event source mapping pollers: what reads a queue, stream or broker and invokes the mapped
function with batches of its records.

`supervisor.PollerSupervisor` runs one poller per Enabled mapping and follows the store:
a created, updated, enabled, disabled or deleted mapping starts, restarts or stops its
poller within a reconcile interval. Each source kind has its own module (`sqs`, `streams`
for Kinesis and DynamoDB Streams, `rabbitmq`) behind the `EventSourcePoller` protocol; they
share the batch invoker (`invoking`), the partial batch response rules (`responses`), the
FilterCriteria filter (`filters`) and per-mapping metrics (`context`).

Nothing is lost across a crash: SQS messages are deleted and RabbitMQ messages acked only
after the invocation that consumed them, and stream checkpoints move only past records that
were processed (or sent to the on-failure destination).
"""
