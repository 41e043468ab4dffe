//! Logs and traces through `tracing`: JSON lines by default, with the current
//! span's fields and, inside a span, its OpenTelemetry `trace_id` and
//! `span_id`; spans go to an OTLP collector when the standard `OTEL_*`
//! variables name one (`OTEL_EXPORTER_OTLP_ENDPOINT` or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`; `OTEL_EXPORTER_OTLP_PROTOCOL` `grpc`,
//! the default, or `http/protobuf`; `OTEL_TRACES_SAMPLER`…). Nothing is
//! exported when they are unset.
//!
//! Each service has its own [`ServiceTelemetry`]: a `tracing` dispatch whose
//! tracer provider carries that service's `service.name`, so that `storefront
//! all` still reports seven services. [`ServiceTelemetry::runtime`] builds a
//! Tokio runtime whose threads all use that dispatch.
//!
//! W3C trace context and baggage cross process boundaries through
//! [`inject`]/[`extract`] (HTTP and gRPC headers) and
//! [`current_trace_headers`]/[`context_from_headers`] (events).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use opentelemetry::propagation::{Extractor, Injector, TextMapCompositePropagator};
use opentelemetry::trace::{
    Span as _, SpanContext, SpanKind, TraceContextExt, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider};
use tracing::dispatcher::WeakDispatch;
use tracing::{Dispatch, Subscriber};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;

use crate::StartError;
use crate::config::LogFormat;

/// The `service.version` resource attribute.
pub const SERVICE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Whether the `OTEL_*` variables ask for span export.
pub fn export_configured() -> bool {
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
    let disabled = std::env::var("OTEL_TRACES_EXPORTER").is_ok_and(|v| v.trim() == "none")
        || std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.trim() == "true");
    !disabled && (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
}

