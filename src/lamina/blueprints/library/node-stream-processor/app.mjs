// A stream processor for Kinesis and DynamoDB Streams, with partial batch responses.
//
// Records of a shard must be handled in order, so the function stops at the first record
// that fails and reports its sequence number in `batchItemFailures`: Lambda then checkpoints
// before it and retries from there. An empty list means the whole batch succeeded.

const sequenceNumber = (record) =>
  record.eventSource === "aws:kinesis" ? record.kinesis.sequenceNumber : record.dynamodb.SequenceNumber;

const processRecord = (record) => {
  if (record.eventSource === "aws:kinesis") {
    const data = JSON.parse(Buffer.from(record.kinesis.data, "base64").toString("utf8"));
    console.log(`kinesis ${record.kinesis.partitionKey}: ${JSON.stringify(data)}`);
  } else {
    const change = record.dynamodb;
    if (!change.Keys) throw new Error("the record names no item (no Keys)");
    console.log(`dynamodb ${record.eventName} ${JSON.stringify(change.Keys)}: ${JSON.stringify(change.NewImage)}`);
  }
};

export const handler = async (event) => {
  let handled = 0;
  for (const record of event.Records) {
    try {
      processRecord(record);
    } catch (error) {
      const sequence = sequenceNumber(record);
      console.log(`record ${sequence} failed: ${error.message}`);
      return { batchItemFailures: [{ itemIdentifier: sequence }], handled };
    }
    handled += 1;
  }
  console.log(`handled ${handled} records`);
  return { batchItemFailures: [], handled };
};
