//! Request values checked once at the edge (parse, don't validate): each
//! newtype is built from a path segment, a header or a JSON body, and a bad
//! value becomes an [`InputError`] whose code the client can branch on.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use http::header::CONTENT_TYPE;
use http::request::Parts;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use storefront_proto::common::v1 as common;
use storefront_proto::orders::v1 as orders;

use crate::problem::ApiError;

/// Largest quantity of one cart line.
pub const MAX_QUANTITY: i64 = 99;
/// Longest idempotency key, in characters.
pub const MAX_IDEMPOTENCY_KEY: usize = 255;
/// Largest page a list request may ask for.
pub const MAX_PAGE_SIZE: u32 = 100;
/// How long a request body may take to arrive in all (64 KiB at most).
pub const BODY_READ_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);
/// Longest page token; the backends' own tokens are far shorter.
const MAX_PAGE_TOKEN: usize = 256;

/// A request value that failed its check: which one, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    #[error("{0}")]
    ProductId(String),
    #[error("{0}")]
    Quantity(String),
    #[error("{0}")]
    OrderId(String),
    #[error("{0}")]
    CheckoutId(String),
    #[error("an Idempotency-Key header (or an `idempotency_key` body field) is required")]
    MissingIdempotencyKey,
    #[error("{0}")]
    IdempotencyKey(String),
    #[error("{0}")]
    OrderStatus(String),
    #[error("{0}")]
    Request(String),
}

impl InputError {
    /// The stable code of the problem document.
    pub fn code(&self) -> &'static str {
        match self {
            InputError::ProductId(_) => "invalid_product_id",
            InputError::Quantity(_) => "invalid_quantity",
            InputError::OrderId(_) => "invalid_order_id",
            InputError::CheckoutId(_) => "invalid_checkout_id",
            InputError::MissingIdempotencyKey => "missing_idempotency_key",
            InputError::IdempotencyKey(_) => "invalid_idempotency_key",
            InputError::OrderStatus(_) => "invalid_status",
            InputError::Request(_) => "invalid_request",
        }
    }
}

/// A catalog product id: a positive integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProductId(i64);

impl ProductId {
    pub fn get(self) -> i64 {
        self.0
    }

    fn from_json(value: Option<&Value>) -> Result<Self, InputError> {
        let value =
            value.ok_or_else(|| InputError::ProductId("product_id is required".to_owned()))?;
        match value.as_i64() {
            Some(id) if id > 0 => Ok(ProductId(id)),
            _ => Err(InputError::ProductId(format!(
                "product_id must be a positive integer, got {value}"
            ))),
        }
    }
}

/// How many of a product a cart line holds: 1..=99.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantity(i32);

impl Quantity {
    pub fn get(self) -> i32 {
        self.0
    }

    fn from_json(value: Option<&Value>) -> Result<Self, InputError> {
        let value = value.ok_or_else(|| InputError::Quantity("quantity is required".to_owned()))?;
        match value.as_i64().map(i32::try_from) {
            Some(Ok(quantity)) if (1..=MAX_QUANTITY).contains(&i64::from(quantity)) => {
                Ok(Quantity(quantity))
            }
            _ => Err(InputError::Quantity(format!(
                "quantity must be an integer from 1 to {MAX_QUANTITY}, got {value}"
            ))),
        }
    }
}

/// An order id: a UUID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderId(uuid::Uuid);

impl OrderId {
    pub fn get(self) -> uuid::Uuid {
        self.0
    }
}

/// A checkout session id: a UUID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckoutId(uuid::Uuid);

impl CheckoutId {
    pub fn get(self) -> uuid::Uuid {
        self.0
    }
}

/// A value that can be a path segment such as `{product_id}` or `{id}`.
pub trait PathValue: Sized {
    fn parse(raw: &str) -> Result<Self, InputError>;
}