/// The OTLP span exporter the `OTEL_*` variables describe, if any. Must be
/// called inside a Tokio runtime that outlives the exporter (gRPC connects there).
fn exporter() -> Result<Option<opentelemetry_otlp::SpanExporter>, StartError> {
    if !export_configured() {
        return Ok(None);
    }
    let protocol = std::env::var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        .or_else(|_| std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .unwrap_or_else(|_| "grpc".to_owned());
    let built = match protocol.trim() {
        "grpc" => opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .build(),
        "http/protobuf" => opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .build(),
        other => {
            return Err(StartError::Config(format!(
                "OTEL_EXPORTER_OTLP_PROTOCOL {other:?}: expected grpc or http/protobuf"
            )));
        }
    };
    built
        .map(Some)
        .map_err(|e| StartError::Config(format!("OTLP exporter: {e}")))
}

/// What the OpenTelemetry layer sees, whatever the log level: spans at
/// INFO and above (every span of ours), and warnings and errors as span
/// events.
fn trace_filter() -> tracing_subscriber::filter::FilterFn {
    tracing_subscriber::filter::filter_fn(|meta| {
        let level = *meta.level();
        if meta.is_span() {
            level <= tracing::Level::INFO
        } else {
            level <= tracing::Level::WARN
        }
    })
}

/// Installs the W3C trace-context and baggage propagator (idempotent).
pub fn install_propagator() {
    opentelemetry::global::set_text_map_propagator(TextMapCompositePropagator::new(vec![
        Box::new(TraceContextPropagator::new()),
        Box::new(BaggagePropagator::new()),
    ]));
}

/// One service's logs and traces.
pub struct ServiceTelemetry {
    dispatch: Dispatch,
    provider: SdkTracerProvider,
}

thread_local! {
    static THREAD_DISPATCH: RefCell<Option<tracing::dispatcher::DefaultGuard>> =
        const { RefCell::new(None) };
}

impl ServiceTelemetry {
    /// Telemetry for `service_name` (the `service.name` resource attribute;
    /// `None` leaves it to `OTEL_SERVICE_NAME`). Spans are exported when
    /// `export` is true and the `OTEL_*` variables name a collector; trace
    /// and span ids are made (and logged) either way.
    pub fn new(
        service_name: Option<&str>,
        export: bool,
        format: LogFormat,
        filter: &str,
    ) -> Result<Self, StartError> {
        install_propagator();
        // Each layer filters by itself: the log level (`filter`) is for the
        // log lines only; traces and SQL spans do not depend on it.
        let env_filter = || {
            EnvFilter::try_new(filter)
                .map_err(|e| StartError::Config(format!("--log-level {filter:?}: {e}")))
        };
        let mut resource =
            Resource::builder().with_attribute(KeyValue::new("service.version", SERVICE_VERSION));
        if let Some(name) = service_name {
            resource = resource.with_service_name(name.to_owned());
        }
        let mut builder = SdkTracerProvider::builder().with_resource(resource.build());
        if export && let Some(exporter) = exporter()? {
            // A longer queue than the SDK's default (2048), so a busy service
            // does not drop spans; batches stay at 512 (well under a
            // collector's 4 MiB message limit). OTEL_BSP_* still rule.
            let mut config = BatchConfigBuilder::default();
            if std::env::var_os("OTEL_BSP_MAX_QUEUE_SIZE").is_none() {
                config = config.with_max_queue_size(16_384);
            }
            builder = builder.with_span_processor(
                BatchSpanProcessor::builder(exporter)
                    .with_batch_config(config.build())
                    .build(),
            );
        }
        let provider = builder.build();
        let tracer = provider.tracer("storefront");
        let this_dispatch: Arc<OnceLock<WeakDispatch>> = Arc::default();
        // Nothing here reads OpenTelemetry's `Context::current()` (context
        // travels through `tracing` spans), and busy/idle times are not
        // exported: both per-poll costs of the layer are switched off.
        let otel = tracing_opentelemetry::layer()
            .with_tracer(tracer.clone())
            .with_context_activation(false)
            .with_tracked_inactivity(false)
            .with_threads(false)
            .with_location(false)
            .with_target(false)
            .with_filter(trace_filter());
        let sql = SqlSpans {
            tracer,
            dispatch: this_dispatch.clone(),
        }
        .with_filter(
            tracing_subscriber::filter::filter_fn(|meta| {
                (meta.is_span() && *meta.level() <= tracing::Level::INFO)
                    || (meta.target() == "sqlx::query" && *meta.level() <= tracing::Level::DEBUG)
            })
            .with_max_level_hint(tracing::Level::DEBUG),
        );
        let registry = tracing_subscriber::registry().with(otel).with(sql);
        let dispatch = match format {
            LogFormat::Json => Dispatch::new(
                registry.with(
                    tracing_subscriber::fmt::layer()
                        .json()
                        .flatten_event(true)
                        .with_current_span(true)
                        .with_span_list(false)
                        .with_target(true)
                        .map_event_format(|inner| TraceIds {
                            inner,
                            dispatch: this_dispatch.clone(),
                        })
                        .with_filter(env_filter()?),
                ),
            ),
            LogFormat::Text => Dispatch::new(
                registry.with(
                    tracing_subscriber::fmt::layer()
                        .compact()
                        .with_filter(env_filter()?),
                ),
            ),
        };
        let _ = this_dispatch.set(dispatch.downgrade());
        Ok(ServiceTelemetry { dispatch, provider })
    }

    pub fn dispatch(&self) -> &Dispatch {
        &self.dispatch
    }

    /// Makes this the process-wide default dispatch (once, at start-up).
    ///
    /// Records of the `log` crate go to it too: librdkafka's own warnings
    /// (a broker down, a fatal producer error) arrive that way, and would
    /// otherwise be dropped.
    pub fn set_global_default(&self) -> Result<(), StartError> {
        tracing::dispatcher::set_global_default(self.dispatch.clone())
            .map_err(|e| StartError::Config(format!("logging already initialised: {e}")))?;
        let level = tracing::level_filters::LevelFilter::current();
        // Already set (a test process that started services before): keep it.
        let _ = tracing_log::LogTracer::builder()
            .with_max_level(tracing_log::AsLog::as_log(&level))
            .init();
        Ok(())
    }

    /// A multi-threaded Tokio runtime whose worker and blocking threads all
    /// log and trace through this service's dispatch.
    pub fn runtime(&self, name: &str) -> std::io::Result<tokio::runtime::Runtime> {
        let dispatch = self.dispatch.clone();
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name(name)
            .on_thread_start(move || {
                let guard = tracing::dispatcher::set_default(&dispatch);
                THREAD_DISPATCH.with(|slot| *slot.borrow_mut() = Some(guard));
            })
            .on_thread_stop(|| {
                THREAD_DISPATCH.with(|slot| slot.borrow_mut().take());
            })
            .build()
    }

    /// Exports what is still buffered and stops the exporter. Blocks: call
    /// it off the async threads (e.g. in `spawn_blocking`).
    pub fn shutdown(&self) {
        if let Err(error) = self.provider.shutdown() {
            tracing::debug!(%error, "tracer provider shutdown");
        }
    }
}

/// Installs a global subscriber for a process that runs no service
/// (`storefront token`, `healthcheck`): logs only.
pub fn init(format: LogFormat, filter: &str) -> Result<(), StartError> {
    ServiceTelemetry::new(None, false, format, filter)?.set_global_default()
}

/// The OpenTelemetry span context of the span an event was written in.
fn event_span_context<S>(
    span: Option<tracing_subscriber::registry::SpanRef<'_, S>>,
    dispatch: &OnceLock<WeakDispatch>,
) -> Option<SpanContext>
where
    S: for<'a> LookupSpan<'a>,
{
    let span = span?;
    let dispatch = dispatch.get()?.upgrade()?;
    let cx = tracing_opentelemetry::get_otel_context(&span.id(), &dispatch)?;
    let sc = cx.span().span_context().clone();
    sc.is_valid().then_some(sc)
}

/// A JSON event format that puts `trace_id` and `span_id` first on every
/// line written inside a span.
struct TraceIds<F> {
    inner: F,
    dispatch: Arc<OnceLock<WeakDispatch>>,
}

impl<S, N, F> FormatEvent<S, N> for TraceIds<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> fmt::Result {
        let mut line = String::new();
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        let sc = event_span_context(ctx.event_scope().and_then(|mut s| s.next()), &self.dispatch);
        match (sc, line.strip_prefix('{')) {
            (Some(sc), Some(rest)) => {
                write!(
                    writer,
                    "{{\"trace_id\":\"{}\",\"span_id\":\"{}\",",
                    sc.trace_id(),
                    sc.span_id()
                )?;
                writer.write_str(rest)
            }
            _ => writer.write_str(&line),
        }
    }
}

