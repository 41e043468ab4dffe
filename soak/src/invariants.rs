//! The shop's invariants as pure functions of what the databases, Kafka and
//! the clients hold ([`Facts`]); each gives a [`Verdict`] with counts. Loading
//! the facts is `facts.rs`'s job, so everything here is unit-tested on
//! hand-made data.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;
use uuid::Uuid;

use crate::client_log::{ClientRecord, Op};

/// The session states that end a saga.
/// Final statuses: NEEDS_ATTENTION ends a session a person must settle
/// (counted in the report, beside the invariant).
const TERMINAL: [&str; 3] = ["COMPLETED", "FAILED", "NEEDS_ATTENTION"];
/// At most this many example ids per verdict, enough to start digging.
const EXAMPLES: usize = 5;

#[derive(Debug, Clone)]
pub struct Session {
    pub id: Uuid,
    pub user_id: String,
    pub idempotency_key: String,
    pub status: String,
    pub total_minor: i64,
    /// (product id, quantity) of each line the session bought.
    pub items: Vec<(i64, i64)>,
}

#[derive(Debug, Clone)]
pub struct Payment {
    pub checkout_id: Uuid,
    pub amount_minor: i64,
    pub status: String,
    /// The sum of its refunds (there is at most one today).
    pub refunded_minor: i64,
}

#[derive(Debug, Clone)]
pub struct Reservation {
    pub checkout_id: Uuid,
    pub status: String,
    /// (product id, units).
    pub lines: Vec<(i64, i64)>,
}

#[derive(Debug, Clone, Copy)]
pub struct Stock {
    pub product_id: i64,
    pub on_hand: i64,
    pub reserved: i64,
}

#[derive(Debug, Clone)]
pub struct Order {
    pub checkout_id: Uuid,
    pub status: String,
}

#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// The reason header's value; `None` when the header is absent.
    pub reason: Option<String>,
}

/// Everything the checks read.
#[derive(Debug, Default)]
pub struct Facts {
    pub sessions: Vec<Session>,
    pub payments: Vec<Payment>,
    pub reservations: Vec<Reservation>,
    pub stock: Vec<Stock>,
    pub orders: Vec<Order>,
    pub dead_letters: Vec<DeadLetter>,
    /// Units per product when the run started.
    pub start_units: BTreeMap<i64, i64>,
    /// What clients saw; `None` when no log was given (those checks are skipped).
    pub client: Option<Vec<ClientRecord>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Holds,
    Fails,
    /// Nothing to check it against (e.g. no client log).
    Skipped,
}

#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub name: &'static str,
    pub statement: &'static str,
    pub outcome: Outcome,
    /// How many things were looked at (sessions, products, records...).
    pub checked: u64,
    /// Violations by kind; every kind listed is a failure, and a passing
    /// verdict may still carry informational counts under `notes`.
    pub violations: BTreeMap<&'static str, u64>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub notes: BTreeMap<&'static str, u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub examples: Vec<String>,
}

impl Verdict {
    fn new(name: &'static str, statement: &'static str) -> Verdict {
        Verdict {
            name,
            statement,
            outcome: Outcome::Holds,
            checked: 0,
            violations: BTreeMap::new(),
            notes: BTreeMap::new(),
            examples: Vec::new(),
        }
    }

    fn violation(&mut self, kind: &'static str, example: impl FnOnce() -> String) {
        *self.violations.entry(kind).or_default() += 1;
        if self.examples.len() < EXAMPLES {
            self.examples.push(format!("{kind}: {}", example()));
        }
    }

    fn note(&mut self, kind: &'static str, count: u64) {
        *self.notes.entry(kind).or_default() += count;
    }

    fn finish(mut self) -> Verdict {
        if self.violations.values().any(|n| *n > 0) {
            self.outcome = Outcome::Fails;
        }
        self
    }

    fn skipped(mut self) -> Verdict {
        self.outcome = Outcome::Skipped;
        self
    }

    pub fn total_violations(&self) -> u64 {
        self.violations.values().sum()
    }
}

/// Every invariant, in the order they are reported.
pub fn check(facts: &Facts) -> Vec<Verdict> {
    let index = Index::new(facts);
    vec![
        completed_sessions(facts, &index),
        failed_sessions(facts, &index),
        stock_conserved(facts, &index),
        no_open_sessions(facts),
        one_order_per_checkout(facts, &index),
        client_successes_have_orders(facts, &index),
        dead_letters_have_reasons(facts),
    ]
}