impl PathValue for ProductId {
    fn parse(raw: &str) -> Result<Self, InputError> {
        match raw.parse::<i64>() {
            Ok(id) if id > 0 => Ok(ProductId(id)),
            _ => Err(InputError::ProductId(format!(
                "product id must be a positive integer, got {raw:?}"
            ))),
        }
    }
}

impl PathValue for OrderId {
    fn parse(raw: &str) -> Result<Self, InputError> {
        uuid::Uuid::parse_str(raw)
            .map(OrderId)
            .map_err(|_| InputError::OrderId(format!("order id must be a UUID, got {raw:?}")))
    }
}

impl PathValue for CheckoutId {
    fn parse(raw: &str) -> Result<Self, InputError> {
        uuid::Uuid::parse_str(raw)
            .map(CheckoutId)
            .map_err(|_| InputError::CheckoutId(format!("checkout id must be a UUID, got {raw:?}")))
    }
}

/// The one parameter of a route's path, parsed as `T`.
#[derive(Debug, Clone, Copy)]
pub struct Param<T>(pub T);

impl<S: Send + Sync, T: PathValue> FromRequestParts<S> for Param<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| InputError::Request(rejection.body_text()))?;
        Ok(Param(T::parse(&raw)?))
    }
}

/// A JSON request body. An empty body reads as `{}` (every field absent), so
/// each field's own check reports what is missing; a body that is not JSON,
/// or not an object of the expected shape, is `invalid_request`.
#[derive(Debug, Clone)]
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        if let Some(content_type) = request.headers().get(CONTENT_TYPE) {
            let content_type = content_type
                .to_str()
                .unwrap_or_default()
                .to_ascii_lowercase();
            let essence = content_type.split(';').next().unwrap_or_default().trim();
            if essence != "application/json" && !essence.ends_with("+json") {
                return Err(ApiError::UnsupportedMediaType(content_type));
            }
        }
        // However slowly it trickles in, a body gets this long in all: no
        // client holds a request (and its buffer) open by sending a byte now
        // and then.
        let read = tokio::time::timeout(BODY_READ_DEADLINE, Bytes::from_request(request, state));
        let bytes = read
            .await
            .map_err(|_| ApiError::RequestTimeout(BODY_READ_DEADLINE))?
            .map_err(|rejection| {
                if rejection.status() == http::StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::PayloadTooLarge
                } else {
                    InputError::Request(format!("cannot read the request body: {rejection}")).into()
                }
            })?;
        Ok(JsonBody(json_object(&bytes)?))
    }
}

/// Reads a JSON object as `T`; blank reads as `{}`. Arrays are refused even
/// where serde would map them onto a struct's fields by position.
fn json_object<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, InputError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return serde_json::from_slice(b"{}")
            .map_err(|e| InputError::Request(format!("a request body is required: {e}")));
    }
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| InputError::Request(format!("malformed JSON body: {e}")))?;
    if !value.is_object() {
        return Err(InputError::Request(
            "the request body must be a JSON object".to_owned(),
        ));
    }
    serde_json::from_value(value)
        .map_err(|e| InputError::Request(format!("unexpected JSON body: {e}")))
}

/// `?page_size=&page_token=` of a list route.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    /// 0 lets the backend choose.
    pub size: i32,
    pub token: String,
}

#[derive(Debug, Deserialize)]
struct RawPage {
    page_size: Option<String>,
    page_token: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for Page {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Query(raw) = Query::<RawPage>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| InputError::Request(rejection.body_text()))?;
        let size = match raw.page_size.as_deref() {
            None | Some("") => 0,
            Some(text) => match text.parse::<u32>() {
                Ok(n) if (1..=MAX_PAGE_SIZE).contains(&n) => n as i32,
                _ => {
                    return Err(InputError::Request(format!(
                        "page_size must be an integer from 1 to {MAX_PAGE_SIZE}, got {text:?}"
                    ))
                    .into());
                }
            },
        };
        let token = raw.page_token.unwrap_or_default();
        storefront_runtime::error::printable("page_token", &token, MAX_PAGE_TOKEN)
            .map_err(|error| InputError::Request(error.to_string()))?;
        Ok(Page { size, token })
    }
}

