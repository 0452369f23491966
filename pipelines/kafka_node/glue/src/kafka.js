// The glue's Kafka consumer (kafkajs; docs/decisions.md D22 says why not the Confluent client).
//
// Like glue.py it starts at each partition's high watermark, so nothing of an earlier run is
// read: the new group's offsets are set there before it joins. It checks that the topic stamps
// LogAppendTime, since kafkajs does not say per record which kind of timestamp it carries.

import { createRequire } from 'node:module';
import kafkajs from 'kafkajs';
import lz4 from 'lz4-napi';
import { chunks } from './config.js';

const { Kafka, logLevel, CompressionTypes, CompressionCodecs, ConfigResourceTypes } = kafkajs;
const require = createRequire(import.meta.url);
export const LIBRARY = `kafkajs ${require('kafkajs/package.json').version}`;

// Kafka's LZ4 codec is the LZ4 frame format (what librdkafka and the Java client write)
CompressionCodecs[CompressionTypes.LZ4] = () => ({
  async compress(encoder) {
    return lz4.compressFrameSync(encoder.buffer);
  },
  async decompress(buffer) {
    return lz4.decompressFrameSync(buffer);
  },
});

function logCreator() {
  return ({ level, log }) => {
    const { message, ...extra } = log;
    console.error(`[kafkajs ${level === logLevel.ERROR ? 'error' : 'warn'}] ${message} ${JSON.stringify(extra)}`);
  };
}

/**
 * Connect, position at the high watermarks, join, and run `handle(messages, where)` for each
 * fetched batch, `settings.maxPollRecords` records at a time. Resolves once the group is joined.
 */
export async function startConsumer(cfg, settings, handle) {
  const kafka = new Kafka({
    clientId: `hopscope-${cfg.role}`,
    brokers: cfg.bootstrap.split(','),
    logLevel: logLevel.WARN,
    logCreator,
  });
  const admin = kafka.admin();
  await admin.connect();
  try {
    const described = await admin.describeConfigs({
      resources: [{ type: ConfigResourceTypes.TOPIC, name: cfg.topic, configNames: ['message.timestamp.type'] }],
      includeSynonyms: false,
    });
    const entry = described.resources[0]?.configEntries.find((e) => e.configName === 'message.timestamp.type');
    if (entry?.configValue !== 'LogAppendTime') {
      throw new Error(`topic ${cfg.topic}: message.timestamp.type is ${entry?.configValue}, not LogAppendTime (kafka.append is derived from it)`);
    }
    const offsets = await admin.fetchTopicOffsets(cfg.topic);
    if (!offsets.length) throw new Error(`topic ${cfg.topic} not found on ${cfg.bootstrap}`);
    await admin.setOffsets({
      groupId: settings.groupId,
      topic: cfg.topic,
      partitions: offsets.map((o) => ({ partition: o.partition, offset: o.high })),
    });
  } finally {
    await admin.disconnect();
  }
  const consumer = kafka.consumer({
    groupId: settings.groupId,
    minBytes: settings.minBytes,
    maxWaitTimeInMs: settings.maxWaitTimeInMs,
    allowAutoTopicCreation: false,
  });
  const joined = new Promise((resolve) => consumer.on(consumer.events.GROUP_JOIN, resolve));
  consumer.on(consumer.events.CRASH, (e) => console.error(`consumer crashed: ${e.payload?.error?.stack ?? e.payload?.error}`));
  await consumer.connect();
  await consumer.subscribe({ topic: cfg.topic, fromBeginning: false });
  await consumer.run({
    autoCommit: settings.autoCommit,
    autoCommitInterval: settings.autoCommitInterval,
    eachBatchAutoResolve: true,
    eachBatch: async ({ batch }) => {
      for (const part of chunks(batch.messages, settings.maxPollRecords)) {
        await handle(part, batch.topic, batch.partition);
      }
    },
  });
  await joined;
  return consumer;
}
