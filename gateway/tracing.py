"""OpenTelemetry traces: a request span, the GraphQL operation, and every SQL statement.

Off unless `OTEL_EXPORTER_OTLP_ENDPOINT` is set (or a test hands in its own
provider): then nothing is instrumented and nothing is imported, so tracing costs
nothing when it is off.

What is instrumented, and why there:
- the ASGI app (`opentelemetry-instrumentation-asgi`): the root span of each request;
- Strawberry's `OpenTelemetryExtension`: the operation, parsing, validation, resolvers;
- the database driver: on PostgreSQL asyncpg itself, which both the SQLAlchemy engine
  and the fast path's plain pool use, so the compiled plans' statements are traced as
  the reference's are and none twice; on SQLite the SQLAlchemy engine (aiosqlite has
  no instrumentation of its own).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gateway.config import Settings

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider
    from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["Tracing", "tracing_for"]


class Tracing:
    """The app's tracing: built once per app with its provider, instrumenting on `start`."""

    def __init__(self, provider: TracerProvider) -> None:
        self.provider = provider
        self._instrumentors: list[Any] = []

    @property
    def asgi_middleware(self) -> type[Any]:
        """The ASGI instrumentation, for `app.add_middleware(..., tracer_provider=provider)`."""
        from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

        return OpenTelemetryMiddleware

    def schema_extension(self) -> Any:
        """A factory of Strawberry's extension (strawberry makes one per operation)."""
        from strawberry.extensions.tracing import OpenTelemetryExtension

        return lambda: OpenTelemetryExtension(tracer_provider=self.provider)

    def start(self, engine: AsyncEngine) -> None:
        """Instrument the database driver behind `engine` (see the module's docstring)."""
        if engine.dialect.name == "postgresql":
            from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor

            instrumentor: Any = AsyncPGInstrumentor()  # type: ignore[no-untyped-call]  # its __init__ is unannotated
            instrumentor.instrument(tracer_provider=self.provider)
        else:
            from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

            instrumentor = SQLAlchemyInstrumentor()
            # Its declared range stops before SQLAlchemy 2.1, whose engine events it uses
            # unchanged (the tracing test checks the spans): without this it does nothing.
            instrumentor.instrument(engine=engine.sync_engine, tracer_provider=self.provider, skip_dep_check=True)
        self._instrumentors.append(instrumentor)

    def stop(self) -> None:
        """Undo `start` (the drivers' instrumentations patch process-wide classes) and flush."""
        for instrumentor in self._instrumentors:
            instrumentor.uninstrument()
        self._instrumentors.clear()
        force_flush = getattr(self.provider, "force_flush", None)
        if force_flush is not None:
            force_flush()


def tracing_for(settings: Settings, provider: TracerProvider | None = None) -> Tracing | None:
    """The app's tracing: with `provider` when given, over OTLP when the endpoint is set, else None."""
    if provider is not None:
        return Tracing(provider)
    if not settings.otlp_endpoint:
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    sdk = SdkTracerProvider(resource=Resource.create({SERVICE_NAME: "status-gateway"}))
    # The exporter reads the other OTEL_EXPORTER_OTLP_* variables itself (headers, timeout).
    endpoint = settings.otlp_endpoint.rstrip("/") + "/v1/traces"
    sdk.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    return Tracing(sdk)
