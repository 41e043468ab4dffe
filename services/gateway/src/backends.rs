//! The gRPC services behind the gateway: one client and one circuit breaker
//! each, and the one way to call them (deadline, breaker, span, metrics).

use std::fmt;
use std::future::Future;
use std::time::{Duration, Instant};

use storefront_proto::cart::v1::cart_service_client::CartServiceClient;
use storefront_proto::cart::v1::cart_service_server;
use storefront_proto::checkout::v1::checkout_service_client::CheckoutServiceClient;
use storefront_proto::checkout::v1::checkout_service_server;
use storefront_proto::orders::v1::order_service_client::OrderServiceClient;
use storefront_proto::orders::v1::order_service_server;
use storefront_proto::product::v1::product_service_client::ProductServiceClient;
use storefront_proto::product::v1::product_service_server;
use storefront_runtime::StartError;
use storefront_runtime::client::TracedChannel as Channel;
use tonic::{Code, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tracing::Instrument;

use crate::config::Config;
use storefront_runtime::breaker::{
    BreakerError, BreakerSettings, CircuitBreaker, is_backend_failure,
};

/// Longest wait for a backend's health answer on `/readyz`.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BackendName {
    Product,
    Cart,
    Checkout,
    Orders,
}

impl BackendName {
    pub fn as_str(self) -> &'static str {
        match self {
            BackendName::Product => "product",
            BackendName::Cart => "cart",
            BackendName::Checkout => "checkout",
            BackendName::Orders => "orders",
        }
    }

    /// The code of a NOT_FOUND that carries no reason of its own.
    pub fn not_found_code(self) -> &'static str {
        match self {
            BackendName::Product => "product_not_found",
            BackendName::Cart => "item_not_found",
            BackendName::Checkout => "checkout_not_found",
            BackendName::Orders => "order_not_found",
        }
    }

    /// The gRPC service name its health service reports on.
    fn grpc_service(self) -> &'static str {
        match self {
            BackendName::Product => product_service_server::SERVICE_NAME,
            BackendName::Cart => cart_service_server::SERVICE_NAME,
            BackendName::Checkout => checkout_service_server::SERVICE_NAME,
            BackendName::Orders => order_service_server::SERVICE_NAME,
        }
    }
}

impl fmt::Display for BackendName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a backend call gave no answer the handler can use.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("the {backend} circuit is open")]
    Open {
        backend: BackendName,
        retry_after: Duration,
    },
    #[error("{backend} answered {}: {}", .status.code(), .status.message())]
    Status {
        backend: BackendName,
        status: Status,
    },
}

/// One backend service: its client, its breaker, its deadline.
#[derive(Debug)]
pub struct Backend<C> {
    name: BackendName,
    client: C,
    channel: Channel,
    breaker: CircuitBreaker,
    timeout: Duration,
}

impl<C: Clone> Backend<C> {
    /// `timeout` is the usual deadline of a call; `longest` bounds any call on the channel.
    fn new(
        name: BackendName,
        uri: &str,
        (timeout, longest): (Duration, Duration),
        breaker: BreakerSettings,
        client: impl FnOnce(Channel) -> C,
    ) -> Result<Self, StartError> {
        let channel = storefront_runtime::client::channel(uri, longest.max(timeout))?;
        Ok(Backend {
            name,
            client: client(channel.clone()),
            channel,
            breaker: CircuitBreaker::new(name.as_str(), breaker),
            timeout,
        })
    }

    /// Calls `rpc` with `message` through the breaker, within the usual deadline.
    pub async fn call<M, T, F, Fut>(
        &self,
        rpc: &'static str,
        message: M,
        call: F,
    ) -> Result<T, BackendError>
    where
        F: FnOnce(C, tonic::Request<M>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        self.call_within(self.timeout, rpc, message, call).await
    }

