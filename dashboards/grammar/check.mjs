// Reads [{"language": "traceql"|"promql", "query": "..."}] on stdin and writes, for each,
// {"ok": bool, "errors": [offset, ...], "strict": "message or null"} to stdout (same order).
// Lezer recovers from syntax errors by inserting error nodes; strict mode throws instead.
// Both are reported so a grammar that recovers silently cannot hide a mistake.
import { parser as traceql } from "@grafana/lezer-traceql";
import { parser as promql } from "@prometheus-io/lezer-promql";

const parsers = { traceql, promql };

function check(language, query) {
  const parser = parsers[language];
  if (!parser) return { ok: false, errors: [], strict: `unknown language ${language}` };
  const errors = [];
  parser.parse(query).iterate({
    enter: (node) => {
      if (node.type.isError) errors.push(node.from);
    },
  });
  let strict = null;
  try {
    parser.configure({ strict: true }).parse(query);
  } catch (err) {
    strict = String(err.message);
  }
  return { ok: errors.length === 0 && strict === null, errors, strict };
}

let input = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => (input += chunk));
process.stdin.on("end", () => {
  const items = JSON.parse(input);
  process.stdout.write(JSON.stringify(items.map((it) => check(it.language, it.query))));
});