/// Lookups by checkout id.
struct Index<'a> {
    sessions: HashMap<Uuid, &'a Session>,
    by_key: HashMap<(&'a str, &'a str), &'a Session>,
    payments: HashMap<Uuid, Vec<&'a Payment>>,
    reservations: HashMap<Uuid, Vec<&'a Reservation>>,
    orders: HashMap<Uuid, Vec<&'a Order>>,
}

impl<'a> Index<'a> {
    fn new(facts: &'a Facts) -> Index<'a> {
        let mut index = Index {
            sessions: HashMap::new(),
            by_key: HashMap::new(),
            payments: HashMap::new(),
            reservations: HashMap::new(),
            orders: HashMap::new(),
        };
        for session in &facts.sessions {
            index.sessions.insert(session.id, session);
            index.by_key.insert(
                (session.user_id.as_str(), session.idempotency_key.as_str()),
                session,
            );
        }
        for payment in &facts.payments {
            index
                .payments
                .entry(payment.checkout_id)
                .or_default()
                .push(payment);
        }
        for reservation in &facts.reservations {
            index
                .reservations
                .entry(reservation.checkout_id)
                .or_default()
                .push(reservation);
        }
        for order in &facts.orders {
            index
                .orders
                .entry(order.checkout_id)
                .or_default()
                .push(order);
        }
        index
    }

    fn orders(&self, id: Uuid) -> &[&'a Order] {
        self.orders.get(&id).map_or(&[], Vec::as_slice)
    }

    fn payments(&self, id: Uuid) -> &[&'a Payment] {
        self.payments.get(&id).map_or(&[], Vec::as_slice)
    }

    fn reservations(&self, id: Uuid) -> &[&'a Reservation] {
        self.reservations.get(&id).map_or(&[], Vec::as_slice)
    }
}

/// A charge that stands: taken and not (even partly) given back.
fn stands(payment: &Payment) -> bool {
    payment.status == "SUCCEEDED" && payment.refunded_minor == 0
}

/// Money the customer is out of after this payment.
fn net_charge(payment: &Payment) -> i64 {
    match payment.status.as_str() {
        "SUCCEEDED" | "REFUNDED" => payment.amount_minor - payment.refunded_minor,
        _ => 0,
    }
}

fn completed_sessions(facts: &Facts, index: &Index<'_>) -> Verdict {
    let mut v = Verdict::new(
        "completed_sessions",
        "every COMPLETED session has exactly one order, one charge that stands (for its total) and confirmed stock",
    );
    for session in facts.sessions.iter().filter(|s| s.status == "COMPLETED") {
        v.checked += 1;
        let id = session.id;
        let orders = index.orders(id);
        // A cancelled order gives its money and stock back by design: its
        // session is not judged by the rules of a standing sale.
        if orders.iter().any(|o| o.status == "CANCELLED") {
            v.note("cancelled_orders", 1);
            continue;
        }
        match orders.len() {
            1 => {}
            0 => v.violation("no_order", || id.to_string()),
            _ => v.violation("several_orders", || id.to_string()),
        }
        match index.payments(id) {
            [] => v.violation("no_charge", || id.to_string()),
            [payment] if !stands(payment) => v.violation("charge_not_standing", || {
                format!(
                    "{id} (payment {}, refunded {})",
                    payment.status, payment.refunded_minor
                )
            }),
            [payment] if payment.amount_minor != session.total_minor => {
                v.violation("charge_amount_differs", || {
                    format!(
                        "{id} (charged {}, total {})",
                        payment.amount_minor, session.total_minor
                    )
                });
            }
            [_] => {}
            _ => v.violation("several_charges", || id.to_string()),
        }
        match index.reservations(id) {
            [reservation] if reservation.status == "CONFIRMED" => {}
            [] => v.violation("stock_not_confirmed", || format!("{id} (no reservation)")),
            [reservation] => v.violation("stock_not_confirmed", || {
                format!("{id} (reservation {})", reservation.status)
            }),
            _ => v.violation("several_reservations", || id.to_string()),
        }
    }
    v.finish()
}

fn failed_sessions(facts: &Facts, index: &Index<'_>) -> Verdict {
    let mut v = Verdict::new(
        "failed_sessions",
        "every FAILED session has no net charge, holds no stock and has no order",
    );
    for session in facts.sessions.iter().filter(|s| s.status == "FAILED") {
        v.checked += 1;
        let id = session.id;
        let net: i64 = index.payments(id).iter().map(|p| net_charge(p)).sum();
        if net != 0 {
            v.violation("net_charge", || format!("{id} (net {net})"));
        }
        for reservation in index.reservations(id) {
            match reservation.status.as_str() {
                "PENDING" => v.violation("holds_reserved_stock", || id.to_string()),
                "CONFIRMED" => v.violation("holds_sold_stock", || id.to_string()),
                _ => {}
            }
        }
        if !index.orders(id).is_empty() {
            v.violation("has_order", || id.to_string());
        }
    }
    v.finish()
}

/// Per product: units sold (lines of CONFIRMED reservations) plus units on
/// hand equal the units at start; and the `reserved` counter equals the units
/// of PENDING reservations, so no hold is counted that nobody has.
fn stock_conserved(facts: &Facts, index: &Index<'_>) -> Verdict {
    let mut v = Verdict::new(
        "stock_conserved",
        "for every product, units sold plus units left equal the units at start",
    );
    let mut sold: BTreeMap<i64, i64> = BTreeMap::new();
    let mut held: BTreeMap<i64, i64> = BTreeMap::new();
    for reservation in &facts.reservations {
        let tally = match reservation.status.as_str() {
            "CONFIRMED" => &mut sold,
            "PENDING" => &mut held,
            _ => continue,
        };
        for (product, units) in &reservation.lines {
            *tally.entry(*product).or_default() += units;
        }
        if reservation.status == "CONFIRMED"
            && !index.sessions.contains_key(&reservation.checkout_id)
        {
            v.violation("sold_without_session", || {
                reservation.checkout_id.to_string()
            });
        }
    }
    for stock in &facts.stock {
        let Some(start) = facts.start_units.get(&stock.product_id) else {
            v.note("products_without_start_units", 1);
            continue;
        };
        v.checked += 1;
        let product = stock.product_id;
        let sold = sold.get(&product).copied().unwrap_or(0);
        let balance = *start - sold - stock.on_hand;
        if balance != 0 {
            v.violation("units_unaccounted", || {
                format!(
                    "product {product}: start {start}, sold {sold}, left {}, off by {balance}",
                    stock.on_hand
                )
            });
        }
        let pending = held.get(&product).copied().unwrap_or(0);
        if stock.reserved != pending {
            v.violation("reserved_counter_differs", || {
                format!(
                    "product {product}: reserved {}, pending holds {pending}",
                    stock.reserved
                )
            });
        }
        v.note("units_sold", u64::try_from(sold).unwrap_or(0));
        v.note("units_left", u64::try_from(stock.on_hand).unwrap_or(0));
        v.note("units_at_start", u64::try_from(*start).unwrap_or(0));
    }
    for product in facts.start_units.keys() {
        if !facts.stock.iter().any(|s| s.product_id == *product) {
            v.violation("product_missing", || format!("product {product}"));
        }
    }
    v.finish()
}

fn no_open_sessions(facts: &Facts) -> Verdict {
    let mut v = Verdict::new("no_open_sessions", "no session is left non-terminal");
    let mut open: BTreeMap<String, u64> = BTreeMap::new();
    for session in &facts.sessions {
        v.checked += 1;
        if !TERMINAL.contains(&session.status.as_str()) {
            *open.entry(session.status.clone()).or_default() += 1;
            v.violation("open", || format!("{} ({})", session.id, session.status));
        }
    }
    let attention = facts
        .sessions
        .iter()
        .filter(|s| s.status == "NEEDS_ATTENTION")
        .count() as u64;
    if attention > 0 {
        v.note("needs_attention", attention);
    }
    // The open ones by state, as notes beside the single violation count.
    for (status, count) in open {
        let kind: &'static str = match status.as_str() {
            "INITIATED" => "open_initiated",
            "INVENTORY_RESERVED" => "open_inventory_reserved",
            "PAYMENT_PENDING" => "open_payment_pending",
            "PAYMENT_COMPLETED" => "open_payment_completed",
            _ => "open_other",
        };
        v.note(kind, count);
    }
    v.finish()
}