    /// [`call`](Self::call) with a deadline of its own. A call that is too slow
    /// ends as DEADLINE_EXCEEDED, whichever timer (ours, the channel's or the
    /// server's) fires first.
    pub async fn call_within<M, T, F, Fut>(
        &self,
        timeout: Duration,
        rpc: &'static str,
        message: M,
        call: F,
    ) -> Result<T, BackendError>
    where
        F: FnOnce(C, tonic::Request<M>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let mut request = tonic::Request::new(message);
        request.set_timeout(timeout);
        let pending = call(self.client.clone(), request);
        let bounded = async move {
            match tokio::time::timeout(timeout, pending).await {
                Ok(answer) => answer.map_err(as_deadline),
                Err(_) => Err(Status::deadline_exceeded(format!(
                    "no answer within {timeout:?}"
                ))),
            }
        };
        let span = tracing::info_span!(
            "grpc.client",
            otel.kind = "client",
            rpc.system = "grpc",
            rpc.service = self.name.grpc_service(),
            rpc.method = rpc,
            rpc.grpc.status_code = tracing::field::Empty,
        );
        let started = Instant::now();
        let result = self
            .breaker
            .call(bounded, counts_against_backend)
            .instrument(span.clone())
            .await;
        let outcome = match &result {
            Ok(_) => "OK".to_owned(),
            Err(BreakerError::Open(_)) => "CIRCUIT_OPEN".to_owned(),
            Err(BreakerError::Call(status)) => format!("{:?}", status.code()),
        };
        span.record("rpc.grpc.status_code", outcome.as_str());
        let labels = [
            ("rpc_service", self.name.grpc_service().to_owned()),
            ("rpc_method", rpc.to_owned()),
            ("grpc_code", outcome),
        ];
        metrics::counter!("rpc_client_requests_total", &labels).increment(1);
        metrics::histogram!("rpc_client_duration_seconds", &labels)
            .record(started.elapsed().as_secs_f64());
        match result {
            Ok(response) => Ok(response.into_inner()),
            Err(BreakerError::Open(open)) => Err(BackendError::Open {
                backend: self.name,
                retry_after: open.retry_after,
            }),
            Err(BreakerError::Call(status)) => Err(BackendError::Status {
                backend: self.name,
                status,
            }),
        }
    }

    /// True when the backend's health service says its gRPC service is SERVING.
    /// Bypasses the breaker: readiness reports the backend, not our view of it.
    async fn serving(&self) -> bool {
        let mut health = HealthClient::new(self.channel.clone());
        let mut request = tonic::Request::new(tonic_health::pb::HealthCheckRequest {
            service: self.name.grpc_service().to_owned(),
        });
        let wait = self.timeout.min(HEALTH_TIMEOUT);
        request.set_timeout(wait);
        match tokio::time::timeout(wait, health.check(request)).await {
            Ok(Ok(answer)) => answer.get_ref().status == ServingStatus::Serving as i32,
            Ok(Err(status)) => {
                tracing::debug!(backend = %self.name, %status, "health check failed");
                false
            }
            Err(_) => false,
        }
    }
}

/// What opens a circuit: the backend's own faults. A checkout the service
/// accepted and left to its recovery loop (CHECKOUT_PENDING: one of *its*
/// participants is down) is an answer, and says the checkout service is up.
fn counts_against_backend(status: &Status) -> bool {
    is_backend_failure(status)
        && storefront_runtime::error::reason_of(status).as_deref() != Some("CHECKOUT_PENDING")
}

/// Tonic reports its own channel timeout as CANCELLED ("Timeout expired"):
/// the gateway never cancels a call it still waits for, so that is a deadline.
fn as_deadline(status: Status) -> Status {
    if status.code() == Code::Cancelled {
        Status::deadline_exceeded(status.message().to_owned())
    } else {
        status
    }
}

/// Every backend of the gateway.
#[derive(Debug)]
pub struct Backends {
    pub product: Backend<ProductServiceClient<Channel>>,
    pub cart: Backend<CartServiceClient<Channel>>,
    pub checkout: Backend<CheckoutServiceClient<Channel>>,
    pub orders: Backend<OrderServiceClient<Channel>>,
    /// The deadline of a Checkout call (the whole saga); other calls get the usual one.
    pub checkout_timeout: Duration,
}

impl Backends {
    /// Lazily connected clients: a backend that starts later is not a start-up failure.
    pub fn connect(config: &Config) -> Result<Self, StartError> {
        let breaker = BreakerSettings {
            failure_threshold: config.breaker_failure_threshold,
            open_for: config.breaker_open_duration,
        };
        let timeout = (config.backend_timeout, config.backend_timeout);
        Ok(Backends {
            product: Backend::new(
                BackendName::Product,
                &config.product_url,
                timeout,
                breaker,
                ProductServiceClient::new,
            )?,
            cart: Backend::new(
                BackendName::Cart,
                &config.cart_url,
                timeout,
                breaker,
                CartServiceClient::new,
            )?,
            checkout: Backend::new(
                BackendName::Checkout,
                &config.checkout_url,
                (config.backend_timeout, config.checkout_timeout),
                breaker,
                CheckoutServiceClient::new,
            )?,
            orders: Backend::new(
                BackendName::Orders,
                &config.orders_url,
                timeout,
                breaker,
                OrderServiceClient::new,
            )?,
            checkout_timeout: config.checkout_timeout,
        })
    }

    /// Each backend and whether it is serving, asked all at once.
    pub async fn readiness(&self) -> Vec<(BackendName, bool)> {
        let (product, cart, checkout, orders) = tokio::join!(
            self.product.serving(),
            self.cart.serving(),
            self.checkout.serving(),
            self.orders.serving(),
        );
        vec![
            (BackendName::Product, product),
            (BackendName::Cart, cart),
            (BackendName::Checkout, checkout),
            (BackendName::Orders, orders),
        ]
    }
}
