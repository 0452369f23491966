package dev.hopscope.streams;

import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import io.opentelemetry.api.trace.Span;
import io.opentelemetry.api.trace.SpanKind;
import io.opentelemetry.context.Context;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.URLDecoder;
import java.nio.charset.StandardCharsets;
import java.util.concurrent.Executors;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StoreQueryParameters;
import org.apache.kafka.streams.state.QueryableStoreTypes;
import org.apache.kafka.streams.state.ReadOnlyKeyValueStore;
import org.apache.kafka.streams.state.ValueAndTimestamp;

/**
 * The interactive-query endpoint: `GET /aggregates/{key}` answers from the local state store,
 * `GET /health` says whether the streams instance is RUNNING. Kafka Streams has no RPC layer of
 * its own; one instance holds every partition here, so every key is local.
 */
final class QueryServer implements AutoCloseable {
  private final HttpServer http;
  private final KafkaStreams streams;
  private final Tracing tracing;

  QueryServer(int port, KafkaStreams streams, Tracing tracing) throws IOException {
    this.streams = streams;
    this.tracing = tracing;
    // TCP_NODELAY on the accepted sockets (the JDK server's default is off). The JDK server
    // flushes the response headers, then writes the body as a second small segment; with Nagle
    // on, the body waits for the client's delayed ACK of the headers: every keep-alive GET took
    // ~44 ms instead of ~1.5 ms. At the workload's 200 reads/s the slow reads piled up in the
    // bench's HTTP client pool, whose bookkeeping then took the load generator's whole core and
    // the run collapsed (p50 20-60 s at 50 events/s). Read once, when the first server is made.
    System.setProperty("sun.net.httpserver.nodelay", "true");
    http = HttpServer.create(new InetSocketAddress("127.0.0.1", port), 0);
    http.setExecutor(Executors.newFixedThreadPool(4));
    http.createContext("/aggregates/", this::aggregate);
    http.createContext("/health", this::health);
    http.start();
  }

  private void health(HttpExchange ex) throws IOException {
    KafkaStreams.State state = streams.state();
    String body = "{\"state\":\"" + state + "\",\"malformed\":" + AggregateProcessor.MALFORMED.get() + "}";
    reply(ex, state == KafkaStreams.State.RUNNING ? 200 : 503, body);
  }

  private void aggregate(HttpExchange ex) throws IOException {
    long startNs = Tracing.nowNs();
    String key = URLDecoder.decode(
        ex.getRequestURI().getPath().substring("/aggregates/".length()), StandardCharsets.UTF_8);
    String tp = ex.getRequestHeaders().getFirst("traceparent");
    String eventId = ex.getRequestHeaders().getFirst("hopscope-event-id");
    String workload = ex.getRequestHeaders().getFirst("hopscope-workload");
    Span span = null;
    if (tp != null) {
      Context parent = Tracing.extract(tp);
      span = tracing.startHop("streams.iq", SpanKind.SERVER, parent,
          workload == null ? "point_read" : workload, eventId, startNs);
    }
    try {
      if (!"GET".equals(ex.getRequestMethod())) {
        reply(ex, 405, "{\"error\":\"only GET is supported\"}");
        return;
      }
      if (key.isEmpty()) {
        reply(ex, 400, "{\"error\":\"missing key: GET /aggregates/{key}\"}");
        return;
      }
      ReadOnlyKeyValueStore<String, ValueAndTimestamp<String>> store;
      try {
        store = streams.store(StoreQueryParameters.fromNameAndType(
            AggregateProcessor.STORE, QueryableStoreTypes.timestampedKeyValueStore()));
      } catch (RuntimeException e) {
        // Rebalancing or still restoring: the store is not queryable yet.
        reply(ex, 503, "{\"error\":\"state store not queryable: " + e.getClass().getSimpleName() + "\"}");
        return;
      }
      ValueAndTimestamp<String> value = store.get(key);
      if (value == null) {
        reply(ex, 404, "{\"error\":\"no aggregate for key\"}");
        return;
      }
      reply(ex, 200, value.value());
    } finally {
      if (span != null) {
        span.end();
      }
    }
  }

  private static void reply(HttpExchange ex, int status, String body) throws IOException {
    byte[] bytes = body.getBytes(StandardCharsets.UTF_8);
    ex.getResponseHeaders().set("Content-Type", "application/json");
    ex.sendResponseHeaders(status, bytes.length);
    try (OutputStream out = ex.getResponseBody()) {
      out.write(bytes);
    }
  }

  @Override
  public void close() {
    http.stop(0);
  }
}