/// No checkout is ordered twice: one order per checkout id, no order without
/// a completed session, and (from the client log) one cart the client filled
/// once is bought at most once, whatever keys it spent on it.
fn one_order_per_checkout(facts: &Facts, index: &Index<'_>) -> Verdict {
    let mut v = Verdict::new(
        "one_order_per_checkout",
        "no order exists twice for one checkout (one checkout id, or one cart checked out under several keys)",
    );
    for (id, orders) in &index.orders {
        v.checked += 1;
        if orders.len() > 1 {
            v.violation("several_orders_for_one_checkout_id", || id.to_string());
        }
        match index.sessions.get(id) {
            None => v.violation("order_without_session", || id.to_string()),
            Some(session) if session.status != "COMPLETED" => {
                v.violation("order_for_unfinished_or_failed_session", || {
                    format!("{id} ({})", session.status)
                });
            }
            Some(_) => {}
        }
    }
    if let Some(client) = &facts.client {
        // Every key a client spent on each cart it filled.
        let mut keys: BTreeMap<(&str, &str), BTreeSet<&str>> = BTreeMap::new();
        for record in client.iter().filter(|r| r.op == Op::Checkout) {
            if let (Some(cart), Some(key)) = (&record.cart, &record.key) {
                keys.entry((record.user.as_str(), cart.as_str()))
                    .or_default()
                    .insert(key.as_str());
            }
        }
        for ((user, cart), keys) in &keys {
            let completed: Vec<Uuid> = keys
                .iter()
                .filter_map(|key| index.by_key.get(&(*user, *key)))
                .filter(|s| s.status == "COMPLETED")
                .map(|s| s.id)
                .collect();
            v.note("client_carts", 1);
            // Two sales of one cart are fine when the second bought only
            // what the client added while the first was under way; a cart
            // bought twice is more units than the client ever wanted.
            let wanted = crate::client_log::wanted(client, user, cart);
            let over_bought = wanted.is_empty()
                || completed
                    .iter()
                    .filter_map(|id| index.sessions.get(id))
                    .flat_map(|s| s.items.iter())
                    .fold(
                        BTreeMap::<i64, i64>::new(),
                        |mut bought, (product, quantity)| {
                            *bought.entry(*product).or_default() += quantity;
                            bought
                        },
                    )
                    .iter()
                    .any(|(product, bought)| *bought > wanted.get(product).copied().unwrap_or(0));
            if completed.len() > 1 && !over_bought {
                v.note("carts_bought_in_two_parts", 1);
            }
            if completed.len() > 1 && over_bought {
                v.violation("cart_bought_twice", || {
                    format!("user {user} cart {cart}: sessions {completed:?}")
                });
                v.note("extra_orders", completed.len() as u64 - 1);
            }
        }
    }
    v.finish()
}

