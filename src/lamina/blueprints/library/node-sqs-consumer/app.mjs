// An SQS consumer that reports failed messages one by one (partial batch response).
//
// With `ReportBatchItemFailures` on the event source mapping, the messages listed in
// `batchItemFailures` go back to the queue and the others are deleted; an empty list means
// the whole batch succeeded. Throwing instead would return every message of the batch.

const processRecord = (record) => {
  const message = JSON.parse(record.body);
  if (message === null || typeof message !== "object" || Array.isArray(message)) {
    throw new Error("the body is not a JSON object");
  }
  console.log(`message ${record.messageId}: ${JSON.stringify(message)}`);
};

export const handler = async (event) => {
  const batchItemFailures = [];
  for (const record of event.Records) {
    try {
      processRecord(record);
    } catch (error) {
      console.log(`message ${record.messageId} failed: ${error.message}`);
      batchItemFailures.push({ itemIdentifier: record.messageId });
    }
  }
  console.log(`processed ${event.Records.length - batchItemFailures.length} of ${event.Records.length}`);
  return { batchItemFailures };
};
