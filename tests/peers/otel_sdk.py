"""A real OTLP client for the OTLP source's tests: the OpenTelemetry SDK
with its OTLP exporters (run by `scripts/peers start otel-sdk`).

    otel_sdk.py PROTOCOL ENDPOINT N        (an https:// ENDPOINT: TLS, with the SDK's
                                           OTEL_EXPORTER_OTLP_CERTIFICATE and
                                           _CLIENT_CERTIFICATE/_CLIENT_KEY variables)
                                           N log records (seq 0..N-1), N spans and a
                                           counter, exported by the SDK's batch
                                           processors; prints one JSON line saying
                                           whether each flush succeeded
    otel_sdk.py malformed-grpc HOST:PORT [BYTES]
                                           BYTES (default 4) garbage bytes to
                                           LogsService/Export over gRPC; prints the
                                           status code's name
"""

import json
import logging
import sys


def malformed(target, size):
    import grpc

    channel = grpc.insecure_channel(target)
    export = channel.unary_unary("/opentelemetry.proto.collector.logs.v1.LogsService/Export")
    try:
        export(b"\xff" * size, timeout=10)
        print(json.dumps({"code": "OK"}))
    except grpc.RpcError as e:
        print(json.dumps({"code": e.code().name}))


def telemetry(protocol, endpoint, n):
    from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        # https:// endpoints use TLS, trusting OTEL_EXPORTER_OTLP_CERTIFICATE
        # and presenting OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE/_KEY (mTLS).
        kw = {"endpoint": endpoint, "insecure": endpoint.startswith("http://"), "timeout": 60}
        logs, spans, metrics = OTLPLogExporter(**kw), OTLPSpanExporter(**kw), OTLPMetricExporter(**kw)
    else:
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        logs = OTLPLogExporter(endpoint=endpoint + "/v1/logs", timeout=60)
        spans = OTLPSpanExporter(endpoint=endpoint + "/v1/traces", timeout=60)
        metrics = OTLPMetricExporter(endpoint=endpoint + "/v1/metrics", timeout=60)

    resource = Resource.create({"service.name": "sdk-test", "deployment.environment": "ci"})
    log_provider = LoggerProvider(resource=resource)
    log_provider.add_log_record_processor(BatchLogRecordProcessor(logs, max_export_batch_size=100))
    logger = logging.getLogger("sdk-test")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(LoggingHandler(logger_provider=log_provider))

    trace_provider = TracerProvider(resource=resource)
    trace_provider.add_span_processor(BatchSpanProcessor(spans, max_export_batch_size=100))
    tracer = trace_provider.get_tracer("sdk-test")

    reader = PeriodicExportingMetricReader(metrics, export_interval_millis=3_600_000)
    meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
    counter = meter_provider.get_meter("sdk-test").create_counter("requests", unit="1")

    for i in range(n):
        logger.warning("sdk log %d", i, extra={"seq": i})
        with tracer.start_as_current_span(f"span {i}") as span:
            span.set_attribute("seq", i)
        counter.add(1, {"route": "/pay"})

    result = {
        "logs": log_provider.force_flush(120_000),
        "traces": trace_provider.force_flush(120_000),
        "metrics": meter_provider.force_flush(120_000),
    }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "malformed-grpc":
        malformed(sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 4)
    else:
        telemetry(sys.argv[1], sys.argv[2], int(sys.argv[3]))
