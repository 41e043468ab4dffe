//! Prices as a shopper reads them: the API's decimal strings ("1299.99",
//! "USD") with the currency's sign and thousands separators ("$1,299.99").

/// `amount` (a decimal string with two places) in `currency`, for display.
pub fn display(amount: &str, currency: &str) -> String {
    let (whole, cents) = amount.split_once('.').unwrap_or((amount, "00"));
    let (sign, digits) = match whole.strip_prefix('-') {
        Some(digits) => ("-", digits),
        None => ("", whole),
    };
    let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    let symbol = match currency {
        "USD" => Some("$"),
        "EUR" => Some("€"),
        "GBP" => Some("£"),
        _ => None,
    };
    match symbol {
        Some(symbol) => format!("{sign}{symbol}{grouped}.{cents}"),
        None => format!("{sign}{grouped}.{cents} {currency}"),
    }
}

#[cfg(test)]
mod tests {
    use super::display;

    #[test]
    fn prices_read_as_on_a_price_tag() {
        assert_eq!(display("1299.99", "USD"), "$1,299.99");
        assert_eq!(display("29.99", "USD"), "$29.99");
        assert_eq!(display("0.00", "USD"), "$0.00");
        assert_eq!(display("1234567.50", "EUR"), "€1,234,567.50");
        assert_eq!(display("100.00", "CHF"), "100.00 CHF");
        assert_eq!(display("-5.00", "GBP"), "-£5.00");
    }
}
