package dev.hopscope.streams;

import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.state.Stores;

/** Starts the aggregation topology and its interactive-query endpoint; stops cleanly on SIGTERM. */
public final class Main {
  private Main() {}

  static Properties streamsConfig(Settings s) {
    Properties p = new Properties();
    p.put(StreamsConfig.APPLICATION_ID_CONFIG, s.applicationId());
    p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, s.bootstrap());
    p.put(StreamsConfig.APPLICATION_SERVER_CONFIG, "127.0.0.1:" + s.queryPort());
    p.put(StreamsConfig.STATE_DIR_CONFIG, s.stateDir());
    // The latency settings (commit interval, record cache, the producer's linger, batch and
    // compression, the consumer's fetch settings) come from the launcher's KafkaTuning
    // (pipelines/kafka/tuning.py), one source with the Python clients.
    p.putAll(s.tuning());
    // Durability is not tuning: set after the tuned settings, so they can never lower it.
    p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.AT_LEAST_ONCE);
    // Fairness: changelog and repartition topics as durable as the pipeline's own topics.
    p.put(StreamsConfig.REPLICATION_FACTOR_CONFIG, 3);
    p.put(StreamsConfig.topicPrefix("min.insync.replicas"), "2");
    p.put(StreamsConfig.producerPrefix(ProducerConfig.ACKS_CONFIG), "all");
    p.put(StreamsConfig.producerPrefix(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG), true);
    p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, 1);
    p.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");
    return p;
  }

  static Topology topology(Settings s, Tracing tracing) {
    Topology t = new Topology();
    t.addSource("events", Serdes.String().deserializer(), Serdes.String().deserializer(), s.inputTopic());
    t.addProcessor("aggregate", () -> new AggregateProcessor(tracing), "events");
    t.addStateStore(
        Stores.timestampedKeyValueStoreBuilder(
            Stores.persistentTimestampedKeyValueStore(AggregateProcessor.STORE),
            Serdes.String(),
            Serdes.String()),
        "aggregate");
    t.addSink("updates", s.outputTopic(), Serdes.String().serializer(), Serdes.String().serializer(), "aggregate");
    return t;
  }

  public static void main(String[] args) throws Exception {
    Settings settings = Settings.fromEnv(System.getenv());
    Tracing tracing = new Tracing(settings);
    KafkaStreams streams = new KafkaStreams(topology(settings, tracing), streamsConfig(settings));
    CountDownLatch stopped = new CountDownLatch(1);
    streams.setStateListener((now, before) -> System.out.println("streams state " + before + " -> " + now));
    QueryServer server = new QueryServer(settings.queryPort(), streams, tracing);
    Runtime.getRuntime()
        .addShutdownHook(
            new Thread(
                () -> {
                  server.close();
                  streams.close();
                  tracing.close();
                  stopped.countDown();
                }));
    streams.start();
    System.out.println("hopscope streams app: interactive queries on 127.0.0.1:" + settings.queryPort());
    stopped.await();
  }
}