/// `POST /api/v1/cart/items` as sent: field types are checked by [`NewLine`].
#[derive(Debug, Deserialize)]
pub struct AddItemBody {
    product_id: Option<Value>,
    quantity: Option<Value>,
}

/// A line to add to a cart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewLine {
    pub product: ProductId,
    pub quantity: Quantity,
}

impl TryFrom<AddItemBody> for NewLine {
    type Error = InputError;

    fn try_from(body: AddItemBody) -> Result<Self, InputError> {
        Ok(NewLine {
            product: ProductId::from_json(body.product_id.as_ref())?,
            quantity: Quantity::from_json(body.quantity.as_ref())?,
        })
    }
}

/// `PUT /api/v1/cart/items/{product_id}` as sent.
#[derive(Debug, Deserialize)]
pub struct SetQuantityBody {
    quantity: Option<Value>,
}

impl TryFrom<SetQuantityBody> for Quantity {
    type Error = InputError;

    fn try_from(body: SetQuantityBody) -> Result<Self, InputError> {
        Quantity::from_json(body.quantity.as_ref())
    }
}

/// The key that makes a checkout safe to retry; scoped per user by the checkout service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn into_inner(self) -> String {
        self.0
    }

    /// The `Idempotency-Key` header wins; the body field is for clients that
    /// cannot set headers. Both present and different is a mistake worth naming.
    pub fn from_request(
        header: Option<&http::HeaderValue>,
        body: Option<String>,
    ) -> Result<Self, InputError> {
        let header = header
            .map(|value| {
                value.to_str().map(str::to_owned).map_err(|_| {
                    InputError::IdempotencyKey(
                        "Idempotency-Key must be visible ASCII characters".to_owned(),
                    )
                })
            })
            .transpose()?;
        let key = match (header, body) {
            (Some(header), Some(body)) if header != body => {
                return Err(InputError::IdempotencyKey(
                    "the Idempotency-Key header and the `idempotency_key` field differ".to_owned(),
                ));
            }
            (Some(key), _) | (None, Some(key)) => key,
            (None, None) => return Err(InputError::MissingIdempotencyKey),
        };
        let length = key.chars().count();
        if length == 0 {
            return Err(InputError::MissingIdempotencyKey);
        }
        if length > MAX_IDEMPOTENCY_KEY || key.chars().any(char::is_control) {
            return Err(InputError::IdempotencyKey(format!(
                "an idempotency key is 1 to {MAX_IDEMPOTENCY_KEY} printable characters, got {length}"
            )));
        }
        Ok(IdempotencyKey(key))
    }
}

/// `POST /api/v1/checkout` as sent; every field is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct CheckoutBody {
    pub idempotency_key: Option<String>,
    pub payment_method: Option<String>,
    pub shipping_address: Option<AddressBody>,
}

/// A shipping address as sent; each part is optional text.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct AddressBody {
    name: String,
    line1: String,
    line2: String,
    city: String,
    postal_code: String,
    country: String,
}

/// Longest part of an address and longest payment method name.
const MAX_TEXT: usize = 200;

/// A checkout request, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckoutOrder {
    pub key: IdempotencyKey,
    /// Empty lets the checkout service choose its default.
    pub payment_method: String,
    pub shipping_address: Option<common::ShippingAddress>,
}

impl CheckoutOrder {
    pub fn parse(
        header: Option<&http::HeaderValue>,
        body: CheckoutBody,
    ) -> Result<Self, InputError> {
        let key = IdempotencyKey::from_request(header, body.idempotency_key)?;
        let payment_method = body.payment_method.unwrap_or_default();
        text("payment_method", &payment_method)?;
        let shipping_address = body.shipping_address.map(address).transpose()?;
        Ok(CheckoutOrder {
            key,
            payment_method,
            shipping_address,
        })
    }
}

