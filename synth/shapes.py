"""The built-in stack × workload shapes: a realistic mimic of the four workloads on both stacks."""

from __future__ import annotations

from .model import Dist, Fanout, PairSpec, Step


def _ln(median: float, sigma: float) -> Dist:
    return Dist("lognormal", median_ms=median, sigma=sigma)


def _spiky(base: Dist, p: float, spike: Dist) -> Dist:
    return Dist("mixture", base=base, spike=spike, spike_p=p)


def default_pairs() -> list[PairSpec]:
    """A realistic mimic of the four workloads on both stacks (Kafka: more hops, heavier tail)."""
    S, W, D, R = "span", "wait", "derived", "rpc"

    def st(
        type_: str,
        hop: str = "",
        service: str = "",
        kind: str = "INTERNAL",
        dist: Dist | None = None,
        **kw: object,
    ) -> Step:
        return Step(type=type_, hop=hop, service=service, kind=kind, dist=dist or Dist(), **kw)  # type: ignore[arg-type]

    def rpc(hop: str, svc: str, dist: Dist, server_hop: str, server_svc: str, server_dist: Dist) -> Step:
        """A CLIENT request step with its server span (load 0.2)."""
        return st(
            R,
            hop,
            svc,
            "CLIENT",
            dist,
            server_hop=server_hop,
            server_service=server_svc,
            server_dist=server_dist,
            load=0.2,
        )

    def sub_branch(hop: str, svc: str, wait: Dist) -> list[Step]:
        return [st(W, dist=wait), st(S, hop, svc, "CONSUMER", _ln(0.08, 0.3))]

    kafka_fetch = _spiky(_ln(1.5, 0.6), 0.01, _ln(40.0, 0.4))  # consumer fetch / poll
    # the client's REST write and, inside it, the node's commit
    harper_put = rpc(
        "http.put", "harper.client", _ln(0.4, 0.3), "harper.commit", "harper.node1", _ln(1.2, 0.4)
    )
    debezium_poll = _spiky(Dist("exponential", mean_ms=4.0), 0.02, _ln(80.0, 0.3))
    pairs = [
        PairSpec(
            "kafka",
            "write_notify",
            [
                rpc("pg.insert", "kafka.writer", _ln(0.3, 0.3), "pg.commit", "postgres", _ln(1.5, 0.4)),
                st(W, dist=debezium_poll),
                st(D, "debezium.capture", "debezium", "INTERNAL", Dist("constant", value_ms=0.5)),
                st(S, "kafka.produce", "debezium", "PRODUCER", _ln(2.0, 0.5), load=0.3),
                st(W, dist=kafka_fetch),
                st(S, "notifier.consume", "kafka.notifier", "CONSUMER", _ln(0.4, 0.3)),
                st(S, "redis.publish", "kafka.notifier", "PRODUCER", _ln(0.3, 0.3)),
            ],
            Fanout(
                1, 1.0, sub_branch("subscriber.receive", "kafka.subscriber", Dist("exponential", mean_ms=0.2))
            ),
        ),
        PairSpec(
            "harper",
            "write_notify",
            [
                harper_put,
                st(W, dist=Dist("exponential", mean_ms=0.3)),
                st(S, "harper.publish", "harper.node1", "PRODUCER", _ln(0.2, 0.3)),
            ],
            Fanout(
                1,
                1.0,
                sub_branch(
                    "subscriber.receive", "harper.subscriber", _spiky(_ln(0.5, 0.5), 0.005, _ln(10.0, 0.3))
                ),
            ),
        ),
        PairSpec(
            "kafka",
            "fanout",
            [
                st(S, "kafka.produce", "loadgen", "PRODUCER", _ln(2.0, 0.5), load=0.3),
                st(W, dist=kafka_fetch),
                st(S, "router.consume", "kafka.router", "CONSUMER", _ln(0.3, 0.3)),
                st(S, "router.filter", "kafka.router", "INTERNAL", _ln(0.4, 0.4)),
            ],
            Fanout(
                4,
                0.5,
                [
                    st(S, "redis.publish", "kafka.router", "PRODUCER", _ln(0.2, 0.3)),
                    *sub_branch("subscriber.receive", "kafka.subscriber", Dist("exponential", mean_ms=0.25)),
                ],
            ),
        ),
        PairSpec(
            "harper",
            "fanout",
            [
                st(S, "mqtt.publish", "loadgen", "PRODUCER", _ln(0.5, 0.4), load=0.3),
                st(W, dist=Dist("exponential", mean_ms=0.2)),
                st(S, "harper.route", "harper.node1", "INTERNAL", _ln(0.6, 0.4)),
            ],
            Fanout(4, 0.5, sub_branch("subscriber.receive", "harper.subscriber", _ln(0.4, 0.5))),
        ),
        PairSpec(
            "kafka",
            "aggregate",
            [
                st(S, "kafka.produce", "loadgen", "PRODUCER", _ln(2.0, 0.5), load=0.3),
                st(W, dist=_ln(5.0, 0.7)),
                st(S, "streams.aggregate", "kafka.streams", "CONSUMER", _ln(0.5, 0.4)),
                st(S, "streams.changelog", "kafka.streams", "PRODUCER", _ln(2.0, 0.5), load=0.3),
            ],
            Fanout(
                1,
                1.0,
                [
                    st(W, dist=Dist("exponential", mean_ms=10.0)),
                    st(S, "dashboard.read", "dashboard", "CONSUMER", _ln(0.8, 0.4)),
                ],
            ),
        ),
        PairSpec(
            "harper",
            "aggregate",
            [
                harper_put,
                st(S, "component.aggregate", "harper.node1", "INTERNAL", _ln(0.5, 0.4)),
            ],
            Fanout(
                1,
                1.0,
                [
                    st(W, dist=_ln(0.6, 0.5)),
                    st(S, "dashboard.read", "dashboard", "CONSUMER", _ln(0.3, 0.4)),
                ],
            ),
        ),
        PairSpec(
            "kafka",
            "ingest",
            [
                st(S, "kafka.produce", "loadgen", "PRODUCER", _ln(2.0, 0.5), load=0.3),
                st(W, dist=kafka_fetch),
                st(S, "ingest.consume", "kafka.ingest", "CONSUMER", _ln(0.3, 0.3)),
                rpc("pg.write", "kafka.ingest", _ln(0.3, 0.3), "pg.commit", "postgres", _ln(1.5, 0.4)),
            ],
        ),
        PairSpec(
            "harper",
            "ingest",
            [
                rpc(
                    "http.post", "harper.client", _ln(0.4, 0.3), "harper.write", "harper.node1", _ln(1.3, 0.4)
                ),
            ],
        ),
    ]
    return pairs
