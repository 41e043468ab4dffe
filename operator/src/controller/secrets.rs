//! The Storefront's Secrets: generated once, then kept; read back on every
//! reconcile, never replaced.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use kube::runtime::events::EventType;
use sqlx::postgres::PgSslMode;

use crate::children::{self, SecretInputs, fingerprint};
use crate::crd::Storefront;
use crate::names::{self, SERVICES};
use crate::postgres::{self, Database};

use super::status::Outcome;
use super::{Context, Error, apply_child, namespace, publish};

fn secret_data(secret: &Secret) -> BTreeMap<String, String> {
    secret
        .data
        .iter()
        .flatten()
        .filter_map(|(k, v)| String::from_utf8(v.0.clone()).ok().map(|v| (k.clone(), v)))
        .collect()
}

/// Applies a generated Secret unless it already holds exactly `data`;
/// notes its name in `created` when it is new.
async fn ensure_secret(
    ctx: &Context,
    sf: &Storefront,
    name: &str,
    component: &str,
    existing: Option<&BTreeMap<String, String>>,
    data: &BTreeMap<String, String>,
    created: &mut Vec<String>,
) -> Result<(), Error> {
    if existing == Some(data) {
        return Ok(());
    }
    apply_child(
        ctx,
        &namespace(sf),
        &children::secret(sf, name, component, data),
    )
    .await?;
    if existing.is_none() {
        created.push(name.to_owned());
    }
    Ok(())
}

/// The Secrets: per-service database credentials and the JWT secret
/// (generated once, then kept), the admin credentials of a managed
/// PostgreSQL. Returns what the builders need, the databases to provision
/// and, when the external admin Secret is missing, why not.
pub(super) async fn secrets(
    sf: &Storefront,
    ctx: &Context,
) -> Result<
    (
        SecretInputs,
        Option<postgres::Server>,
        Vec<Database>,
        Option<Outcome>,
    ),
    Error,
> {
    let ns = namespace(sf);
    let name = sf.name_any();
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    // The Secrets the operator made carry the instance label: one LIST
    // reads them all; others (an external admin's, a JWT reference) by name.
    let ours: BTreeMap<String, BTreeMap<String, String>> = api
        .list(&ListParams::default().labels(&children::instance_selector(&name)))
        .await?
        .items
        .iter()
        .map(|s| (s.name_any(), secret_data(s)))
        .collect();
    let read_secret = |secret: String| {
        let api = api.clone();
        let known = ours.get(&secret).cloned();
        async move {
            match known {
                Some(data) => Ok(Some(data)),
                None => Ok::<_, Error>(api.get_opt(&secret).await?.map(|s| secret_data(&s))),
            }
        }
    };
    let mut inputs = SecretInputs::default();
    let mut created = vec![];
    let mut problem = None;

    // The PostgreSQL admin.
    let admin_name = children::postgres_admin_secret_name(sf);
    let admin = read_secret(admin_name.clone()).await?;
    let admin = if sf.spec.postgres.managed.is_some() {
        let password = admin
            .as_ref()
            .and_then(|d| d.get("password").cloned())
            .unwrap_or_else(postgres::generate_password);
        let data = BTreeMap::from([
            ("username".to_owned(), "postgres".to_owned()),
            ("password".to_owned(), password),
        ]);
        ensure_secret(
            ctx,
            sf,
            &admin_name,
            "postgres",
            admin.as_ref(),
            &data,
            &mut created,
        )
        .await?;
        Some(data)
    } else {
        if admin.is_none() {
            problem = Some(Outcome::failed(
                "AdminSecretMissing",
                format!("the PostgreSQL admin Secret {admin_name} does not exist in {ns}"),
            ));
        }
        admin
    };
    let (host, port) = children::postgres_host(sf);
    let ssl_mode = match sf
        .spec
        .postgres
        .external
        .as_ref()
        .and_then(|e| e.ssl_mode.as_deref())
    {
        Some("disable") => PgSslMode::Disable,
        Some("require") => PgSslMode::Require,
        None if sf.spec.postgres.managed.is_some() => PgSslMode::Disable,
        _ => PgSslMode::Prefer,
    };
    // The server as the services reach it; provisioning also needs the
    // admin credentials (without them it is skipped and reported).
    let admin_field = |key: &str| admin.as_ref().and_then(|a| a.get(key).cloned());
    let server = postgres::Server {
        host: host.clone(),
        port: u16::try_from(port).unwrap_or(5432),
        admin_user: admin_field("username").unwrap_or_else(|| "postgres".into()),
        admin_password: admin_field("password").unwrap_or_default(),
        ssl_mode,
    };

    // Per-service credentials.
    let mut databases = vec![];
    for service in SERVICES.iter().filter(|s| s.database) {
        let secret_name = children::database_secret_name(sf, *service);
        let existing = read_secret(secret_name.clone()).await?;
        let db = Database {
            name: names::database(&ns, &name, service.name),
            password: existing
                .as_ref()
                .and_then(|d| d.get("password").cloned())
                .filter(|p| !p.is_empty())
                .unwrap_or_else(postgres::generate_password),
        };
        let data = BTreeMap::from([
            ("username".to_owned(), db.name.clone()),
            ("password".to_owned(), db.password.clone()),
            ("database".to_owned(), db.name.clone()),
            ("host".to_owned(), host.clone()),
            ("port".to_owned(), port.to_string()),
            ("url".to_owned(), server.url(&db)),
        ]);
        ensure_secret(
            ctx,
            sf,
            &secret_name,
            service.name,
            existing.as_ref(),
            &data,
            &mut created,
        )
        .await?;
        inputs.fingerprints.insert(secret_name, fingerprint(&data));
        databases.push(db);
    }

    // The gateway's JWT secret.
    match &sf.spec.gateway.jwt_secret_ref {
        Some(reference) => {
            let data = read_secret(reference.name.clone()).await?;
            match data.as_ref().and_then(|d| d.get(&reference.key)) {
                Some(value) => {
                    inputs.fingerprints.insert(
                        reference.name.clone(),
                        fingerprint(&BTreeMap::from([(reference.key.clone(), value.clone())])),
                    );
                }
                None => {
                    publish(
                        ctx,
                        sf,
                        EventType::Warning,
                        "JwtSecretMissing",
                        format!("Secret {} has no key {}", reference.name, reference.key),
                    )
                    .await;
                }
            }
            inputs.jwt = (reference.name.clone(), reference.key.clone());
        }
        None => {
            let secret_name = children::generated_jwt_secret_name(sf);
            let existing = read_secret(secret_name.clone()).await?;
            let value = existing
                .as_ref()
                .and_then(|d| d.get("secret").cloned())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| {
                    format!(
                        "{}{}",
                        postgres::generate_password(),
                        postgres::generate_password()
                    )
                });
            let data = BTreeMap::from([("secret".to_owned(), value)]);
            ensure_secret(
                ctx,
                sf,
                &secret_name,
                "gateway",
                existing.as_ref(),
                &data,
                &mut created,
            )
            .await?;
            inputs
                .fingerprints
                .insert(secret_name.clone(), fingerprint(&data));
            inputs.jwt = (secret_name, "secret".to_owned());
        }
    }
    if !created.is_empty() {
        publish(
            ctx,
            sf,
            EventType::Normal,
            "SecretsCreated",
            format!("generated {}", created.join(", ")),
        )
        .await;
    }
    let server = admin.is_some().then_some(server);
    Ok((inputs, server, databases, problem))
}