fn address(body: AddressBody) -> Result<common::ShippingAddress, InputError> {
    let parts = [
        ("shipping_address.name", &body.name),
        ("shipping_address.line1", &body.line1),
        ("shipping_address.line2", &body.line2),
        ("shipping_address.city", &body.city),
        ("shipping_address.postal_code", &body.postal_code),
        ("shipping_address.country", &body.country),
    ];
    for (field, value) in parts {
        text(field, value)?;
    }
    Ok(common::ShippingAddress {
        name: body.name,
        line1: body.line1,
        line2: body.line2,
        city: body.city,
        postal_code: body.postal_code,
        country: body.country,
    })
}

/// Free text of a checkout: at most [`MAX_TEXT`] printable characters (the
/// same check the checkout service makes at its own edge).
fn text(field: &'static str, value: &str) -> Result<(), InputError> {
    storefront_runtime::error::printable(field, value, MAX_TEXT)
        .map_err(|error| InputError::Request(error.to_string()))
}

/// `PATCH /api/v1/orders/{id}` as sent.
#[derive(Debug, Deserialize)]
pub struct OrderStatusBody {
    status: Option<Value>,
}

/// A status an order can be moved to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderStatus {
    Confirmed,
    Processing,
    Shipped,
    Delivered,
    Cancelled,
}

impl OrderStatus {
    const ALL: [(&'static str, OrderStatus); 5] = [
        ("CONFIRMED", OrderStatus::Confirmed),
        ("PROCESSING", OrderStatus::Processing),
        ("SHIPPED", OrderStatus::Shipped),
        ("DELIVERED", OrderStatus::Delivered),
        ("CANCELLED", OrderStatus::Cancelled),
    ];
}

impl From<OrderStatus> for orders::OrderStatus {
    fn from(status: OrderStatus) -> Self {
        match status {
            OrderStatus::Confirmed => orders::OrderStatus::Confirmed,
            OrderStatus::Processing => orders::OrderStatus::Processing,
            OrderStatus::Shipped => orders::OrderStatus::Shipped,
            OrderStatus::Delivered => orders::OrderStatus::Delivered,
            OrderStatus::Cancelled => orders::OrderStatus::Cancelled,
        }
    }
}

impl TryFrom<OrderStatusBody> for OrderStatus {
    type Error = InputError;

