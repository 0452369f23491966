// The notifier and the router: pipelines/kafka/glue.py's run_notifier and run_router, span for
// span (same hop names, kinds, parents, links, attributes and service-map edges).

import { nowNs } from './clock.js';
import { DecodeError, decodeChange, decodeEvent, matchingChannels } from './decode.js';
import { FROM_KAFKA, PUBLISH_EDGE, ROUTE_EDGE } from './edges.js';
import { SpanKind } from './tracer.js';
import { makeEnvelope, TraceparentError } from './traceparent.js';

const CONSUME_ATTRIBUTES = { 'messaging.system': 'kafka', 'messaging.operation.type': 'process' };

export class Glue {
  /**
   * @param {object} cfg the process's config (config.readConfig)
   * @param {import('./tracer.js').HopTracer} tracer
   * @param {object} redis a connected node-redis client
   */
  constructor(cfg, tracer, redis) {
    this.cfg = cfg;
    this.tracer = tracer;
    this.redis = redis;
    this.errors = 0;
    this.foreignRows = 0; // CDC rows of other runs, skipped
    this.handled = 0;
    this.channel = `${cfg.channel_prefix}notify`;
  }

  /** The handler of the role: (messages, topic, partition) => Promise. */
  handler() {
    return this.cfg.role === 'notifier' ? (m, t, p) => this.notify(m, t, p) : (m, t, p) => this.route(m, t, p);
  }

  skip(where, exc) {
    // counted and logged; the ledger shows the event as lost
    this.errors += 1;
    console.error(`skipped ${where}: ${exc.message ?? exc}`);
  }

  consumeSpan(inc, hop, parent, polledNs) {
    return this.tracer.startHop(hop, {
      eventId: inc.eventId,
      workload: inc.workload,
      kind: SpanKind.CONSUMER,
      parent,
      links: [inc.producer],
      startNs: polledNs,
      attributes: CONSUME_ATTRIBUTES,
      edge: FROM_KAFKA,
    });
  }

  async notify(messages, topic, partition) {
    for (const msg of messages) {
      const where = `${topic}[${partition}]@${msg.offset}`;
      const polledNs = nowNs();
      let inc;
      let parent;
      try {
        inc = decodeChange(msg, this.cfg.run_id, where);
        if (inc.skip) {
          if (inc.skip === 'foreign') this.foreignRows += 1;
          continue;
        }
        parent = this.tracer.derivedChain(inc.hops, { eventId: inc.eventId, workload: inc.workload, parent: inc.producer });
      } catch (exc) {
        if (!(exc instanceof DecodeError || exc instanceof TraceparentError)) throw exc;
        this.skip(where, exc);
        continue;
      }
      const consume = this.consumeSpan(inc, 'notifier.consume', parent, polledNs);
      const pub = this.tracer.startHop('redis.publish', {
        eventId: inc.eventId,
        workload: inc.workload,
        kind: SpanKind.PRODUCER,
        parent: consume.spanContext(),
        edge: PUBLISH_EDGE,
        attributes: { 'db.system.name': 'redis', 'messaging.system': 'redis', 'hopscope.channels': 1 },
      });
      try {
        const body = makeEnvelope(inc.eventId, { key: inc.payload.key, fields: inc.payload.fields }, pub.spanContext());
        await this.redis.publish(this.channel, body);
        this.handled += 1;
      } catch (exc) {
        pub.recordError(exc);
        consume.recordError(exc);
        this.skip(where, exc);
      } finally {
        pub.end();
        consume.end();
      }
    }
  }

  async route(messages, topic, partition) {
    const cfg = this.cfg;
    for (const msg of messages) {
      const where = `${topic}[${partition}]@${msg.offset}`;
      let inc;
      let parent;
      try {
        inc = decodeEvent(msg, 'fanout', where);
        parent = this.tracer.derivedChain(inc.hops, { eventId: inc.eventId, workload: inc.workload, parent: inc.producer });
      } catch (exc) {
        if (!(exc instanceof DecodeError || exc instanceof TraceparentError)) throw exc;
        this.skip(where, exc);
        continue;
      }
      const consume = this.consumeSpan(inc, 'router.consume', parent, nowNs());
      const ids = { eventId: inc.eventId, workload: inc.workload };
      let current = null;
      try {
        current = this.tracer.startHop('redis.route', {
          ...ids,
          kind: SpanKind.CLIENT,
          parent: consume.spanContext(),
          edge: ROUTE_EDGE,
          attributes: { 'db.system.name': 'redis', 'db.operation.name': 'HGETALL' },
        });
        const channels = matchingChannels(await this.redis.hGetAll(cfg.filters_key), inc.payload.fields, cfg.channel_prefix);
        current.end();
        current = null;
        if (channels.length) {
          current = this.tracer.startHop('redis.publish', {
            ...ids,
            kind: SpanKind.PRODUCER,
            parent: consume.spanContext(),
            edge: PUBLISH_EDGE,
            attributes: { 'messaging.system': 'redis', 'hopscope.channels': channels.length },
          });
          const body = makeEnvelope(inc.eventId, { key: inc.payload.key, fields: inc.payload.fields }, current.spanContext());
          // one round trip for every channel, no MULTI (redis-py's pipeline(transaction=False))
          const pipe = this.redis.multi();
          for (const ch of channels) pipe.publish(ch, body);
          await pipe.execAsPipeline();
          current.end();
          current = null;
        }
        this.handled += 1;
      } catch (exc) {
        current?.recordError(exc);
        current?.end();
        consume.recordError(exc);
        this.skip(where, exc);
      } finally {
        consume.end();
      }
    }
  }
}
