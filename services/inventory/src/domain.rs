//! Reservation types, checked once at the gRPC edge.

use storefront_proto::inventory::v1 as pb;
use storefront_runtime::FieldError;
use uuid::Uuid;

/// Largest number of lines in one reservation (a cart holds at most 50).
pub const MAX_LINES: usize = 100;
/// Largest quantity of one line.
pub const MAX_QUANTITY: i32 = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Line {
    pub product_id: i64,
    pub quantity: i32,
}

/// A checked Reserve request: a checkout id and distinct lines, sorted by
/// product so every transaction locks stock rows in the same order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReserveOrder {
    pub checkout_id: Uuid,
    pub lines: Vec<Line>,
}

impl TryFrom<&pb::ReserveRequest> for ReserveOrder {
    type Error = FieldError;

    fn try_from(request: &pb::ReserveRequest) -> Result<Self, Self::Error> {
        let checkout_id =
            storefront_runtime::error::parse_uuid("checkout_id", &request.checkout_id)?;
        if request.lines.is_empty() {
            return Err(FieldError::new("lines", "must hold at least one line"));
        }
        if request.lines.len() > MAX_LINES {
            return Err(FieldError::new(
                "lines",
                format!("at most {MAX_LINES} lines, got {}", request.lines.len()),
            ));
        }
        let mut lines = Vec::with_capacity(request.lines.len());
        for line in &request.lines {
            if line.product_id <= 0 {
                return Err(FieldError::new(
                    "lines.product_id",
                    format!("must be a positive product id, got {}", line.product_id),
                ));
            }
            if !(1..=MAX_QUANTITY).contains(&line.quantity) {
                return Err(FieldError::new(
                    "lines.quantity",
                    format!(
                        "must be between 1 and {MAX_QUANTITY}, got {} for product {}",
                        line.quantity, line.product_id
                    ),
                ));
            }
            lines.push(Line {
                product_id: line.product_id,
                quantity: line.quantity,
            });
        }
        lines.sort();
        if let Some(pair) = lines
            .windows(2)
            .find(|pair| pair[0].product_id == pair[1].product_id)
        {
            return Err(FieldError::new(
                "lines",
                format!("product {} appears more than once", pair[0].product_id),
            ));
        }
        Ok(ReserveOrder { checkout_id, lines })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReservationStatus {
    Pending,
    Confirmed,
    Released,
    Expired,
    /// Confirmed, then its order was cancelled: the stock is back on hand.
    Returned,
}

impl ReservationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ReservationStatus::Pending => "PENDING",
            ReservationStatus::Confirmed => "CONFIRMED",
            ReservationStatus::Released => "RELEASED",
            ReservationStatus::Expired => "EXPIRED",
            ReservationStatus::Returned => "RETURNED",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "PENDING" => Some(ReservationStatus::Pending),
            "CONFIRMED" => Some(ReservationStatus::Confirmed),
            "RELEASED" => Some(ReservationStatus::Released),
            "EXPIRED" => Some(ReservationStatus::Expired),
            "RETURNED" => Some(ReservationStatus::Returned),
            _ => None,
        }
    }
}

impl From<ReservationStatus> for pb::ReservationStatus {
    fn from(status: ReservationStatus) -> Self {
        match status {
            ReservationStatus::Pending => pb::ReservationStatus::Pending,
            ReservationStatus::Confirmed => pb::ReservationStatus::Confirmed,
            ReservationStatus::Released => pb::ReservationStatus::Released,
            ReservationStatus::Expired => pb::ReservationStatus::Expired,
            ReservationStatus::Returned => pb::ReservationStatus::Returned,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub id: Uuid,
    pub checkout_id: Uuid,
    pub status: ReservationStatus,
    pub lines: Vec<Line>,
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(lines: &[(i64, i32)]) -> pb::ReserveRequest {
        pb::ReserveRequest {
            checkout_id: Uuid::new_v4().to_string(),
            lines: lines
                .iter()
                .map(|&(product_id, quantity)| pb::ReservationLine {
                    product_id,
                    quantity,
                })
                .collect(),
        }
    }

    fn field_of(result: Result<ReserveOrder, FieldError>) -> &'static str {
        result.err().map_or("", |e| e.field)
    }

    #[test]
    fn lines_are_sorted_by_product() {
        let order = ReserveOrder::try_from(&request(&[(3, 1), (1, 2)])).map(|o| o.lines);
        assert_eq!(
            order,
            Ok(vec![
                Line {
                    product_id: 1,
                    quantity: 2
                },
                Line {
                    product_id: 3,
                    quantity: 1
                }
            ])
        );
    }

    #[test]
    fn bad_lines_name_their_field() {
        assert_eq!(field_of(ReserveOrder::try_from(&request(&[]))), "lines");
        assert_eq!(
            field_of(ReserveOrder::try_from(&request(&[(1, 0)]))),
            "lines.quantity"
        );
        assert_eq!(
            field_of(ReserveOrder::try_from(&request(&[(1, -2)]))),
            "lines.quantity"
        );
        assert_eq!(
            field_of(ReserveOrder::try_from(&request(&[(0, 1)]))),
            "lines.product_id"
        );
        assert_eq!(
            field_of(ReserveOrder::try_from(&request(&[(2, 1), (2, 3)]))),
            "lines"
        );
        let mut bad_id = request(&[(1, 1)]);
        bad_id.checkout_id = "not-a-uuid".into();
        assert_eq!(field_of(ReserveOrder::try_from(&bad_id)), "checkout_id");
    }
}