/// Turns sqlx's per-statement event (target `sqlx::query`, written when a
/// statement finishes) into an OpenTelemetry CLIENT span, child of the span
/// the statement ran in: `db.system.name`, `db.operation.name`,
/// `db.collection.name`, no statement text (so no values). PostgreSQL
/// only: SQLite statements run on sqlx's worker thread, outside the
/// service's dispatch and span; the catalog wraps those in
/// [`sql_client_span`] itself.
struct SqlSpans {
    tracer: opentelemetry_sdk::trace::SdkTracer,
    dispatch: Arc<OnceLock<WeakDispatch>>,
}

#[derive(Default)]
struct SqlEventFields {
    summary: String,
    statement: String,
    elapsed_secs: f64,
    rows: Option<i64>,
}

impl tracing::field::Visit for SqlEventFields {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        match field.name() {
            "summary" => value.clone_into(&mut self.summary),
            "db.statement" => value.clone_into(&mut self.statement),
            _ => {}
        }
    }
    fn record_f64(&mut self, field: &tracing::field::Field, value: f64) {
        if field.name() == "elapsed_secs" {
            self.elapsed_secs = value;
        }
    }
    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        if field.name() == "rows_returned" && value > 0 {
            self.rows = i64::try_from(value).ok();
        }
    }
    fn record_debug(&mut self, _: &tracing::field::Field, _: &dyn fmt::Debug) {}
}

