// A scheduled job: EventBridge invokes it with a `Scheduled Event` on every tick.
//
// The event's `time` is the tick the rule fired for (not when the function started), and its
// one resource is the rule's ARN. Make the work idempotent: a tick may be delivered twice.

export const handler = async (event) => {
  const rule = event.resources && event.resources.length ? event.resources[0] : null;
  console.log(`tick ${event.time} of ${rule}`);
  return { job: "done", scheduledFor: event.time, rule };
};
