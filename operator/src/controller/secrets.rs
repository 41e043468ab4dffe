//! The Storefront's Secrets: generated once, then kept; read back on every
//! reconcile, never replaced.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use kube::runtime::events::EventType;
use sqlx::postgres::PgSslMode;

use crate::children::{self, SecretInputs, fingerprint};
use crate::crd::{SecretKeyRef, Storefront};
use crate::names::{self, SERVICES};
use crate::postgres::{self, Database};

use super::status::Outcome;
use super::{Context, Error, apply_child, namespace, publish};

/// A Secret as read back: its values, and whether this Storefront owns it.
#[derive(Clone, Debug, Default)]
struct Stored {
    data: BTreeMap<String, String>,
    owned: bool,
}

fn stored(secret: &Secret, uid: Option<&str>) -> Stored {
    Stored {
        data: secret
            .data
            .iter()
            .flatten()
            .filter_map(|(k, v)| String::from_utf8(v.0.clone()).ok().map(|v| (k.clone(), v)))
            .collect(),
        owned: secret
            .owner_references()
            .iter()
            .any(|o| Some(o.uid.as_str()) == uid),
    }
}

/// A generated Secret, as it should be.
struct Wanted<'a> {
    name: &'a str,
    component: &'a str,
    data: &'a BTreeMap<String, String>,
    /// Goes with the Storefront (owner reference).
    owned: bool,
}

/// Applies a generated Secret unless it already holds exactly `data`, owned
/// as wanted; notes its name in `created` when it is new.
async fn ensure_secret(
    ctx: &Context,
    sf: &Storefront,
    wanted: Wanted<'_>,
    existing: Option<&Stored>,
    created: &mut Vec<String>,
) -> Result<(), Error> {
    if existing.is_some_and(|e| &e.data == wanted.data && e.owned == wanted.owned) {
        return Ok(());
    }
    apply_child(
        ctx,
        &namespace(sf),
        &children::secret(sf, wanted.name, wanted.component, wanted.data, wanted.owned),
    )
    .await?;
    if existing.is_none() {
        created.push(wanted.name.to_owned());
    }
    Ok(())
}

/// A Secret of one random value (a signing key) the operator generates.
struct Generated<'a> {
    name: &'a str,
    key: &'a str,
    component: &'a str,
}

/// Generates a signing key once (64 characters) and keeps it; notes its
/// fingerprint for the pods that read it.
async fn generate_key(
    ctx: &Context,
    sf: &Storefront,
    wanted: Generated<'_>,
    existing: Option<Stored>,
    inputs: &mut SecretInputs,
    created: &mut Vec<String>,
) -> Result<(), Error> {
    let value = existing
        .as_ref()
        .and_then(|d| d.data.get(wanted.key).cloned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| {
            format!(
                "{}{}",
                postgres::generate_password(),
                postgres::generate_password()
            )
        });
    let data = BTreeMap::from([(wanted.key.to_owned(), value)]);
    let secret = Wanted {
        name: wanted.name,
        component: wanted.component,
        data: &data,
        owned: true,
    };
    ensure_secret(ctx, sf, secret, existing.as_ref(), created).await?;
    inputs
        .fingerprints
        .insert(wanted.name.to_owned(), fingerprint(&data));
    Ok(())
}

/// Notes the fingerprint of a key of a Secret the spec names (so that its
/// change rolls the pods that read it), or warns (`reason`) that it is not
/// there: the pods then wait for it.
async fn referenced(
    ctx: &Context,
    sf: &Storefront,
    inputs: &mut SecretInputs,
    reference: &SecretKeyRef,
    data: Option<Stored>,
    reason: &str,
) {
    match data.as_ref().and_then(|d| d.data.get(&reference.key)) {
        Some(value) => {
            // Two references may name keys of one Secret: both count.
            let before = inputs.fingerprints.get(&reference.name).cloned();
            inputs.fingerprints.insert(
                reference.name.clone(),
                fingerprint(&(before, &reference.key, value)),
            );
        }
        None => {
            publish(
                ctx,
                sf,
                EventType::Warning,
                reason,
                format!("Secret {} has no key {}", reference.name, reference.key),
            )
            .await;
        }
    }
}

/// The Secrets: per-service database credentials, the JWT secret and the
/// web's session key (generated once, then kept), the admin credentials of a managed
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
    let uid = sf.uid();
    let uid = uid.as_deref();
    let ours: BTreeMap<String, Stored> = api
        .list(&ListParams::default().labels(&children::instance_selector(&name)))
        .await?
        .items
        .iter()
        .map(|s| (s.name_any(), stored(s, uid)))
        .collect();
    let read_secret = |secret: String| {
        let api = api.clone();
        let known = ours.get(&secret).cloned();
        async move {
            match known {
                Some(stored) => Ok(Some(stored)),
                None => Ok::<_, Error>(api.get_opt(&secret).await?.map(|s| stored(&s, uid))),
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
            .and_then(|d| d.data.get("password").cloned())
            .unwrap_or_else(postgres::generate_password);
        let data = BTreeMap::from([
            ("username".to_owned(), "postgres".to_owned()),
            ("password".to_owned(), password),
        ]);
        let wanted = Wanted {
            name: &admin_name,
            component: "postgres",
            data: &data,
            owned: children::postgres_admin_secret_owned(sf),
        };
        ensure_secret(ctx, sf, wanted, admin.as_ref(), &mut created).await?;
        Some(data)
    } else {
        if admin.is_none() {
            problem = Some(Outcome::failed(
                "AdminSecretMissing",
                format!("the PostgreSQL admin Secret {admin_name} does not exist in {ns}"),
            ));
        }
        admin.map(|a| a.data)
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
                .and_then(|d| d.data.get("password").cloned())
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
        let wanted = Wanted {
            name: &secret_name,
            component: service.name,
            data: &data,
            owned: true,
        };
        ensure_secret(ctx, sf, wanted, existing.as_ref(), &mut created).await?;
        inputs.fingerprints.insert(secret_name, fingerprint(&data));
        databases.push(db);
    }

    // The gateway's JWT secret: the one the spec names, or one generated.
    match &sf.spec.gateway.jwt_secret_ref {
        Some(reference) => {
            let data = read_secret(reference.name.clone()).await?;
            referenced(ctx, sf, &mut inputs, reference, data, "JwtSecretMissing").await;
            inputs.jwt = (reference.name.clone(), reference.key.clone());
        }
        None => {
            let secret_name = children::generated_jwt_secret_name(sf);
            let existing = read_secret(secret_name.clone()).await?;
            let wanted = Generated {
                name: &secret_name,
                key: "secret",
                component: "gateway",
            };
            generate_key(ctx, sf, wanted, existing, &mut inputs, &mut created).await?;
            inputs.jwt = (secret_name, "secret".to_owned());
        }
    }
    // The web's session key, and the OIDC client secret it is given.
    let session_name = children::web_session_secret_name(sf);
    let existing = read_secret(session_name.clone()).await?;
    let wanted = Generated {
        name: &session_name,
        key: children::WEB_SESSION_SECRET_KEY,
        component: names::WEB.name,
    };
    generate_key(ctx, sf, wanted, existing, &mut inputs, &mut created).await?;
    let client_secret = sf
        .spec
        .web
        .sign_in
        .oidc
        .as_ref()
        .and_then(|o| o.client_secret_ref.as_ref());
    if let Some(reference) = client_secret {
        let data = read_secret(reference.name.clone()).await?;
        let reason = "OidcClientSecretMissing";
        referenced(ctx, sf, &mut inputs, reference, data, reason).await;
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