/// The operation (`SELECT`, `INSERT`…) and the table a statement works on.
/// A `WITH` whose first query writes (`WITH row AS (INSERT INTO outbox …)
/// SELECT …`) is named by that write.
pub fn sql_operation_and_table(sql: &str) -> (String, Option<String>) {
    let words: Vec<&str> = sql.split_whitespace().collect();
    if words
        .first()
        .is_some_and(|w| w.eq_ignore_ascii_case("WITH"))
        && let Some(at) = words.iter().position(|w| w.eq_ignore_ascii_case("AS"))
    {
        let inner = words[at + 1..].join(" ");
        let (operation, table) = sql_operation_and_table(inner.trim_start_matches('('));
        if matches!(operation.as_str(), "INSERT" | "UPDATE" | "DELETE") {
            return (operation, table);
        }
    }
    let operation = words
        .first()
        .map(|w| {
            w.trim_matches(|c: char| !c.is_ascii_alphabetic())
                .to_ascii_uppercase()
        })
        .unwrap_or_default();
    let after = |keyword: &str| {
        words
            .iter()
            .position(|w| w.eq_ignore_ascii_case(keyword))
            .and_then(|i| words.get(i + 1))
    };
    let table = match operation.as_str() {
        "INSERT" => after("INTO"),
        "UPDATE" => words.get(1),
        "DELETE" | "SELECT" | "WITH" => after("FROM"),
        _ => None,
    };
    let table = table
        .map(|t| {
            t.trim_matches(|c: char| c == '"' || c == '(' || c == ')' || c == ',' || c == ';')
                .to_owned()
        })
        .filter(|t| {
            !t.is_empty()
                && t.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        });
    (operation, table)
}

impl<S> tracing_subscriber::Layer<S> for SqlSpans
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_event(&self, event: &tracing::Event<'_>, ctx: tracing_subscriber::layer::Context<'_, S>) {
        let mut fields = SqlEventFields::default();
        event.record(&mut fields);
        let sql = if fields.statement.trim().is_empty() {
            fields.summary.trim_end_matches(" …")
        } else {
            fields.statement.trim()
        };
        let (operation, table) = sql_operation_and_table(sql);
        let parent = event_span_context(ctx.event_span(event), &self.dispatch)
            .map(|sc| Context::new().with_remote_span_context(sc))
            .unwrap_or_default();
        let end = SystemTime::now();
        let start = end
            .checked_sub(Duration::from_secs_f64(fields.elapsed_secs.max(0.0)))
            .unwrap_or(end);
        let mut attributes = vec![
            KeyValue::new("db.system.name", "postgresql"),
            KeyValue::new("db.operation.name", operation.clone()),
        ];
        let name = match &table {
            Some(table) => {
                attributes.push(KeyValue::new("db.collection.name", table.clone()));
                format!("{operation} {table}")
            }
            None => operation,
        };
        if let Some(rows) = fields.rows {
            attributes.push(KeyValue::new("db.response.returned_rows", rows));
        }
        let mut span = self
            .tracer
            .span_builder(name)
            .with_kind(SpanKind::Client)
            .with_start_time(start)
            .with_attributes(attributes)
            .start_with_context(&self.tracer, &parent);
        span.end_with_timestamp(end);
    }
}

/// A CLIENT span for one SQL statement run where sqlx's statement events do
/// not reach the service's span (SQLite, whose statements run on a worker
/// thread): `db.system.name`, `db.operation.name`, `db.collection.name`,
/// named like the PostgreSQL ones ("SELECT products"); no statement text.
pub fn sql_client_span(system: &'static str, sql: &str) -> tracing::Span {
    let (operation, table) = sql_operation_and_table(sql);
    let name = match &table {
        Some(table) => format!("{operation} {table}"),
        None => operation.clone(),
    };
    let span = tracing::info_span!(
        "db.statement",
        otel.name = %name,
        otel.kind = "client",
        db.system.name = system,
        db.operation.name = %operation,
        db.collection.name = tracing::field::Empty,
    );
    if let Some(table) = table {
        span.record("db.collection.name", table.as_str());
    }
    span
}

