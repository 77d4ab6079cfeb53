package main

import (
	"context"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// tracerName names the instrumentation scope of the brain's spans.
const tracerName = "github.com/callbrain/callbrain"

// newTracer returns the tracer of this run and the function that flushes and stops it. With
// no OTLP endpoint it is a no-op tracer: nothing is recorded, nothing exported. The exporter
// reads the standard OTEL_EXPORTER_OTLP_* variables itself (endpoint, headers, timeout, …);
// the provider is this run's own, never the global one.
func newTracer(ctx context.Context, cfg *config) (trace.Tracer, func(), error) {
	if cfg.OTLPEndpoint == "" {
		return noop.NewTracerProvider().Tracer(tracerName), func() {}, nil
	}
	exp, err := otlptracehttp.New(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("otlp trace exporter: %w", err)
	}
	// service.name defaults to "brain"; OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win.
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", "brain")),
		resource.WithFromEnv())
	if err != nil {
		return nil, nil, fmt.Errorf("trace resource: %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	stop := func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = tp.Shutdown(sctx) // on the way out: spans not exported by now are lost
	}
	return tp.Tracer(tracerName), stop, nil
}
