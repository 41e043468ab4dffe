//! Names the operator gives things, derived only from the Storefront's
//! namespace and name, so every reconcile (and every operator replica)
//! arrives at the same ones.

use sha2::{Digest, Sha256};

/// A shop's service: its subcommand, default port and whether it owns a
/// PostgreSQL database.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServiceKind {
    pub name: &'static str,
    pub port: i32,
    pub database: bool,
}

impl ServiceKind {
    /// The service's environment variable prefix (`CART`, …).
    pub fn env_prefix(self) -> String {
        self.name.to_ascii_uppercase()
    }

    pub fn is_gateway(self) -> bool {
        self.name == "gateway"
    }

    pub fn is_web(self) -> bool {
        self.name == "web"
    }

    /// Whether it serves HTTP (the gateway, the web) rather than gRPC: its
    /// port is named `http` and its probes are `/healthz` and `/readyz`.
    pub fn is_http(self) -> bool {
        self.is_gateway() || self.is_web()
    }
}

pub const GATEWAY: ServiceKind = ServiceKind {
    name: "gateway",
    port: 8080,
    database: false,
};

/// The web storefront: pages for people, in front of the gateway.
pub const WEB: ServiceKind = ServiceKind {
    name: "web",
    port: 8081,
    database: false,
};

/// Every service, the gateway first, the web last.
pub const SERVICES: [ServiceKind; 8] = [
    GATEWAY,
    ServiceKind {
        name: "product",
        port: 50051,
        database: true,
    },
    ServiceKind {
        name: "cart",
        port: 50052,
        database: true,
    },
    ServiceKind {
        name: "inventory",
        port: 50053,
        database: true,
    },
    ServiceKind {
        name: "payment",
        port: 50054,
        database: true,
    },
    ServiceKind {
        name: "orders",
        port: 50055,
        database: true,
    },
    ServiceKind {
        name: "checkout",
        port: 50056,
        database: true,
    },
    WEB,
];

/// The port every service serves `/metrics` on.
pub const METRICS_PORT: i32 = 9464;

/// The Kubernetes object name of a child: `<storefront>-<part>`.
pub fn child(storefront: &str, part: &str) -> String {
    format!("{storefront}-{part}")
}

/// The PostgreSQL database and login role of one service of one shop:
/// `sf_<namespace>_<name>_<service>`, lower case, only `[a-z0-9_]`; longer
/// than PostgreSQL's 63 bytes, it is cut and ends in a hash of the whole.
pub fn database(namespace: &str, storefront: &str, service: &str) -> String {
    let full = format!("sf_{namespace}_{storefront}_{service}");
    let clean: String = full
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if clean.len() <= 63 {
        return clean;
    }
    let hash = Sha256::digest(full.as_bytes());
    let hex: String = hash.iter().take(4).map(|b| format!("{b:02x}")).collect();
    format!("{}_{hex}", &clean[..54])
}

/// A Kafka topic of one shop: `<namespace>.<name>.<base>` (names a Kafka
/// topic may hold; both parts are DNS labels or subdomains already).
pub fn topic(namespace: &str, storefront: &str, base: &str) -> String {
    format!("{namespace}.{storefront}.{base}")
}

/// A consumer group of one shop.
pub fn consumer_group(namespace: &str, storefront: &str, service: &str) -> String {
    format!("{namespace}.{storefront}.{service}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names_are_postgres_identifiers() {
        assert_eq!(database("default", "shop", "cart"), "sf_default_shop_cart");
        assert_eq!(
            database("team-a", "my.shop", "orders"),
            "sf_team_a_my_shop_orders"
        );
        let long = database(&"n".repeat(63), &"s".repeat(63), "inventory");
        assert_eq!(long.len(), 63);
        assert!(long.starts_with("sf_nnn"));
        // Two long names that differ only after the cut still differ.
        let other = database(
            &"n".repeat(63),
            &format!("{}t", "s".repeat(62)),
            "inventory",
        );
        assert_ne!(long, other);
        assert!(
            long.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        );
    }

    #[test]
    fn topics_and_groups_are_scoped_to_the_shop() {
        assert_eq!(
            topic("default", "shop", "checkout-events"),
            "default.shop.checkout-events"
        );
        assert_eq!(consumer_group("ns", "shop", "orders"), "ns.shop.orders");
    }
}