struct HeaderInjector<'a>(&'a mut http::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            http::header::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// Writes `cx`'s trace context and baggage into HTTP (or gRPC) headers.
pub fn inject(cx: &Context, headers: &mut http::HeaderMap) {
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(cx, &mut HeaderInjector(headers));
    });
}

/// The trace context and baggage that HTTP (or gRPC) headers carry.
pub fn extract(headers: &http::HeaderMap) -> Context {
    opentelemetry::global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(headers)))
}

/// Makes `span` a child of the trace context that `headers` carry (an
/// incoming `traceparent`), if they carry one.
pub fn continue_trace(span: &tracing::Span, headers: &http::HeaderMap) {
    let parent = extract(headers);
    if parent.has_active_span() {
        let _ = span.set_parent(parent);
    }
}

/// The server span of one HTTP request, with the semantic-convention fields
/// (`http.response.status_code` and `request_id` recorded later), continuing
/// the caller's trace when the headers carry one.
pub fn http_server_span(
    method: &http::Method,
    route: &str,
    path: &str,
    headers: &http::HeaderMap,
) -> tracing::Span {
    let span = tracing::info_span!(
        "http.request",
        otel.name = %format!("{method} {route}"),
        otel.kind = "server",
        http.request.method = %method,
        http.route = %route,
        url.path = %path,
        http.response.status_code = tracing::field::Empty,
        request_id = tracing::field::Empty,
    );
    continue_trace(&span, headers);
    span
}

/// The trace context and baggage that event headers carry.
pub fn context_from_headers(headers: &BTreeMap<String, String>) -> Context {
    let headers: std::collections::HashMap<String, String> = headers
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    opentelemetry::global::get_text_map_propagator(|p| p.extract(&headers))
}

/// `cx`'s W3C trace context and baggage as event headers.
pub fn headers_of(cx: &Context) -> BTreeMap<String, String> {
    let mut headers = std::collections::HashMap::new();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(cx, &mut headers));
    headers.into_iter().filter(|(_, v)| !v.is_empty()).collect()
}

/// The W3C trace context (`traceparent`, `tracestate`) and `baggage` of the
/// current span, to travel with an event.
pub fn current_trace_headers() -> BTreeMap<String, String> {
    headers_of(&tracing::Span::current().context())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_name_their_operation_and_table() {
        let cases = [
            (
                "INSERT INTO outbox (event_id, topic) VALUES ($1, $2)",
                "INSERT",
                Some("outbox"),
            ),
            (
                "SELECT o.id FROM outbox o WHERE o.published_at IS NULL",
                "SELECT",
                Some("outbox"),
            ),
            (
                "update stock SET on_hand = on_hand - $1",
                "UPDATE",
                Some("stock"),
            ),
            (
                "DELETE FROM \"carts\" WHERE user_id = $1",
                "DELETE",
                Some("carts"),
            ),
            ("SELECT pg_notify($1, '')", "SELECT", None),
            (
                "WITH row AS (INSERT INTO outbox (event_id) VALUES ($1) RETURNING id) SELECT pg_notify($2, id::text) FROM row",
                "INSERT",
                Some("outbox"),
            ),
            (
                "WITH recent AS (SELECT id FROM orders) SELECT * FROM recent",
                "WITH",
                Some("orders"),
            ),
            ("BEGIN", "BEGIN", None),
        ];
        for (sql, operation, table) in cases {
            let (op, tab) = sql_operation_and_table(sql);
            assert_eq!(op, operation, "{sql}");
            assert_eq!(tab.as_deref(), table, "{sql}");
        }
    }

    #[test]
    fn event_headers_round_trip_the_trace_context() {
        install_propagator();
        let mut headers = BTreeMap::new();
        headers.insert(
            "traceparent".to_owned(),
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_owned(),
        );
        headers.insert("baggage".to_owned(), "tenant=e2e".to_owned());
        let cx = context_from_headers(&headers);
        assert_eq!(
            cx.span().span_context().trace_id().to_string(),
            "0af7651916cd43dd8448eb211c80319c"
        );
        assert_eq!(headers_of(&cx), headers);
    }
}
