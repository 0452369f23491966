package dev.hopscope.streams;

import io.opentelemetry.api.OpenTelemetry;
import io.opentelemetry.api.common.AttributeKey;
import io.opentelemetry.api.common.Attributes;
import io.opentelemetry.api.trace.Span;
import io.opentelemetry.api.trace.SpanBuilder;
import io.opentelemetry.api.trace.SpanContext;
import io.opentelemetry.api.trace.SpanKind;
import io.opentelemetry.api.trace.Tracer;
import io.opentelemetry.api.trace.propagation.W3CTraceContextPropagator;
import io.opentelemetry.context.Context;
import io.opentelemetry.context.propagation.TextMapGetter;
import io.opentelemetry.exporter.otlp.http.trace.OtlpHttpSpanExporter;
import io.opentelemetry.exporter.otlp.http.trace.OtlpHttpSpanExporterBuilder;
import io.opentelemetry.sdk.OpenTelemetrySdk;
import io.opentelemetry.sdk.resources.Resource;
import io.opentelemetry.sdk.trace.SdkTracerProvider;
import io.opentelemetry.sdk.trace.export.BatchSpanProcessor;
import java.net.URLDecoder;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.time.Instant;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.TimeUnit;

/**
 * Tracer setup and the hop conventions (the same attribute names the Python side uses).
 *
 * <p>Spans are made by hand with the SDK rather than the Java agent so each carries the
 * hopscope hop attributes and an explicit parent taken from the record's traceparent.
 */
final class Tracing implements AutoCloseable {
  static final AttributeKey<String> WORKLOAD = AttributeKey.stringKey("hopscope.workload");
  static final AttributeKey<String> EVENT_ID = AttributeKey.stringKey("hopscope.event_id");
  static final AttributeKey<String> HOP = AttributeKey.stringKey("hopscope.hop");
  static final AttributeKey<Boolean> DERIVED = AttributeKey.booleanKey("hopscope.derived");
  static final AttributeKey<String> DERIVED_FROM = AttributeKey.stringKey("hopscope.derived_from");
  static final AttributeKey<Long> PRECISION_NS = AttributeKey.longKey("hopscope.derived_precision_ns");
  // The service-map edge a span crosses, named on it (hopscope.instrumentation.edges).
  static final AttributeKey<String> EDGE_CLIENT = AttributeKey.stringKey("hopscope.edge.client");
  static final AttributeKey<String> EDGE_SERVER = AttributeKey.stringKey("hopscope.edge.server");
  static final AttributeKey<String> EDGE_TYPE = AttributeKey.stringKey("hopscope.edge.type");

  private static final TextMapGetter<Map<String, String>> MAP_GETTER =
      new TextMapGetter<>() {
        @Override
        public Iterable<String> keys(Map<String, String> carrier) {
          return carrier.keySet();
        }

        @Override
        public String get(Map<String, String> carrier, String key) {
          return carrier == null ? null : carrier.get(key);
        }
      };

  private final OpenTelemetry otel;
  private final SdkTracerProvider provider;
  private final String serviceName;
  final Tracer tracer;

  Tracing(Settings settings) {
    serviceName = settings.serviceName();
    if (settings.tracingEnabled()) {
      Resource resource =
          Resource.getDefault()
              .merge(
                  Resource.create(
                      Attributes.builder()
                          .put("service.name", settings.serviceName())
                          .put("hopscope.stack", "kafka")
                          .put("hopscope.run_id", settings.runId())
                          .build()));
      OtlpHttpSpanExporterBuilder builder =
          OtlpHttpSpanExporter.builder()
              .setEndpoint(settings.otlpEndpoint() + "/v1/traces")
              .setTimeout(Duration.ofSeconds(5));
      otlpHeaders(System.getenv("OTEL_EXPORTER_OTLP_HEADERS")).forEach(builder::addHeader);
      OtlpHttpSpanExporter exporter = builder.build();
      provider =
          SdkTracerProvider.builder()
              .setResource(resource)
              .addSpanProcessor(
                  BatchSpanProcessor.builder(exporter).setScheduleDelay(Duration.ofMillis(200)).build())
              .build();
      otel = OpenTelemetrySdk.builder().setTracerProvider(provider).build();
    } else {
      provider = null;
      otel = OpenTelemetry.noop();
    }
    tracer = otel.getTracer("hopscope.streams", "0.1.0");
  }

