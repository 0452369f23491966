package dev.hopscope.streams;

import java.util.Map;

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
    String serviceName) {

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
        env.getOrDefault("OTEL_SERVICE_NAME", "kafka.streams"));
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
