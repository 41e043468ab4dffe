//! The catalog's SQL, run through sqlx's `Any` driver so one set of queries
//! and migrations serves SQLite and PostgreSQL alike.

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};
use storefront_runtime::{Currency, Money, StartError};

use crate::domain::{PageRequest, Product, ProductId};
use crate::error::CatalogError;

const SELECT_ONE: &str =
    "SELECT id, name, description, price_minor, currency, image_url FROM products WHERE id = $1";
const SELECT_PAGE: &str = "SELECT id, name, description, price_minor, currency, image_url \
     FROM products WHERE id > $1 ORDER BY id LIMIT $2";

#[derive(Clone)]
pub struct Catalog {
    pool: AnyPool,
    /// SQLite statements get their client spans here; PostgreSQL's come
    /// from sqlx's statement events (runtime telemetry). The span is not
    /// entered around the call: sqlx hands the current span to its SQLite
    /// worker thread, and entering ours there broke the span registry's
    /// reference counts under `storefront all` (a panic on that thread).
    sqlite: bool,
}

impl Catalog {
    fn span(&self, sql: &str) -> tracing::Span {
        if self.sqlite {
            storefront_runtime::telemetry::sql_client_span("sqlite", sql)
        } else {
            tracing::Span::none()
        }
    }
}

impl Catalog {
    /// Opens the catalog at `url` and applies the migrations (which seed it).
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StartError> {
        sqlx::any::install_default_drivers();
        let is_sqlite = url.starts_with("sqlite:");
        // An in-memory SQLite database exists once per connection: keep exactly one.
        let max_connections = if is_sqlite && url.contains(":memory:") {
            1
        } else {
            max_connections
        };
        if url.starts_with("postgres") {
            // Waits for the server the same way every PostgreSQL-backed service does.
            storefront_runtime::db::pg_pool(url, 1).await?.close().await;
        }
        let options = sqlx::any::AnyConnectOptions::from_str(url)?;
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Catalog {
            pool,
            sqlite: is_sqlite,
        })
    }

    pub async fn get(&self, id: ProductId) -> Result<Product, CatalogError> {
        let span = self.span(SELECT_ONE);
        let row = sqlx::query(SELECT_ONE)
            .bind(id.get())
            .fetch_optional(&self.pool)
            .await;
        drop(span);
        match row? {
            Some(row) => product_from_row(&row),
            None => Err(CatalogError::NotFound(id.get())),
        }
    }

    /// The products among `ids` that exist, in the order asked; one connection
    /// for the whole batch.
    pub async fn get_many(&self, ids: &[ProductId]) -> Result<Vec<Option<Product>>, CatalogError> {
        let mut conn = self.pool.acquire().await?;
        let mut found = Vec::with_capacity(ids.len());
        for id in ids {
            let span = self.span(SELECT_ONE);
            let row = sqlx::query(SELECT_ONE)
                .bind(id.get())
                .fetch_optional(&mut *conn)
                .await;
            drop(span);
            let row = row?;
            found.push(row.as_ref().map(product_from_row).transpose()?);
        }
        Ok(found)
    }

    /// One page in id order, and whether more follow.
    pub async fn list(&self, page: PageRequest) -> Result<(Vec<Product>, bool), CatalogError> {
        let span = self.span(SELECT_PAGE);
        let rows = sqlx::query(SELECT_PAGE)
            .bind(page.after)
            .bind(i64::from(page.size) + 1)
            .fetch_all(&self.pool)
            .await;
        drop(span);
        let rows = rows?;
        let more = rows.len() > page.size as usize;
        let products = rows
            .iter()
            .take(page.size as usize)
            .map(product_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        Ok((products, more))
    }
}

fn product_from_row(row: &AnyRow) -> Result<Product, CatalogError> {
    let id: i64 = row.try_get("id")?;
    let corrupt = |message: String| CatalogError::CorruptRow { id, message };
    let currency: String = row.try_get("currency")?;
    let currency = Currency::try_from(currency.as_str()).map_err(corrupt)?;
    let price = Money::new(row.try_get("price_minor")?, currency).map_err(corrupt)?;
    Ok(Product {
        id: ProductId::parse("id", id).map_err(|e| corrupt(e.to_string()))?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        price,
        image_url: row.try_get("image_url")?,
    })
}
