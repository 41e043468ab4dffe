//! The connection budget of a managed PostgreSQL: each pod of each database
//! service opens a pool, and all of them together must stay within the
//! server's `max_connections`.
//!
//! Every database service gets an equal share of the budget, split among
//! the most pods it can have at once: its replicas, or its autoscaler's
//! maximum, plus one more during a rolling update (`maxSurge: 1`). Scaling
//! one service so changes only its own pods' pool. A pool never goes below
//! [`MIN_POOL`] (checkout's outbox relay holds one connection to LISTEN);
//! when those minimums alone outgrow the default budget, the server's
//! `max_connections` grows with them, in steps of 50 so that not every
//! scaling step restarts it.
//!
//! An external PostgreSQL's budget is not the operator's to know: there the
//! services keep their own defaults (`<SERVICE>_DB_MAX_CONNECTIONS`).

use std::collections::BTreeMap;

use super::service_spec;
use crate::crd::{ServiceSpec, Storefront};
use crate::names::SERVICES;

/// The managed PostgreSQL's `max_connections` unless the shop needs more
/// (PostgreSQL's own default).
pub const MANAGED_POSTGRES_MAX_CONNECTIONS: u32 = 100;
/// Connections outside the services' budget: `superuser_reserved_connections`
/// (3), the operator's provisioning, a person with psql, some slack.
const RESERVED: u32 = 10;
/// The smallest and largest pool a pod gets.
const MIN_POOL: u32 = 2;
const MAX_POOL: u32 = 10;
/// `max_connections` grows in steps of this many.
const GROWTH_STEP: u32 = 50;

/// The most pods of one service at a time: replicas (or the autoscaler's
/// maximum), and one more while a rollout surges.
fn max_pods(spec: &ServiceSpec) -> u32 {
    let replicas = spec
        .autoscaling
        .as_ref()
        .map_or(spec.replicas, |a| a.max_replicas);
    u32::try_from(replicas).unwrap_or(0) + 1
}

/// Per database service, the pool size of each of its pods; `None` when
/// PostgreSQL is external.
pub fn database_pools(sf: &Storefront) -> Option<BTreeMap<&'static str, u32>> {
    sf.spec.postgres.managed.as_ref()?;
    let services: Vec<_> = SERVICES.iter().filter(|s| s.database).collect();
    let count = u32::try_from(services.len()).unwrap_or(1).max(1);
    let share = (MANAGED_POSTGRES_MAX_CONNECTIONS - RESERVED) / count;
    Some(
        services
            .into_iter()
            .map(|service| {
                let pods = max_pods(service_spec(sf, *service));
                (service.name, (share / pods).clamp(MIN_POOL, MAX_POOL))
            })
            .collect(),
    )
}

/// The managed PostgreSQL's `max_connections`: the default, or what the
/// pools need when that is more.
pub fn postgres_max_connections(sf: &Storefront) -> u32 {
    let Some(pools) = database_pools(sf) else {
        return MANAGED_POSTGRES_MAX_CONNECTIONS;
    };
    let pooled: u32 = SERVICES
        .iter()
        .filter_map(|s| {
            pools
                .get(s.name)
                .map(|pool| max_pods(service_spec(sf, *s)) * pool)
        })
        .sum();
    let wanted = pooled + RESERVED;
    if wanted <= MANAGED_POSTGRES_MAX_CONNECTIONS {
        MANAGED_POSTGRES_MAX_CONNECTIONS
    } else {
        wanted.div_ceil(GROWTH_STEP) * GROWTH_STEP
    }
}
