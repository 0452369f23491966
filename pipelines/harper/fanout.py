"""fanout on the Harper stack: MQTT 5 publish QoS 1 to Fanout/<region>/<category>/<id> on node 1;
subscribers hold MQTT topic filters and are spread over the nodes."""

from __future__ import annotations

from typing import ClassVar

import aiomqtt
import orjson
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ..driver import Ack, Event
from ..workload import Workload
from . import topics
from .pipeline import Pipeline, Sub, fanned_subscribers


class Fanout(Pipeline):
    workload: ClassVar[str] = "fanout"

    _publisher: aiomqtt.Client | None = None
    _workload: Workload | None = None

    def subscribers(self, workload: Workload) -> list[Sub]:
        return fanned_subscribers(
            workload, len(self.host.client.nodes), lambda spec: topics.fanout_filters(workload, spec)
        )

    async def setup(self, workload: Workload) -> None:
        host = self.host
        self._workload = workload
        self._publisher = host.mqtt(
            host.config.write_node, f"{host.run.run_id}-publisher", max_inflight_messages=1000
        )
        # QoS 1 publishes in flight are the open loop working as meant, not a concern to log
        self._publisher.pending_calls_threshold = max(1000, host.config.max_connections)
        await self._publisher.__aenter__()

    async def send(self, event: Event) -> Ack:
        host = self.host
        assert self._publisher is not None and self._workload is not None
        host.expect(event)
        topic = topics.fanout_topic(self._workload, event.fields, event.event_id)
        message = {
            "eventId": event.event_id,
            "runId": host.run.run_id,
            "workload": event.workload,
            "traceparent": event.traceparent,
            "payload": event.payload.decode("utf-8", "replace"),
        }
        props = Properties(PacketTypes.PUBLISH)
        if event.traceparent:  # Harper drops user properties; sent anyway so the loss stays visible
            props.UserProperty = ("traceparent", event.traceparent)
        try:
            await self._publisher.publish(
                topic,
                orjson.dumps(message),
                qos=host.config.mqtt_qos,
                properties=props,
                timeout=host.config.request_timeout_s,
            )
        except aiomqtt.MqttError as exc:
            status = "timeout" if "timed out" in str(exc).lower() else "error"
            return Ack(status, None, f"MQTT publish {topic}: {exc}")  # type: ignore[arg-type]
        return Ack("ok", host.run.now_ns())

    async def aclose(self) -> None:
        if self._publisher is not None:
            await self._publisher.__aexit__(None, None, None)
