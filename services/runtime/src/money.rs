//! Money as the services hold it: integer minor units of an ISO 4217 currency,
//! checked once where it enters (`TryFrom` the proto type), shown as a decimal
//! string ("1299.99") only at the REST edge.

use std::fmt;

use storefront_proto::common::v1 as pb;

use crate::error::FieldError;

/// A three-letter upper-case ISO 4217 code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Currency([u8; 3]);

impl Currency {
    pub const USD: Currency = Currency(*b"USD");

    pub fn as_str(&self) -> &str {
        // Only ASCII upper-case letters are ever stored.
        std::str::from_utf8(&self.0).unwrap_or("XXX")
    }

    /// How many decimal places its minor unit has (ISO 4217): 0 for the yen
    /// or the won, 3 for the dinars of Bahrain, Iraq, Jordan, Kuwait, Libya
    /// and Tunisia and the Omani rial, 4 for the Chilean and Uruguayan units
    /// of account, 2 for every other currency.
    pub fn minor_units(&self) -> u32 {
        match &self.0 {
            b"BIF" | b"CLP" | b"DJF" | b"GNF" | b"ISK" | b"JPY" | b"KMF" | b"KRW" | b"PYG"
            | b"RWF" | b"UGX" | b"UYI" | b"VND" | b"VUV" | b"XAF" | b"XOF" | b"XPF" => 0,
            b"BHD" | b"IQD" | b"JOD" | b"KWD" | b"LYD" | b"OMR" | b"TND" => 3,
            b"CLF" | b"UYW" => 4,
            _ => 2,
        }
    }
}

impl TryFrom<&str> for Currency {
    type Error = String;

    fn try_from(code: &str) -> Result<Self, Self::Error> {
        match code.as_bytes() {
            [a, b, c] if [a, b, c].iter().all(|x| x.is_ascii_uppercase()) => {
                Ok(Currency([*a, *b, *c]))
            }
            _ => Err(format!(
                "currency must be a three-letter ISO 4217 code, got {code:?}"
            )),
        }
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A non-negative amount of money.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Money {
    minor: i64,
    currency: Currency,
}

impl Money {
    pub fn new(minor: i64, currency: Currency) -> Result<Self, String> {
        if minor < 0 {
            return Err(format!("amount must not be negative, got {minor}"));
        }
        Ok(Money { minor, currency })
    }

    pub fn zero(currency: Currency) -> Self {
        Money { minor: 0, currency }
    }

    pub fn minor(&self) -> i64 {
        self.minor
    }

    pub fn currency(&self) -> Currency {
        self.currency
    }

    /// `self * quantity`, or `None` on overflow.
    pub fn times(&self, quantity: i64) -> Option<Money> {
        Some(Money {
            minor: self.minor.checked_mul(quantity)?,
            currency: self.currency,
        })
    }

    /// `self + other`, or `None` on overflow or when the currencies differ.
    pub fn plus(&self, other: Money) -> Option<Money> {
        (self.currency == other.currency).then_some(())?;
        Some(Money {
            minor: self.minor.checked_add(other.minor)?,
            currency: self.currency,
        })
    }

    /// The REST form, with the currency's own number of decimals:
    /// "1299.99" USD, "1300" JPY, "12.345" KWD.
    pub fn decimal(&self) -> String {
        let places = self.currency.minor_units();
        if places == 0 {
            return self.minor.to_string();
        }
        let unit = 10_i64.pow(places);
        format!(
            "{}.{:0width$}",
            self.minor / unit,
            self.minor % unit,
            width = places as usize
        )
    }

    /// Parses a proto `Money` named `field` in error messages.
    pub fn from_proto(field: &'static str, money: Option<&pb::Money>) -> Result<Self, FieldError> {
        let money = money.ok_or_else(|| FieldError::new(field, "is required"))?;
        let currency =
            Currency::try_from(money.currency.as_str()).map_err(|e| FieldError::new(field, e))?;
        Money::new(money.amount_minor, currency).map_err(|e| FieldError::new(field, e))
    }
}

impl From<Money> for pb::Money {
    fn from(money: Money) -> Self {
        pb::Money {
            amount_minor: money.minor,
            currency: money.currency.as_str().to_owned(),
        }
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.decimal(), self.currency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_form_has_two_places() {
        let usd = Currency::USD;
        assert_eq!(
            Money::new(129_999, usd).map(|m| m.decimal()),
            Ok("1299.99".into())
        );
        assert_eq!(Money::new(5, usd).map(|m| m.decimal()), Ok("0.05".into()));
        assert_eq!(Money::zero(usd).decimal(), "0.00");
    }

    #[test]
    fn decimal_form_follows_the_currency_s_minor_unit() {
        let show = |minor: i64, code: &str| {
            Currency::try_from(code)
                .and_then(|c| Money::new(minor, c))
                .map(|m| m.decimal())
        };
        assert_eq!(show(1300, "JPY"), Ok("1300".into()));
        assert_eq!(show(12_345, "KWD"), Ok("12.345".into()));
        assert_eq!(show(7, "BHD"), Ok("0.007".into()));
        assert_eq!(show(10_000, "CLF"), Ok("1.0000".into()));
        assert_eq!(show(199, "EUR"), Ok("1.99".into()));
        assert_eq!(show(0, "KRW"), Ok("0".into()));
    }

    #[test]
    fn bad_amounts_and_currencies_are_refused() {
        assert!(Money::new(-1, Currency::USD).is_err());
        assert!(Currency::try_from("usd").is_err());
        assert!(Currency::try_from("US").is_err());
        let missing = Money::from_proto("amount", None);
        assert_eq!(
            missing.map_err(|e| e.to_string()),
            Err("amount: is required".into())
        );
    }

    #[test]
    fn arithmetic_checks_overflow_and_currency() {
        let a = Money::new(i64::MAX, Currency::USD).ok();
        assert_eq!(a.and_then(|a| a.times(2)), None);
        let eur = Currency::try_from("EUR").ok();
        let (Some(eur), Ok(usd)) = (eur, Money::new(1, Currency::USD)) else {
            panic!("fixtures")
        };
        assert_eq!(usd.plus(Money::zero(eur)), None);
    }
}
