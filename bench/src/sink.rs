//! An OTLP/gRPC trace sink for the tracing-on benchmark run: accepts every
//! export and counts the spans, so the shop pays the full cost of exporting
//! at sampling 1.0 without a collector on the machine.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};

#[derive(Clone, Default)]
struct Sink {
    spans: Arc<AtomicU64>,
}

#[tonic::async_trait]
impl TraceService for Sink {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let spans: usize = request
            .get_ref()
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum();
        self.spans.fetch_add(spans as u64, Ordering::Relaxed);
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

/// Serves until SIGTERM or Ctrl-C, then prints how many spans arrived.
pub async fn serve(addr: SocketAddr) -> anyhow::Result<()> {
    let sink = Sink::default();
    let spans = Arc::clone(&sink.spans);
    let stop = async {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async {
                match term.as_mut() {
                    Some(term) => { term.recv().await; }
                    None => std::future::pending::<()>().await,
                }
            } => {}
        }
    };
    tonic::transport::Server::builder()
        .add_service(TraceServiceServer::new(sink).max_decoding_message_size(64 << 20))
        .serve_with_shutdown(addr, stop)
        .await?;
    println!(
        "otlp sink: {} spans received",
        spans.load(Ordering::Relaxed)
    );
    Ok(())
}
