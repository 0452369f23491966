// The notifier, the router and the ingest consumer: pipelines/kafka/glue.py's run_notifier,
// run_router and run_ingest, span for span (same hop names, kinds, parents, links, attributes and
// service-map edges).

import { nowNs } from './clock.js';
import { DecodeError, decodeChange, decodeEvent, matchingChannels } from './decode.js';
import { FROM_KAFKA, INSERT_EDGE, PUBLISH_EDGE, ROUTE_EDGE } from './edges.js';
import { SpanKind } from './tracer.js';
import { insertStatement, receiptLine } from './sink.js';
import { makeEnvelope, TraceparentError } from './traceparent.js';

const CONSUME_ATTRIBUTES = { 'messaging.system': 'kafka', 'messaging.operation.type': 'process' };

export class Glue {
  /**
   * @param {object} cfg the process's config (config.readConfig)
   * @param {import('./tracer.js').HopTracer} tracer
   * @param {object} clients the role's connected clients: `redis` (node-redis; notifier,
   *   router) or `pg` (a pg Client; ingest)
   * @param {(text: string) => void} [write] where receipt lines go (stdout: the driver reads them)
   */
  constructor(cfg, tracer, clients, write = (text) => process.stdout.write(text)) {
    this.cfg = cfg;
    this.tracer = tracer;
    this.redis = clients.redis;
    this.pg = clients.pg;
    this.write = write;
    this.errors = 0;
    this.foreignRows = 0; // CDC rows of other runs, skipped
    this.handled = 0;
    this.channel = `${cfg.channel_prefix}notify`;
  }

  /** The handler of the role: (messages, topic, partition) => Promise. */
  handler() {
    const roles = { notifier: this.notify, router: this.route, ingest: this.ingest };
    return roles[this.cfg.role].bind(this);
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
  async ingest(messages, topic, partition) {
    // One transaction per fetched batch, as glue.py: every row's pg.insert span covers the
    // statement and the commit it waited for; a receipt per committed row.
    const batch = [];
    for (const msg of messages) {
      const where = `${topic}[${partition}]@${msg.offset}`;
      let inc;
      let parent;
      try {
        inc = decodeEvent(msg, 'ingest', where);
        parent = this.tracer.derivedChain(inc.hops, { eventId: inc.eventId, workload: inc.workload, parent: inc.producer });
      } catch (exc) {
        if (!(exc instanceof DecodeError || exc instanceof TraceparentError)) throw exc;
        this.skip(where, exc);
        continue;
      }
      const consume = this.consumeSpan(inc, 'ingest.consume', parent, nowNs());
      consume.end();
      batch.push({ inc, consume, raw: Buffer.from(msg.value).toString('utf8'), where });
    }
    if (!batch.length) return;
    const startNs = nowNs();
    const spans = batch.map(({ inc, consume }) =>
      this.tracer.startHop('pg.insert', {
        eventId: inc.eventId,
        workload: inc.workload,
        kind: SpanKind.CLIENT,
        parent: consume.spanContext(),
        startNs,
        edge: INSERT_EDGE,
        attributes: {
          'hopscope.subscriber': 'sink',
          'db.system.name': 'postgresql',
          'db.operation.name': 'INSERT',
          'db.collection.name': this.cfg.table,
          'db.operation.batch.size': batch.length,
        },
      }),
    );
    const { text, values } = insertStatement(this.cfg.table, this.cfg.run_id, batch);
    try {
      // one statement: atomic and committed on its own (synchronous_commit=on) in one round trip
      await this.pg.query(text, values);
    } catch (exc) {
      const doneNs = nowNs();
      for (const span of spans) {
        span.recordError(exc);
        span.end(doneNs);
      }
      this.skip(`${batch.length} row(s) from ${batch[0].where}`, exc);
      return;
    }
    const doneNs = nowNs();
    const lines = [];
    batch.forEach(({ inc }, i) => {
      spans[i].end(doneNs);
      lines.push(receiptLine(inc.eventId, 'sink', doneNs));
    });
    this.handled += batch.length;
    this.write(lines.join(''));
  }
}

