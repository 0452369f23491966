"""fanout on the Kafka stack: produce to the run's events topic → the router (glue process)
→ filters in a Redis hash → one Redis channel per subscriber → the subscribers (threads)."""

from __future__ import annotations

from typing import ClassVar

import orjson
import redis

from hopscope.instrumentation.hops import LeafSpans

from .pipeline import Pipeline


class Fanout(Pipeline):
    workload: ClassVar[str] = "fanout"

    def setup(self) -> None:
        host = self.host
        redis_url = host.redis_url()
        prefix = f"hopscope:{host.tag}:"
        r = redis.Redis.from_url(redis_url)
        filters_key = f"{prefix}filters"
        r.delete(filters_key)
        r.hset(filters_key, mapping={s.name: orjson.dumps(dict(s.filter)) for s in host.workload.subscribers})
        r.close()
        spans = LeafSpans(host.provider("kafka.subscriber"), "hopscope.pipelines.kafka")
        for sub in host.workload.subscriber_names:
            host.subscriber(sub, redis_url, f"{prefix}sub:{sub}", spans)
        host.spawn(
            "router",
            topic=host.topics.events,
            redis_url=redis_url,
            channel_prefix=prefix,
            filters_key=filters_key,
        )
