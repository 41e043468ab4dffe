//! The checks on hand-made facts: a clean shop passes every one, and each
//! kind of damage is caught by the check meant for it.

use super::*;

fn id(n: u128) -> Uuid {
    Uuid::from_u128(n)
}

fn session(n: u128, status: &str) -> Session {
    Session {
        id: id(n),
        user_id: format!("user-{n}"),
        idempotency_key: format!("key-{n}"),
        status: status.to_owned(),
        total_minor: 1000,
        items: vec![(1, 1)],
    }
}

fn payment(n: u128, status: &str, refunded: i64) -> Payment {
    Payment {
        checkout_id: id(n),
        amount_minor: 1000,
        status: status.to_owned(),
        refunded_minor: refunded,
    }
}

fn reservation(n: u128, status: &str, units: i64) -> Reservation {
    Reservation {
        checkout_id: id(n),
        status: status.to_owned(),
        lines: vec![(1, units)],
    }
}

fn order(n: u128) -> Order {
    Order {
        checkout_id: id(n),
        status: "CONFIRMED".to_owned(),
    }
}

/// Session 1 completed (2 units), 2 declined, 3 failed after payment and
/// was refunded and released; 10 units at start, 8 left.
fn clean() -> Facts {
    Facts {
        sessions: vec![
            session(1, "COMPLETED"),
            session(2, "FAILED"),
            session(3, "FAILED"),
        ],
        payments: vec![
            payment(1, "SUCCEEDED", 0),
            payment(2, "DECLINED", 0),
            payment(3, "REFUNDED", 1000),
        ],
        reservations: vec![
            reservation(1, "CONFIRMED", 2),
            reservation(2, "RELEASED", 1),
            reservation(3, "EXPIRED", 4),
        ],
        stock: vec![Stock {
            product_id: 1,
            on_hand: 8,
            reserved: 0,
        }],
        orders: vec![order(1)],
        dead_letters: vec![DeadLetter {
            topic: "checkout-events.dlq".into(),
            partition: 0,
            offset: 0,
            reason: Some("malformed record".into()),
        }],
        start_units: BTreeMap::from([(1, 10)]),
        client: Some(vec![client(1, 201, "cart-a", "key-1")]),
    }
}

fn client(n: u128, status: u16, cart: &str, key: &str) -> ClientRecord {
    ClientRecord {
        op: Op::Checkout,
        status,
        checkout_id: Some(id(n).to_string()),
        session_status: None,
        code: None,
        user: format!("user-{n}"),
        cart: Some(cart.to_owned()),
        key: Some(key.to_owned()),
        cart_lines: Default::default(),
        at_s: 0.0,
        latency_ms: 1.0,
    }
}

fn verdict<'a>(verdicts: &'a [Verdict], name: &str) -> &'a Verdict {
    verdicts
        .iter()
        .find(|v| v.name == name)
        .unwrap_or_else(|| panic!("no verdict {name}"))
}

fn violations(facts: &Facts, name: &str) -> BTreeMap<&'static str, u64> {
    verdict(&check(facts), name).violations.clone()
}

#[test]
fn a_clean_shop_holds_every_invariant() {
    let verdicts = check(&clean());
    for v in &verdicts {
        assert_eq!(v.outcome, Outcome::Holds, "{v:?}");
    }
    assert_eq!(verdict(&verdicts, "completed_sessions").checked, 1);
    assert_eq!(verdict(&verdicts, "failed_sessions").checked, 2);
    assert_eq!(verdict(&verdicts, "stock_conserved").notes["units_sold"], 2);
}

#[test]
fn a_completed_session_needs_its_order_its_charge_and_its_stock() {
    let mut facts = clean();
    facts.orders.clear();
    facts.payments[0].refunded_minor = 1000;
    facts.payments[0].status = "REFUNDED".into();
    facts.reservations[0].status = "PENDING".into();
    let found = violations(&facts, "completed_sessions");
    assert_eq!(found["no_order"], 1);
    assert_eq!(found["charge_not_standing"], 1);
    assert_eq!(found["stock_not_confirmed"], 1);
}

#[test]
fn a_charge_for_another_amount_does_not_stand_for_the_total() {
    let mut facts = clean();
    facts.payments[0].amount_minor = 999;
    assert_eq!(
        violations(&facts, "completed_sessions")["charge_amount_differs"],
        1
    );
}

#[test]
fn a_failed_session_must_leave_no_money_and_no_stock_behind() {
    let mut facts = clean();
    facts.payments[1] = payment(2, "SUCCEEDED", 0);
    facts.payments[2].refunded_minor = 400;
    facts.reservations[1].status = "PENDING".into();
    facts.reservations[2].status = "CONFIRMED".into();
    facts.orders.push(order(3));
    let found = violations(&facts, "failed_sessions");
    assert_eq!(found["net_charge"], 2);
    assert_eq!(found["holds_reserved_stock"], 1);
    assert_eq!(found["holds_sold_stock"], 1);
    assert_eq!(found["has_order"], 1);
}

#[test]
fn expired_holds_are_not_sold_and_lost_units_are_counted() {
    let mut facts = clean();
    // Session 3's 4 expired units came back: 8 left is right. One unit
    // vanishing (7 left) is not.
    facts.stock[0].on_hand = 7;
    let found = violations(&facts, "stock_conserved");
    assert_eq!(found["units_unaccounted"], 1);
}

