// What the ingest consumer writes: its batch INSERT and its receipt lines (pure: unit-tested).

/** `R <event_id> <subscriber> <ns>` (common.receipt_line): what the driver feeds to the ledger. */
export function receiptLine(eventId, subscriber, receivedNs) {
  return `R ${eventId} ${subscriber} ${receivedNs}\n`;
}

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** A multi-row INSERT of the batch (glue.py's executemany of the same columns). */
export function insertStatement(table, runId, batch) {
  if (!IDENTIFIER.test(table)) throw new Error(`table name ${JSON.stringify(table)} is not an identifier`);
  const values = [];
  const rows = batch.map(({ inc, raw }) => {
    const at = values.length;
    values.push(runId, inc.eventId, inc.payload.key, raw, inc.payload.sent_ns.toString());
    return `($${at + 1}, $${at + 2}, $${at + 3}, $${at + 4}, $${at + 5})`;
  });
  return { text: `INSERT INTO ${table} (run_id, event_id, key, payload, sent_ns) VALUES ${rows.join(', ')}`, values };
}
