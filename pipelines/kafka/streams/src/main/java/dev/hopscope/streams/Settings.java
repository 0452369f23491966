package dev.hopscope.streams;

import java.io.IOException;
import java.io.StringReader;
import java.io.UncheckedIOException;
import java.util.Map;
import java.util.Properties;

/** Everything the app needs, from environment variables set by the kafka pipelines' launcher. */
record Settings(
    String bootstrap,
    String applicationId,
    String inputTopic,
    String outputTopic,
    int queryPort,
    String stateDir,
    String otlpEndpoint,
    String runId,
    String serviceName,
    Properties tuning) {

  static Settings fromEnv(Map<String, String> env) {
    return new Settings(
        required(env, "HOPSCOPE_BOOTSTRAP"),
        env.getOrDefault("HOPSCOPE_APP_ID", "hopscope-aggregate"),
        env.getOrDefault("HOPSCOPE_IN_TOPIC", "hopscope.aggregate.in"),
        env.getOrDefault("HOPSCOPE_OUT_TOPIC", "hopscope.aggregate.out"),
        Integer.parseInt(env.getOrDefault("HOPSCOPE_IQ_PORT", "27070")),
        required(env, "HOPSCOPE_STREAMS_STATE_DIR"),
        env.getOrDefault("HOPSCOPE_OTLP_HTTP", ""),
        env.getOrDefault("HOPSCOPE_RUN_ID", ""),
        env.getOrDefault("OTEL_SERVICE_NAME", "kafka.streams"),
        tuning(required(env, "HOPSCOPE_STREAMS_TUNING")));
  }

  /**
   * The tuned settings the launcher passes (`key=value` lines, StreamsConfig names with Streams'
   * `producer.`/`consumer.` prefixes): required, so the app never runs on Kafka's defaults.
   */
  static Properties tuning(String text) {
    Properties p = new Properties();
    try {
      p.load(new StringReader(text));
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
    return p;
  }

  boolean tracingEnabled() {
    return !otlpEndpoint.isBlank();
  }

  private static String required(Map<String, String> env, String name) {
    String value = env.get(name);
    if (value == null || value.isBlank()) {
      throw new IllegalArgumentException("environment variable " + name + " is required");
    }
    return value;
  }
}