#[test]
fn the_reserved_counter_must_match_the_pending_holds() {
    let mut facts = clean();
    facts.stock[0].reserved = 3;
    assert_eq!(
        violations(&facts, "stock_conserved")["reserved_counter_differs"],
        1
    );
    // ... and a pending hold of 3 makes it right again.
    facts.sessions.push(session(4, "PAYMENT_PENDING"));
    facts.reservations.push(reservation(4, "PENDING", 3));
    assert!(violations(&facts, "stock_conserved").is_empty());
}

#[test]
fn open_sessions_are_counted_by_state() {
    let mut facts = clean();
    facts.sessions.push(session(4, "PAYMENT_PENDING"));
    facts.sessions.push(session(5, "INITIATED"));
    let verdicts = check(&facts);
    let v = verdict(&verdicts, "no_open_sessions");
    assert_eq!(v.outcome, Outcome::Fails);
    assert_eq!(v.violations["open"], 2);
    assert_eq!(v.notes["open_payment_pending"], 1);
    assert_eq!(v.notes["open_initiated"], 1);
}

/// The first client cart checked out again under a second key: a second
/// completed, charged, confirmed and ordered session of one unit.
fn second_sale_of_the_first_cart(facts: &mut Facts) {
    let mut second = session(6, "COMPLETED");
    second.user_id = "user-1".into();
    second.idempotency_key = "key-6".into();
    facts.sessions.push(second);
    facts.payments.push(payment(6, "SUCCEEDED", 0));
    facts.reservations.push(reservation(6, "CONFIRMED", 1));
    facts.stock[0].on_hand = 7;
    facts.orders.push(order(6));
    if let Some(client) = facts.client.as_mut() {
        let mut retry = client[0].clone();
        retry.key = Some("key-6".into());
        retry.checkout_id = Some(id(6).to_string());
        client.push(retry);
    }
}

#[test]
fn one_cart_bought_under_two_keys_is_a_double_order() {
    let mut facts = clean();
    second_sale_of_the_first_cart(&mut facts);
    let verdicts = check(&facts);
    let v = verdict(&verdicts, "one_order_per_checkout");
    assert_eq!(v.violations["cart_bought_twice"], 1);
    assert_eq!(v.notes["extra_orders"], 1);
    // Every other invariant still holds: each session on its own is sound.
    for other in verdicts
        .iter()
        .filter(|v| v.name != "one_order_per_checkout")
    {
        assert_eq!(other.outcome, Outcome::Holds, "{other:?}");
    }
}

#[test]
fn orders_need_a_completed_session() {
    let mut facts = clean();
    facts.orders.push(order(2));
    facts.orders.push(order(9));
    let found = violations(&facts, "one_order_per_checkout");
    assert_eq!(found["order_for_unfinished_or_failed_session"], 1);
    assert_eq!(found["order_without_session"], 1);
}

#[test]
fn what_clients_were_told_must_match_the_sessions() {
    let mut facts = clean();
    if let Some(client) = facts.client.as_mut() {
        // A 201 for a checkout that has no order, and a decline for a sale.
        client.push(client_at(2, 201));
        client.push(client_at(1, 402));
    }
    let found = violations(&facts, "client_successes_have_orders");
    assert_eq!(found["no_order"], 1);
    assert_eq!(found["session_not_completed"], 1);
    assert_eq!(found["told_failed_but_completed"], 1);
}

fn client_at(n: u128, status: u16) -> ClientRecord {
    client(n, status, "cart-x", "key-x")
}

#[test]
fn without_a_client_log_the_client_checks_are_skipped() {
    let mut facts = clean();
    facts.client = None;
    let verdicts = check(&facts);
    assert_eq!(
        verdict(&verdicts, "client_successes_have_orders").outcome,
        Outcome::Skipped
    );
}

#[test]
fn a_dead_letter_without_a_reason_is_caught() {
    let mut facts = clean();
    facts.dead_letters.push(DeadLetter {
        topic: "order-events.dlq".into(),
        partition: 0,
        offset: 7,
        reason: Some("  ".into()),
    });
    facts.dead_letters.push(DeadLetter {
        topic: "order-events.dlq".into(),
        partition: 0,
        offset: 8,
        reason: None,
    });
    assert_eq!(
        violations(&facts, "dead_letters_have_reasons")["no_reason"],
        2
    );
}

#[test]
fn a_cart_bought_in_two_parts_is_no_double_sale() {
    // The client raised the quantity to 2 while the first checkout (of 1)
    // was under way; the second checkout bought the one left over.
    let mut facts = clean();
    second_sale_of_the_first_cart(&mut facts);
    if let Some(client) = facts.client.as_mut() {
        let mut edit = client[0].clone();
        edit.op = Op::CartEdit;
        edit.status = 200;
        edit.cart_lines = [(1, 2)].into_iter().collect();
        client.push(edit);
    }
    let verdicts = check(&facts);
    let v = verdict(&verdicts, "one_order_per_checkout");
    assert_eq!(v.outcome, Outcome::Holds, "{v:?}");
    assert_eq!(v.notes["carts_bought_in_two_parts"], 1);
    // Had the client only ever wanted one, it is a double sale.
    if let Some(client) = facts.client.as_mut() {
        client.retain(|r| r.op != Op::CartEdit);
        let mut add = client[0].clone();
        add.op = Op::CartAdd;
        add.status = 201;
        add.cart_lines = [(1, 1)].into_iter().collect();
        client.push(add);
    }
    let v = violations(&facts, "one_order_per_checkout");
    assert_eq!(v["cart_bought_twice"], 1);
}
