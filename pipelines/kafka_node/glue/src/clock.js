// Unix time in BigInt nanoseconds, comparable with Python's time.time_ns() in the bench process
// (the subscribers stamp receipts with it, and the hops between their spans and ours are gaps).
//
// Node has no nanosecond wall clock: Date.now() is whole milliseconds, and anchoring the
// monotonic clock to it once would be off by up to 1 ms. So the anchor is taken at the
// instant Date.now() ticks over to the next millisecond, seen between two monotonic reads.
// A process preempted between those reads (a busy host, at start) would misplace the tick by
// as much as it was held up: the narrowest of several tries is kept (each a wait of <= 1 ms).

/** One tick: [offset ns, width of the monotonic window the tick fell in, ns]. */
function tick() {
  const first = Date.now();
  let before;
  let ms;
  let after = process.hrtime.bigint();
  do {
    before = after;
    ms = Date.now();
    after = process.hrtime.bigint();
  } while (ms === first);
  return [BigInt(ms) * 1_000_000n - (before + after) / 2n, after - before];
}

export function calibrate(tries = 20, goodEnoughNs = 2_000n) {
  let best = tick();
  for (let i = 1; i < tries && best[1] > goodEnoughNs; i += 1) {
    const t = tick();
    if (t[1] < best[1]) best = t;
  }
  return best;
}

const [OFFSET_NS, WINDOW_NS] = calibrate();
/** How far off the anchor may be (ns): half the window its tick was seen in. */
export const CLOCK_UNCERTAINTY_NS = WINDOW_NS / 2n;

export function nowNs() {
  return process.hrtime.bigint() + OFFSET_NS;
}

/** OTel's HrTime ([seconds, nanoseconds]) of a BigInt ns time, exactly. */
export function hrTime(ns) {
  return [Number(ns / 1_000_000_000n), Number(ns % 1_000_000_000n)];
}