fn client_successes_have_orders(facts: &Facts, index: &Index<'_>) -> Verdict {
    let v = Verdict::new(
        "client_successes_have_orders",
        "every 201 (or COMPLETED) a client received has its order; no client told of a failure was charged for a completed sale",
    );
    let Some(client) = &facts.client else {
        return v.skipped();
    };
    let mut v = v;
    for record in client {
        let completed = record.saw_completed();
        if !completed && !record.saw_failed() {
            continue;
        }
        v.checked += 1;
        let Some(id) = record.checkout_id.as_deref() else {
            v.violation("answer_without_checkout_id", || {
                format!("user {}", record.user)
            });
            continue;
        };
        let Ok(id) = Uuid::parse_str(id) else {
            v.violation("answer_with_bad_checkout_id", || id.to_owned());
            continue;
        };
        let session = index.sessions.get(&id);
        if completed {
            if index.orders(id).is_empty() {
                v.violation("no_order", || id.to_string());
            }
            if session.is_none_or(|s| s.status != "COMPLETED") {
                v.violation("session_not_completed", || {
                    format!(
                        "{id} ({})",
                        session.map_or("no session", |s| s.status.as_str())
                    )
                });
            }
        } else if session.is_some_and(|s| s.status == "COMPLETED") {
            v.violation("told_failed_but_completed", || id.to_string());
        }
    }
    v.finish()
}

fn dead_letters_have_reasons(facts: &Facts) -> Verdict {
    let mut v = Verdict::new("dead_letters_have_reasons", "every DLQ record has a reason");
    for record in &facts.dead_letters {
        v.checked += 1;
        if record.reason.as_deref().is_none_or(|r| r.trim().is_empty()) {
            v.violation("no_reason", || {
                format!("{}[{}]@{}", record.topic, record.partition, record.offset)
            });
        }
    }
    v.finish()
}

#[cfg(test)]
#[path = "invariants_tests.rs"]
mod tests;
