package libcontainerd

import (
	"context"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// tracerName is the instrumentation scope of the library's spans.
const tracerName = "github.com/ctrkit/libcontainerd"

// startSpan starts span name under ctx. The returned end records *errp, if
// set, on the span before ending it; call it deferred with the function's
// named error.
func startSpan(ctx context.Context, name string, attrs ...attribute.KeyValue) (context.Context, func(errp *error)) {
	ctx, span := otel.Tracer(tracerName).Start(ctx, name, trace.WithAttributes(attrs...))
	return ctx, func(errp *error) {
		if errp != nil && *errp != nil {
			span.RecordError(*errp)
			span.SetStatus(codes.Error, (*errp).Error())
		}
		span.End()
	}
}