  /**
   * The headers OTEL_EXPORTER_OTLP_HEADERS names (comma-separated key=value, URL-encoded), e.g. the
   * collector's bearer token that the hopscope command hands down (deploy/otlp_auth.py). The SDK
   * reads the variable only through autoconfigure, which this app does not use.
   */
  static Map<String, String> otlpHeaders(String spec) {
    Map<String, String> out = new LinkedHashMap<>();
    if (spec == null || spec.isBlank()) {
      return out;
    }
    for (String pair : spec.split(",")) {
      int eq = pair.indexOf('=');
      if (eq <= 0) {
        continue;
      }
      out.put(
          URLDecoder.decode(pair.substring(0, eq).trim(), StandardCharsets.UTF_8),
          URLDecoder.decode(pair.substring(eq + 1).trim(), StandardCharsets.UTF_8));
    }
    return out;
  }

  /** The parent context carried by a W3C traceparent string (root context when absent or invalid). */
  static Context extract(String traceparent) {
    if (traceparent == null || traceparent.isBlank()) {
      return Context.root();
    }
    Map<String, String> carrier = new HashMap<>();
    carrier.put("traceparent", traceparent);
    return W3CTraceContextPropagator.getInstance().extract(Context.root(), carrier, MAP_GETTER);
  }

  /** The traceparent string of a span, to carry on in records and aggregate values. */
  static String traceparent(Span span) {
    SpanContext sc = span.getSpanContext();
    if (!sc.isValid()) {
      return "";
    }
    return "00-" + sc.getTraceId() + "-" + sc.getSpanId() + "-" + sc.getTraceFlags().asHex();
  }

  /**
   * A hop span: a child of the upstream context and, for a consumer, also linked to it
   * (the design's rule for spans across a broker).
   */
  Span startHop(String name, SpanKind kind, Context parent, String workload, String eventId, long startNs) {
    return startHop(name, kind, parent, workload, eventId, startNs, null);
  }

  /** As above; `producer` (the upstream producer's context, when a derived span sits between) is linked too. */
  Span startHop(
      String name, SpanKind kind, Context parent, String workload, String eventId, long startNs, Context producer) {
    SpanBuilder builder =
        tracer
            .spanBuilder(name)
            .setSpanKind(kind)
            .setParent(parent)
            .setAttribute(HOP, name)
            .setAttribute(WORKLOAD, workload)
            .setStartTimestamp(startNs, TimeUnit.NANOSECONDS);
    if (eventId != null) {
      builder.setAttribute(EVENT_ID, eventId);
    }
    SpanContext upstream = Span.fromContext(parent).getSpanContext();
    if (kind == SpanKind.CONSUMER && upstream.isValid()) {
      builder.addLink(upstream);
    }
    if (kind == SpanKind.CONSUMER) {
      // the app's only consumer reads the input topic: the kafka -> this service edge
      builder
          .setAttribute(EDGE_CLIENT, "kafka")
          .setAttribute(EDGE_SERVER, serviceName)
          .setAttribute(EDGE_TYPE, "messaging_system");
    }
    if (producer != null) {
      SpanContext origin = Span.fromContext(producer).getSpanContext();
      if (origin.isValid() && !origin.getSpanId().equals(upstream.getSpanId())) {
        builder.addLink(origin);
      }
    }
    return builder.startSpan();
  }

  /** A span rebuilt from timestamps the event carries (the component emits none itself). */
  Context derived(String name, Context parent, String workload, String eventId, long startNs, long endNs) {
    if (endNs < startNs) {
      // Clocks of two processes on one host can disagree by a little; never emit a negative span.
      endNs = startNs;
    }
    Span span =
        tracer
            .spanBuilder(name)
            .setSpanKind(SpanKind.INTERNAL)
            .setParent(parent)
            .setAttribute(HOP, name)
            .setAttribute(WORKLOAD, workload)
            .setAttribute(EVENT_ID, eventId == null ? "" : eventId)
            .setAttribute(DERIVED, true)
            .setAttribute(DERIVED_FROM, "LogAppendTime (ms)")
            .setAttribute(PRECISION_NS, 1_000_000L)
            .setStartTimestamp(startNs, TimeUnit.NANOSECONDS)
            .startSpan();
    span.end(endNs, TimeUnit.NANOSECONDS);
    return parent.with(span);
  }

  static long nowNs() {
    Instant now = Instant.now();
    return now.getEpochSecond() * 1_000_000_000L + now.getNano();
  }

  @Override
  public void close() {
    if (provider != null) {
      provider.forceFlush().join(5, TimeUnit.SECONDS);
      provider.shutdown().join(5, TimeUnit.SECONDS);
    }
  }
}