    fn try_from(body: OrderStatusBody) -> Result<Self, InputError> {
        let names = || {
            OrderStatus::ALL
                .iter()
                .map(|(name, _)| *name)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let text = match body.status {
            Some(Value::String(text)) => text,
            Some(other) => {
                return Err(InputError::OrderStatus(format!(
                    "status must be one of {}, got {other}",
                    names()
                )));
            }
            None => {
                return Err(InputError::OrderStatus(format!(
                    "status is required: one of {}",
                    names()
                )));
            }
        };
        OrderStatus::ALL
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(text.trim()))
            .map(|(_, status)| *status)
            .ok_or_else(|| {
                InputError::OrderStatus(format!("status must be one of {}, got {text:?}", names()))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn line(body: Value) -> Result<NewLine, &'static str> {
        let body: AddItemBody = json_object(body.to_string().as_bytes()).map_err(|_| "shape")?;
        NewLine::try_from(body).map_err(|e| e.code())
    }

    #[test]
    fn cart_lines_are_checked_field_by_field() {
        assert_eq!(
            line(json!({"product_id": 3, "quantity": 2})),
            Ok(NewLine {
                product: ProductId(3),
                quantity: Quantity(2)
            })
        );
        assert_eq!(
            line(json!({"product_id": "3", "quantity": 2})),
            Err("invalid_product_id")
        );
        assert_eq!(
            line(json!({"product_id": 0, "quantity": 2})),
            Err("invalid_product_id")
        );
        assert_eq!(line(json!({"quantity": 2})), Err("invalid_product_id"));
        for quantity in [json!(0), json!(100), json!(-1), json!(1.5), json!("2")] {
            assert_eq!(
                line(json!({"product_id": 1, "quantity": quantity})),
                Err("invalid_quantity"),
                "{quantity}"
            );
        }
        assert_eq!(line(json!({"product_id": 1})), Err("invalid_quantity"));
        assert_eq!(line(json!([1, 2])), Err("shape"));
        assert_eq!(line(json!("x")), Err("shape"));
        let blank: Result<AddItemBody, _> = json_object(b"  ");
        assert_eq!(
            blank
                .map_err(|e| e.code())
                .and_then(|b| NewLine::try_from(b).map_err(|e| e.code())),
            Err("invalid_product_id")
        );
        let broken: Result<AddItemBody, _> = json_object(b"{\"product_id\": ");
        assert_eq!(broken.map_err(|e| e.code()).err(), Some("invalid_request"));
    }

    #[test]
    fn path_ids_parse() {
        assert_eq!(ProductId::parse("42"), Ok(ProductId(42)));
        assert_eq!(
            ProductId::parse("abc").map_err(|e| e.code()),
            Err("invalid_product_id")
        );
        assert_eq!(
            ProductId::parse("-1").map_err(|e| e.code()),
            Err("invalid_product_id")
        );
        assert_eq!(
            OrderId::parse("nope").map_err(|e| e.code()),
            Err("invalid_order_id")
        );
        let id = uuid::Uuid::new_v4();
        assert_eq!(OrderId::parse(&id.to_string()), Ok(OrderId(id)));
        assert_eq!(
            CheckoutId::parse("x").map_err(|e| e.code()),
            Err("invalid_checkout_id")
        );
    }

    #[test]
    fn idempotency_keys_come_from_header_or_body() {
        let header = http::HeaderValue::from_static("key-1");
        let code = |r: Result<IdempotencyKey, InputError>| r.map_err(|e| e.code());
        assert_eq!(
            code(IdempotencyKey::from_request(Some(&header), None)),
            Ok(IdempotencyKey("key-1".into()))
        );
        assert_eq!(
            code(IdempotencyKey::from_request(None, Some("key-2".into()))),
            Ok(IdempotencyKey("key-2".into()))
        );
        assert_eq!(
            code(IdempotencyKey::from_request(None, None)),
            Err("missing_idempotency_key")
        );
        assert_eq!(
            code(IdempotencyKey::from_request(None, Some(String::new()))),
            Err("missing_idempotency_key")
        );
        assert_eq!(
            code(IdempotencyKey::from_request(None, Some("k".repeat(256)))),
            Err("invalid_idempotency_key")
        );
        assert!(IdempotencyKey::from_request(None, Some("k".repeat(255))).is_ok());
        assert_eq!(
            code(IdempotencyKey::from_request(
                Some(&header),
                Some("other".into())
            )),
            Err("invalid_idempotency_key")
        );
    }

    #[test]
    fn order_statuses_parse_by_name() {
        let parse = |v: Value| {
            serde_json::from_value::<OrderStatusBody>(v)
                .map_err(|_| "shape")
                .and_then(|b| OrderStatus::try_from(b).map_err(|e| e.code()))
        };
        assert_eq!(
            parse(json!({"status": "SHIPPED"})),
            Ok(OrderStatus::Shipped)
        );
        assert_eq!(
            parse(json!({"status": "cancelled"})),
            Ok(OrderStatus::Cancelled)
        );
        assert_eq!(parse(json!({"status": "LOST"})), Err("invalid_status"));
        assert_eq!(parse(json!({"status": 3})), Err("invalid_status"));
        assert_eq!(parse(json!({})), Err("invalid_status"));
    }
}
