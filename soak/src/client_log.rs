//! What clients saw: one JSON line per answer the soak's clients received
//! (or did not: status 0 is a timeout or a refused connection). The driver
//! writes it; the checker reads the checkout answers back, so a log written
//! by any other load tool in the same shape can be checked too.

use std::io::{BufRead as _, BufWriter, Write as _};
use std::path::Path;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

/// The request a record answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    CartClear,
    CartAdd,
    CartEdit,
    Checkout,
    /// `GET /api/v1/checkout/{id}` after a 202.
    CheckoutPoll,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::CartClear => "cart_clear",
            Op::CartAdd => "cart_add",
            Op::CartEdit => "cart_edit",
            Op::Checkout => "checkout",
            Op::CheckoutPoll => "checkout_poll",
        }
    }
}

/// One answer. Only `op`, `status` and `checkout_id` are needed by the
/// checker; `user`, `cart` and `key` let it tell one cart bought twice.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClientRecord {
    #[serde(default = "checkout_op")]
    pub op: Op,
    /// The HTTP status; 0 when no answer came.
    pub status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkout_id: Option<String>,
    /// The session status in the body (`COMPLETED`, `FAILED`, ...), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_status: Option<String>,
    /// The problem `code` of an error answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default)]
    pub user: String,
    /// The client's own name for one filled cart: every key spent on it
    /// belongs to one purchase, which must end in at most one order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cart: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// After a cart write that succeeded: the cart's (product id → quantity).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub cart_lines: std::collections::BTreeMap<i64, i64>,
    /// Seconds since the soak started.
    #[serde(default)]
    pub at_s: f64,
    #[serde(default)]
    pub latency_ms: f64,
}

fn checkout_op() -> Op {
    Op::Checkout
}

/// The most of each product the client ever had in one filled cart, from
/// its cart answers; empty when the log has no cart contents.
pub fn wanted(
    records: &[ClientRecord],
    user: &str,
    cart: &str,
) -> std::collections::BTreeMap<i64, i64> {
    let mut most = std::collections::BTreeMap::new();
    for record in records
        .iter()
        .filter(|r| r.user == user && r.cart.as_deref() == Some(cart))
    {
        for (product, quantity) in &record.cart_lines {
            let entry = most.entry(*product).or_insert(0);
            *entry = (*entry).max(*quantity);
        }
    }
    most
}

impl ClientRecord {
    /// The client was told its checkout completed: a 201, or a poll that read COMPLETED.
    pub fn saw_completed(&self) -> bool {
        match self.op {
            Op::Checkout => self.status == 201,
            Op::CheckoutPoll => {
                self.status == 200 && self.session_status.as_deref() == Some("COMPLETED")
            }
            _ => false,
        }
    }

    /// The client was told its checkout failed for good (decline, stock, ...).
    pub fn saw_failed(&self) -> bool {
        match self.op {
            // A 409 checkout_in_progress names another checkout still under
            // way: no verdict on it.
            Op::Checkout => {
                matches!(self.status, 402 | 409 | 422)
                    && self.checkout_id.is_some()
                    && self.code.as_deref() != Some("checkout_in_progress")
            }
            Op::CheckoutPoll => {
                self.status == 200 && self.session_status.as_deref() == Some("FAILED")
            }
            _ => false,
        }
    }
}

pub fn write(path: &Path, records: &[ClientRecord]) -> anyhow::Result<()> {
    let file = std::fs::File::create(path).with_context(|| format!("create {}", path.display()))?;
    let mut out = BufWriter::new(file);
    for record in records {
        serde_json::to_writer(&mut out, record)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

/// Reads a JSON-lines file; blank lines are skipped, a malformed one is an error.
pub fn read(path: &Path) -> anyhow::Result<Vec<ClientRecord>> {
    let file = std::fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
    let mut records = Vec::new();
    for (number, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let record = serde_json::from_str(&line)
            .with_context(|| format!("{}:{}: not a client record", path.display(), number + 1))?;
        records.push(record);
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minimal_line_is_a_checkout_answer() {
        let record: ClientRecord = serde_json::from_str(r#"{"checkout_id":"x","status":201}"#)
            .unwrap_or_else(|e| {
                panic!("{e}");
            });
        assert_eq!(record.op, Op::Checkout);
        assert!(record.saw_completed());
        assert!(!record.saw_failed());
    }

    #[test]
    fn a_poll_counts_by_the_status_it_read() {
        let mut record = ClientRecord {
            op: Op::CheckoutPoll,
            status: 200,
            checkout_id: Some("x".into()),
            session_status: Some("PAYMENT_PENDING".into()),
            code: None,
            user: "u".into(),
            cart: None,
            key: None,
            cart_lines: Default::default(),
            at_s: 0.0,
            latency_ms: 0.0,
        };
        assert!(!record.saw_completed() && !record.saw_failed());
        let mut busy = record.clone();
        busy.op = Op::Checkout;
        busy.status = 409;
        busy.code = Some("checkout_in_progress".into());
        assert!(
            !busy.saw_failed(),
            "another checkout under way is no failure"
        );
        busy.code = Some("insufficient_stock".into());
        assert!(busy.saw_failed());
        record.session_status = Some("FAILED".into());
        assert!(record.saw_failed());
    }
}
