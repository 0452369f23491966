"""Redis 7 from Debian: one in-memory instance with a generated password."""

from __future__ import annotations

import shutil
import time

import redis

from hopscope.deploy import apt
from hopscope.deploy.base import Service, write_private
from hopscope.deploy.settings import RedisConfig


class Redis(Service):
    name = "redis"
    start_timeout = 20.0

    @property
    def cfg(self) -> RedisConfig:
        return self.ctx.config.redis

    def is_external(self) -> bool:
        return self.cfg.external_url is not None

    def ports(self) -> list[int]:
        return [self.cfg.port]

    def endpoint(self) -> str:
        if self.cfg.external_url:
            return self.cfg.external_url.split("@")[-1]
        return f"redis://127.0.0.1:{self.cfg.port}/0"

    def url(self) -> str:
        """URL with the generated password (for clients; never print it)."""
        if self.cfg.external_url:
            return self.cfg.external_url
        return f"redis://:{self.ctx.secret('redis_password')}@127.0.0.1:{self.cfg.port}/0"

    def is_installed(self) -> bool:
        return shutil.which("redis-server") is not None

    def install(self) -> None:
        apt.ensure(self.name, ["redis-server"])

    def start(self) -> None:
        conf = self.ctx.service_dir(self.name) / "redis.conf"
        # Latency-first and ephemeral: pub/sub and routing state, no snapshots to disk.
        # It holds requirepass: created 0600, never world-readable for a moment.
        write_private(
            conf,
            "\n".join(
                [
                    "bind 127.0.0.1",
                    f"port {self.cfg.port}",
                    "protected-mode yes",
                    f"requirepass {self.ctx.secret('redis_password')}",
                    'save ""',
                    "appendonly no",
                    f"dir {self.ctx.service_dir(self.name)}",
                    "daemonize no",
                    "",
                ]
            ),
        )
        self.spawn("redis", ["redis-server", str(conf)])

    def health(self) -> None:
        channel = f"hopscope-health-{time.monotonic_ns()}"
        try:
            client = redis.Redis.from_url(self.url(), socket_timeout=3)
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            pubsub.subscribe(channel)
            client.publish(channel, "ping")
            deadline = time.monotonic() + 3
            msg = None
            while msg is None and time.monotonic() < deadline:
                msg = pubsub.get_message(timeout=0.5)
            pubsub.close()
            client.close()
        except redis.RedisError as exc:
            raise self.fail("health", f"pub/sub round trip on {self.endpoint()}: {exc}") from exc
        if msg is None or msg.get("data") != b"ping":
            raise self.fail("health", f"published on {channel} but the subscriber got {msg!r}")
