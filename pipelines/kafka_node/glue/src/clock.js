// Unix time in BigInt nanoseconds, comparable with Python's time.time_ns() in the bench process
// (the subscribers stamp receipts with it, and the hops between their spans and ours are gaps).
//
// Node has no nanosecond wall clock: Date.now() is whole milliseconds, and anchoring the
// monotonic clock to it once would be off by up to 1 ms. So the anchor is taken at the
// instant Date.now() ticks over to the next millisecond (a busy wait of at most 1 ms at start).

function calibrate() {
  const first = Date.now();
  let before;
  let ms;
  let after = process.hrtime.bigint();
  do {
    before = after;
    ms = Date.now();
    after = process.hrtime.bigint();
  } while (ms === first);
  // the tick happened between `before` and `after` (well under a microsecond apart)
  return BigInt(ms) * 1_000_000n - (before + after) / 2n;
}

const OFFSET_NS = calibrate();

export function nowNs() {
  return process.hrtime.bigint() + OFFSET_NS;
}

/** OTel's HrTime ([seconds, nanoseconds]) of a BigInt ns time, exactly. */
export function hrTime(ns) {
  return [Number(ns / 1_000_000_000n), Number(ns % 1_000_000_000n)];
}
