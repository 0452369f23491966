package dev.hopscope.streams;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.opentelemetry.api.trace.Span;
import io.opentelemetry.api.trace.SpanKind;
import io.opentelemetry.context.Context;
import java.nio.charset.StandardCharsets;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.streams.processor.api.ContextualProcessor;
import org.apache.kafka.streams.processor.api.Record;
import org.apache.kafka.streams.state.TimestampedKeyValueStore;
import org.apache.kafka.streams.state.ValueAndTimestamp;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Folds each event into its key's aggregate (count, sum, last value) in a changelogged state
 * store and forwards the new aggregate downstream, under a span that continues the event's trace.
 *
 * <p>State stores keep no record headers, so the aggregate value itself remembers the last
 * event's id and traceparent: that is what the interactive-query answer hands back.
 */
final class AggregateProcessor extends ContextualProcessor<String, String, String, String> {
  static final String STORE = "agg-store";
  static final String WORKLOAD = "aggregate";
  private static final Logger LOG = LoggerFactory.getLogger(AggregateProcessor.class);
  static final AtomicLong MALFORMED = new AtomicLong();

  private final ObjectMapper json = new ObjectMapper();
  private final Tracing tracing;
  private TimestampedKeyValueStore<String, String> store;

  AggregateProcessor(Tracing tracing) {
    this.tracing = tracing;
  }

  @Override
  public void init(org.apache.kafka.streams.processor.api.ProcessorContext<String, String> context) {
    super.init(context);
    store = context.getStateStore(STORE);
  }

  @Override
  public void process(Record<String, String> record) {
    long startNs = Tracing.nowNs();
    JsonNode event;
    try {
      event = json.readTree(record.value());
      if (event == null || !event.hasNonNull("event_id") || !event.has("value")) {
        throw new IllegalArgumentException("missing event_id or value");
      }
    } catch (Exception e) {
      // Counted and logged, never silently dropped: the ledger will show the event as lost.
      long n = MALFORMED.incrementAndGet();
      LOG.warn("malformed record #{} on key {}: {} ({})", n, record.key(), record.value(), e.getMessage());
      return;
    }
    String eventId = event.get("event_id").asText();
    String upstreamTp = header(record, "traceparent");
    if (upstreamTp == null && event.hasNonNull("traceparent")) {
      upstreamTp = event.get("traceparent").asText();
    }
    Context producer = Tracing.extract(upstreamTp);
    Context parent = producer;
    // Warm-up records (sent before the measured load, to get the JVM past its first slow
    // thousand records) are aggregated like any other but belong to no trace.
    boolean warmup = event.path("warmup").asBoolean(false);
    if (event.hasNonNull("sent_ns") && !warmup) {
      // The broker's LogAppendTime (ms) against the producer's send time: the Kafka append hop.
      // The consumer span is its child (and links to the producer), so the trace stays one chain.
      parent = tracing.derived("kafka.append", producer, WORKLOAD, eventId, event.get("sent_ns").asLong(),
          record.timestamp() * 1_000_000L);
    }
    Span span =
        warmup
            ? Span.getInvalid()
            : tracing.startHop("streams.aggregate", SpanKind.CONSUMER, parent, WORKLOAD, eventId, startNs, producer);
    try {
      String key = record.key() == null ? event.path("key").asText("") : record.key();
      ValueAndTimestamp<String> previous = store.get(key);
      ObjectNode agg = previous == null ? json.createObjectNode() : (ObjectNode) json.readTree(previous.value());
      double value = event.get("value").asDouble();
      agg.put("key", key);
      agg.put("count", agg.path("count").asLong(0) + 1);
      agg.put("sum", agg.path("sum").asDouble(0) + value);
      agg.put("last_value", value);
      agg.put("last_event_id", eventId);
      String ownTp = Tracing.traceparent(span);
      agg.put("last_traceparent", ownTp);
      agg.put("updated_ns", Tracing.nowNs());
      String out = json.writeValueAsString(agg);
      store.put(key, ValueAndTimestamp.make(out, record.timestamp()));
      Record<String, String> forward = record.withKey(key).withValue(out);
      forward.headers().remove("traceparent");
      if (!ownTp.isEmpty()) {
        forward.headers().add("traceparent", ownTp.getBytes(StandardCharsets.UTF_8));
      }
      forward.headers().remove("hopscope_event_id");
      forward.headers().add("hopscope_event_id", eventId.getBytes(StandardCharsets.UTF_8));
      context().forward(forward);
    } catch (Exception e) {
      span.recordException(e);
      throw new IllegalStateException("aggregating event " + eventId, e);
    } finally {
      span.end();
    }
  }

  private static String header(Record<String, String> record, String name) {
    Header h = record.headers().lastHeader(name);
    return h == null ? null : new String(h.value(), StandardCharsets.UTF_8);
  }
}
