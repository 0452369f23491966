"""CPU cost of one Harper REST write, per node, on the running 3-node cluster.

Writes `--writes` records one after another (closed loop, so nothing queues) to node 1's
`Notify` resource in four variants — plain, with replica confirmation, traced, traced with
confirmation — and prints, side by side, the wall time per write and the CPU milliseconds
each node's process spent per write (from /proc, idle baseline subtracted). The product
of the cluster's CPU per write and a rate is the share of the host's cores a workload takes
before anything queues: the profiles' rates are chosen from it.

Needs the deployed cluster (`hopscope up --only harper`); it deploys the Harper stack's
component the way the stack's driver does (idempotent):

    .venv/bin/python benchmarks/harper_write_cost.py [--writes 300]
"""

from __future__ import annotations

import argparse
import os
import time
import uuid
from pathlib import Path

import httpx
import orjson
from rich.console import Console
from rich.table import Table

from hopscope.deploy.base import Context
from hopscope.deploy.config import load_config
from hopscope.deploy.services.harper import Harper
from hopscope.pipelines.harper.component_deploy import ensure_deployed

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
TICK_MS = 1000 / os.sysconf("SC_CLK_TCK")


def cpu_ms(pids: list[int]) -> list[float]:
    out = []
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        out.append((int(fields[11]) + int(fields[12])) * TICK_MS)  # utime + stime
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--writes", type=int, default=300)
    ap.add_argument("--payload-bytes", type=int, default=256)
    args = ap.parse_args()

    harper = Harper(Context(load_config()))
    client = harper.client()
    procs = harper.processes()
    if len(procs) != len(client.nodes) or not all(p.alive and p.pid for p in procs):
        raise SystemExit("the Harper cluster is not running: `hopscope up --only harper` first")
    pids = [int(p.pid) for p in procs]  # type: ignore[arg-type]
    ensure_deployed(harper)  # the `Notify` resource is the Harper stack's component

    # idle baseline: what the nodes burn with no request at all (replication heartbeats, analytics)
    before = cpu_ms(pids)
    time.sleep(3.0)
    idle_per_s = [(b - a) / 3.0 for a, b in zip(before, cpu_ms(pids), strict=True)]

    variants = {
        "plain": {},
        "confirm=1": client.confirm_headers(1),
        "traced": {"traceparent": TRACEPARENT},
        "traced + confirm=1": {"traceparent": TRACEPARENT, **client.confirm_headers(1)},
    }
    body = orjson.dumps(
        {
            "key": "k",
            "runId": "harper-write-cost",
            "workload": "write_notify",
            "payload": "x" * args.payload_bytes,
        }
    )
    table = Table(title=f"Harper REST write cost ({args.writes} sequential writes to node 1 per variant)")
    for col in ("variant", "wall ms/write", *(f"CPU ms/write {n.name}" for n in client.nodes), "cluster CPU ms/write",
                "writes/s per core"):  # fmt: skip
        table.add_column(col, justify="right")
    headers = {**client.auth_headers(), "content-type": "application/json"}
    url = f"{client.node(1).rest_url}/Notify"
    with httpx.Client(headers=headers, timeout=30) as http:
        for label, extra in variants.items():
            t0, w0 = cpu_ms(pids), time.perf_counter()
            for _ in range(args.writes):
                resp = http.put(f"{url}/cost-{uuid.uuid4().hex}", content=body, headers=extra)
                if resp.status_code >= 300:
                    raise SystemExit(f"{label}: HTTP {resp.status_code}: {resp.text[:300]}")
            wall = time.perf_counter() - w0
            time.sleep(1.0)  # replicas finish applying what was sent last
            spent = [b - a for a, b in zip(t0, cpu_ms(pids), strict=True)]
            per_node = [
                (s - idle * (wall + 1.0)) / args.writes for s, idle in zip(spent, idle_per_s, strict=True)
            ]
            cluster = sum(per_node)
            table.add_row(
                label,
                f"{wall * 1000 / args.writes:.2f}",
                *(f"{v:.2f}" for v in per_node),
                f"{cluster:.2f}",
                f"{1000 / cluster:.0f}" if cluster > 0 else "–",
            )
    console = Console(width=150)
    console.print(table)
    console.print(
        f"idle CPU per node (ms/s): {', '.join(f'{v:.1f}' for v in idle_per_s)}; host cores: {os.cpu_count()}"
    )


if __name__ == "__main__":
    main()
