//! The carts as the handlers see them: reads go through the cache, writes go
//! to PostgreSQL and then invalidate the cache.
//!
//! Readers that miss the cache at the same time share one database read
//! (single-flight): the first starts a load, the rest wait for its answer.
//! A write that lands while a load is in flight marks that load out of date,
//! and the flag is checked under a lock that the cache fill also holds, so a
//! load never caches what a committed write has replaced: either the write
//! marks the load first and the fill is skipped, or the fill completes first
//! and the write's invalidation removes it. (Across replicas this guard does
//! not reach; there an out-of-date fill lives at most one TTL.)

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::Utc;
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use tracing::Instrument;

use crate::cache::CartCache;
use crate::catalog::Catalog;
use crate::domain::{AddItem, Cart, CheckedOut, RemoveItem, UpdateItem, UserId};
use crate::error::CartError;
use crate::store::{CartStore, Clearing};

/// Carts deleted per sweeper transaction.
const EXPIRY_BATCH: i64 = 200;

#[derive(Clone)]
pub struct Carts(Arc<Inner>);

struct Inner {
    store: CartStore,
    cache: CartCache,
    catalog: Catalog,
    loads: Mutex<HashMap<UserId, Load>>,
}

/// A database read of one cart in flight, shared by every reader that
/// missed the cache meanwhile.
struct Load {
    /// True until a write makes what the load reads out of date.
    current: Arc<tokio::sync::Mutex<bool>>,
    answer: Shared<BoxFuture<'static, Result<Cart, CartError>>>,
}

impl Carts {
    pub fn new(store: CartStore, cache: CartCache, catalog: Catalog) -> Self {
        Carts(Arc::new(Inner {
            store,
            cache,
            catalog,
            loads: Mutex::new(HashMap::new()),
        }))
    }

    pub async fn get(&self, user: &UserId) -> Result<Cart, CartError> {
        match self.0.cache.get(user).await {
            Some(cart) if cart.is_live(Utc::now()) => Ok(cart),
            Some(_) => Ok(Cart::empty(user.clone())),
            None => self.load(user).await,
        }
    }

    /// The committed cart, past the cache, and which of `checkouts` it has
    /// applied: what a checkout prices.
    pub async fn get_consistent(
        &self,
        user: &UserId,
        checkouts: &[uuid::Uuid],
    ) -> Result<(Cart, Vec<uuid::Uuid>), CartError> {
        self.0.store.load_consistent(user, checkouts).await
    }

    pub async fn add(&self, request: &AddItem) -> Result<Cart, CartError> {
        let product = self.0.catalog.product(request.product_id).await?;
        self.write(&request.user_id, |cart| {
            cart.add(&product, request.quantity, Utc::now())
        })
        .await
    }

    pub async fn update(&self, request: &UpdateItem) -> Result<Cart, CartError> {
        self.write(&request.user_id, |cart| {
            cart.set_quantity(request.product_id, request.quantity)
        })
        .await
    }

    pub async fn remove(&self, request: &RemoveItem) -> Result<Cart, CartError> {
        self.write(&request.user_id, |cart| cart.remove(request.product_id))
            .await
    }

    pub async fn clear(&self, user: &UserId) -> Result<Cart, CartError> {
        self.write(user, |cart| {
            cart.clear();
            Ok(())
        })
        .await
    }

    /// Takes a completed checkout's lines out of the buyer's cart (once per checkout).
    pub async fn clear_checked_out(&self, checkout: &CheckedOut) -> Result<Clearing, CartError> {
        let clearing = self.0.store.apply_checkout(checkout).await;
        if matches!(
            clearing,
            Ok(Clearing::Cleared) | Err(CartError::Database(_))
        ) {
            self.invalidate(&checkout.user_id).await;
        }
        clearing
    }

    /// Deletes every cart idle past its expiry, with its cache entry; says how many.
    pub async fn expire_idle(&self) -> Result<usize, CartError> {
        let mut expired = 0;
        loop {
            let users = self.0.store.delete_expired(EXPIRY_BATCH).await?;
            for user in &users {
                self.invalidate(user).await;
            }
            expired += users.len();
            if users.len() < usize::try_from(EXPIRY_BATCH).unwrap_or(usize::MAX) {
                return Ok(expired);
            }
        }
    }

    /// Forgets checkouts processed more than `age` ago.
    pub async fn prune_processed(&self, age: chrono::Duration) -> Result<u64, CartError> {
        self.0.store.prune_processed(age).await
    }

    async fn write<F>(&self, user: &UserId, change: F) -> Result<Cart, CartError>
    where
        F: FnOnce(&mut Cart) -> Result<(), CartError>,
    {
        let written = self.0.store.update(user, change).await;
        // A database error may hide a commit that happened: invalidate then too.
        if matches!(written, Ok(_) | Err(CartError::Database(_))) {
            self.invalidate(user).await;
        }
        written
    }

    async fn invalidate(&self, user: &UserId) {
        let load = self.0.loads().remove(user);
        if let Some(load) = load {
            *load.current.lock().await = false;
        }
        self.0.cache.invalidate(user).await;
    }

    /// Joins the load of `user`'s cart in flight, or starts one.
    fn load(&self, user: &UserId) -> Shared<BoxFuture<'static, Result<Cart, CartError>>> {
        let mut loads = self.0.loads();
        if let Some(load) = loads.get(user) {
            return load.answer.clone();
        }
        let current = Arc::new(tokio::sync::Mutex::new(true));
        // Spawned, so the load completes (and is forgotten) even if every
        // reader waiting for it goes away.
        // In the span of the reader that started it, so its cache and SQL
        // calls belong to that reader's trace.
        let task = tokio::spawn(
            read_through(Arc::clone(&self.0), user.clone(), Arc::clone(&current)).in_current_span(),
        );
        let answer = async move {
            task.await
                .unwrap_or_else(|e| Err(CartError::Load(e.to_string())))
        }
        .boxed()
        .shared();
        loads.insert(
            user.clone(),
            Load {
                current,
                answer: answer.clone(),
            },
        );
        answer
    }
}

impl Inner {
    fn loads(&self) -> MutexGuard<'_, HashMap<UserId, Load>> {
        self.loads
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Reads the cart from PostgreSQL and caches it unless a write came in between.
async fn read_through(
    inner: Arc<Inner>,
    user: UserId,
    current: Arc<tokio::sync::Mutex<bool>>,
) -> Result<Cart, CartError> {
    let loaded = inner.store.load(&user).await;
    if let Ok(cart) = &loaded {
        let still_current = current.lock().await;
        if *still_current {
            inner.cache.put(cart).await;
        }
    }
    let mut loads = inner.loads();
    if loads
        .get(&user)
        .is_some_and(|load| Arc::ptr_eq(&load.current, &current))
    {
        loads.remove(&user);
    }
    loaded
}
