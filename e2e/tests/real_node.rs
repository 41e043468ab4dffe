//! The shop on the real node, installed as a user installs it: the
//! operator chart (the operator as a pod from its image, with the chart's
//! RBAC) and the storefront chart (a managed-mode Storefront whose stores
//! are the local stand-in images), then every user path against running
//! pods: the catalog page of the web storefront, the REST flow with its
//! trace, an upgrade under traffic, a service
//! pod and the database pod deleted, deletion, uninstall and reinstall.
//!
//! Needs `hack/cluster/up.sh` (with the real node) and
//! `hack/cluster/images.sh`; `make test` runs both first.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams};
use reqwest::{Method, StatusCode};
use storefront_e2e::cluster::{self, NodeNamespace, UninstallOnFailure, eventually, helm, kubectl};
use storefront_e2e::otlp::Receiver;
use storefront_e2e::shop::Shop;
use storefront_e2e::{NODE_NAME, images};

const SERVICES: [&str; 8] = [
    "gateway",
    "product",
    "cart",
    "inventory",
    "payment",
    "orders",
    "checkout",
    "web",
];
const READY_TIMEOUT: Duration = Duration::from_secs(300);

/// `helm install` of the storefront chart as Storefront `shop`: managed
/// stores on the stand-in images, spans to `otlp`.
fn install_shop(namespace: &str, otlp: &str) {
    helm(&[
        "install",
        "shop",
        "charts/storefront",
        "-n",
        namespace,
        "--set",
        &format!("image.repository={}", images::SHOP_REPOSITORY),
        "--set",
        &format!("image.tag={}", images::SHOP_TAG),
        "--set",
        &format!("postgres.managed.image={}", images::POSTGRES),
        "--set",
        &format!("redis.managed.image={}", images::REDIS),
        "--set",
        &format!("kafka.managed.image={}", images::KAFKA),
        "--set",
        "services.gateway.replicas=2",
        "--set",
        "tracing.enabled=true",
        "--set",
        &format!("tracing.otlpEndpoint={otlp}"),
        "--set",
        "tracing.samplingRatio=1",
    ])
    .expect("the storefront chart installs");
}

const STORE_SELECTOR: &str =
    "app.kubernetes.io/instance=shop,app.kubernetes.io/component in (postgres,redis,kafka)";
const CHILD_KINDS: &str = "deployments,statefulsets,services,configmaps,secrets,poddisruptionbudgets,horizontalpodautoscalers,networkpolicies,ingresses";

async fn shop_client(client: &kube::Client, namespace: &str) -> Shop {
    let base = cluster::service_url(client, namespace, "shop-gateway").await;
    let secret = cluster::secret_value(client, namespace, "shop-jwt", "secret").await;
    Shop::new(base, secret)
}

/// Products, a token, the cart, a checkout, the order; and the checkout's
/// trace arriving at the receiver from every service it crossed.
async fn rest_flow(shop: &Shop, spans: &Receiver, user: &str) {
    let products = shop.call(Method::GET, "/api/v1/products", "", None).await;
    assert_eq!(products.status, StatusCode::OK, "{:?}", products.body);
    assert_eq!(
        products.body["products"].as_array().map(Vec::len),
        Some(5),
        "{:?}",
        products.body
    );

    let token = shop.token(user);
    assert_eq!(
        shop.add_to_cart(&token, 1, 1).await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        shop.add_to_cart(&token, 2, 2).await.status,
        StatusCode::CREATED
    );
    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    let traceparent = format!(
        "00-{trace_id}-{}-01",
        &uuid::Uuid::new_v4().simple().to_string()[..16]
    );
    let done = shop
        .try_checkout(
            &token,
            &format!("{user}-1"),
            "pm_card_visa",
            &[("traceparent", &traceparent)],
        )
        .await
        .expect("the gateway answers");
    assert_eq!(done.status, StatusCode::CREATED, "{:?}", done.body);
    assert_eq!(done.body["status"], "COMPLETED", "{:?}", done.body);
    assert_eq!(done.body["total"], "1359.97", "{:?}", done.body);
    let checkout_id = done.body["checkout_id"]
        .as_str()
        .expect("a checkout id")
        .to_owned();
    let order = eventually("the order", Duration::from_secs(60), || async {
        shop.orders(&token)
            .await
            .into_iter()
            .find(|o| o["checkout_id"] == checkout_id.as_str())
    })
    .await;
    assert_eq!(order["total"], "1359.97", "{order}");

    // The REST flow goes round the web; checkout validates the products
    // against its own snapshot of the cart.
    let wanted: BTreeSet<String> = SERVICES
        .iter()
        .filter(|s| !["product", "web"].contains(s))
        .map(|s| format!("storefront-{s}"))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !wanted.is_subset(&spans.services_of(&trace_id)) {
        assert!(
            Instant::now() < deadline,
            "the checkout's trace {trace_id} has spans from {:?} after 60 s, wanted {wanted:?} ({} spans received in all, from {:?})",
            spans.services_of(&trace_id),
            spans.count(),
            spans.services()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!(
        "trace {trace_id}: spans from {:?} ({} spans received in all)",
        spans.services_of(&trace_id),
        spans.count()
    );
}

/// The web storefront's catalog page, through the web Service as a browser
/// on the node would fetch it: the products from the gateway, and the
/// page's security headers.
async fn catalog_page(client: &kube::Client, namespace: &str, shop: &Shop) {
    let base = cluster::service_url(client, namespace, "shop-web").await;
    let page = shop
        .http
        .get(format!("{base}/"))
        .send()
        .await
        .expect("the web answers");
    assert_eq!(page.status(), StatusCode::OK);
    let csp = page
        .headers()
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "Content-Security-Policy: {csp:?}"
    );
    let html = page.text().await.expect("the catalog page");
    assert!(
        html.contains("Laptop") && html.contains(r#"class="products""#),
        "the catalog page lists no Laptop:\n{html}"
    );
}

/// `helm upgrade` to another image tag while GET /products runs: the eight
/// services roll, the stores keep their pods, and no request fails.
async fn upgrade_under_traffic(
    client: &kube::Client,
    namespace: &str,
    shop: &Shop,
) -> (usize, usize) {
    let stores_before =
        cluster::identities(&cluster::pods(client, namespace, STORE_SELECTOR).await);
    assert_eq!(stores_before.len(), 3, "{stores_before:?}");

    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (sent, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
    let trickle = {
        let (shop, done, sent, failed, failures) = (
            shop.clone(),
            done.clone(),
            sent.clone(),
            failed.clone(),
            failures.clone(),
        );
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                sent.fetch_add(1, Ordering::Relaxed);
                match shop
                    .try_call(Method::GET, "/api/v1/products", "", None, &[])
                    .await
                {
                    Ok(answer) if answer.status == StatusCode::OK => {}
                    Ok(answer) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        failures
                            .lock()
                            .unwrap()
                            .push(format!("{} {}", answer.status, answer.body));
                    }
                    Err(error) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        failures.lock().unwrap().push(format!("{error:?}"));
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    helm(&[
        "upgrade",
        "shop",
        "charts/storefront",
        "-n",
        namespace,
        "--reuse-values",
        "--set",
        &format!("image.tag={}", images::SHOP_NEXT_TAG),
    ])
    .expect("helm upgrade");
    let next = format!("{}:{}", images::SHOP_REPOSITORY, images::SHOP_NEXT_TAG);
    eventually(
        "every service rolled to the new tag",
        Duration::from_secs(300),
        || async {
            let pods = cluster::pods(client, namespace, "app.kubernetes.io/instance=shop").await;
            let services: Vec<&Pod> = pods
                .iter()
                .filter(|p| {
                    SERVICES.iter().any(|s| {
                        p.metadata
                            .labels
                            .as_ref()
                            .and_then(|l| l.get("app.kubernetes.io/component"))
                            .is_some_and(|c| c == s)
                    })
                })
                .collect();
            let all_next = !services.is_empty()
                && services.iter().all(|p| {
                    p.spec
                        .as_ref()
                        .is_some_and(|s| s.containers[0].image.as_deref() == Some(next.as_str()))
                        && storefront_kube_testing::conditions::pod_ready(p)
                        && p.metadata.deletion_timestamp.is_none()
                });
            (all_next && cluster::deployments_rolled_out(client, namespace).await).then_some(())
        },
    )
    .await;
    // A few more seconds of traffic on the new pods, then stop.
    tokio::time::sleep(Duration::from_secs(3)).await;
    done.store(true, Ordering::Relaxed);
    trickle.await.expect("the trickle");
    let stores_after = cluster::identities(&cluster::pods(client, namespace, STORE_SELECTOR).await);
    assert_eq!(
        stores_before, stores_after,
        "the upgrade of the shop's image restarted a store"
    );
    let (sent, failed) = (sent.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    println!("upgrade: {sent} GET /products during the rollout, {failed} failed");
    assert!(sent > 100, "the trickle sent only {sent} requests");
    assert_eq!(
        failed,
        0,
        "requests failed during the upgrade: {:?}",
        failures.lock().unwrap()
    );
    (sent, failed)
}

/// Twelve users check out while a checkout pod is deleted: every checkout
/// ends once, with one order and one charge each, none lost or doubled.
async fn checkouts_survive_a_deleted_pod(client: &kube::Client, namespace: &str, shop: &Shop) {
    let users: Vec<String> = (0..12).map(|i| format!("survivor-{i}")).collect();
    for user in &users {
        let token = shop.token(user);
        let added = shop.add_to_cart(&token, 3, 1).await;
        assert_eq!(added.status, StatusCode::CREATED, "{:?}", added.body);
    }
    let mut runs = Vec::new();
    for (i, user) in users.iter().enumerate() {
        let (shop, user) = (shop.clone(), user.clone());
        runs.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(150 * i as u64)).await;
            let token = shop.token(&user);
            let answer = shop
                .checkout_until_final(&token, &format!("{user}-key"), Duration::from_secs(240))
                .await;
            (user, answer)
        }));
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    let victims = cluster::pods(
        client,
        namespace,
        "app.kubernetes.io/instance=shop,app.kubernetes.io/component=checkout",
    )
    .await;
    assert!(!victims.is_empty());
    let api = Api::<Pod>::namespaced(client.clone(), namespace);
    for victim in &victims {
        use kube::ResourceExt;
        api.delete(&victim.name_any(), &DeleteParams::default())
            .await
            .expect("delete a checkout pod");
    }
    println!(
        "deleted {} checkout pod(s) during the checkouts",
        victims.len()
    );

    let mut completed = 0;
    for run in runs {
        let (user, answer) = run.await.expect("a checkout run");
        assert_eq!(
            answer.status,
            StatusCode::CREATED,
            "{user}: {:?}",
            answer.body
        );
        completed += 1;
        let token = shop.token(&user);
        let checkout_id = answer.body["checkout_id"].as_str().expect("id").to_owned();
        let orders = eventually("the order", Duration::from_secs(120), || async {
            let orders = shop.orders(&token).await;
            orders
                .iter()
                .any(|o| o["checkout_id"] == checkout_id.as_str())
                .then_some(orders)
        })
        .await;
        assert_eq!(
            orders.len(),
            1,
            "{user} has {} orders: {orders:?}",
            orders.len()
        );
    }
    // The charges, counted in the payment service's database.
    let pool = payment_db(client, namespace).await;
    let charges: Vec<(String, i64)> = sqlx::query_as(
        "SELECT user_id, count(*) FROM payments WHERE user_id LIKE 'survivor-%' AND status = 'SUCCEEDED' GROUP BY user_id ORDER BY user_id",
    )
    .fetch_all(&pool)
    .await
    .expect("count the charges");
    assert_eq!(charges.len(), users.len(), "{charges:?}");
    assert!(
        charges.iter().all(|(_, n)| *n == 1),
        "a user charged twice: {charges:?}"
    );
    println!("{completed} checkouts during the pod deletion: each one order and one charge");
}

/// The payment service's database on the managed PostgreSQL, as its admin.
async fn payment_db(client: &kube::Client, namespace: &str) -> sqlx::PgPool {
    let ip = cluster::pod_ip(client, namespace, "shop-postgres-0").await;
    let user = cluster::secret_value(client, namespace, "shop-postgres-admin", "username").await;
    let password =
        cluster::secret_value(client, namespace, "shop-postgres-admin", "password").await;
    let database = storefront_operator::names::database(namespace, "shop", "payment");
    let options = sqlx::postgres::PgConnectOptions::new()
        .host(&ip)
        .port(5432)
        .username(&user)
        .password(&password)
        .database(&database);
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .expect("the payment database")
}

/// The PostgreSQL pod deleted comes back with its data: the orders are still
/// there and a new checkout works.
async fn database_pod_comes_back(client: &kube::Client, namespace: &str, shop: &Shop, user: &str) {
    let token = shop.token(user);
    let before = shop.orders(&token).await;
    assert!(!before.is_empty());
    let api = Api::<Pod>::namespaced(client.clone(), namespace);
    let old = api.get("shop-postgres-0").await.expect("the postgres pod");
    api.delete("shop-postgres-0", &DeleteParams::default())
        .await
        .expect("delete the postgres pod");
    eventually(
        "a new, ready postgres pod",
        Duration::from_secs(180),
        || async {
            let pod = api.get_opt("shop-postgres-0").await.ok().flatten()?;
            (pod.metadata.uid != old.metadata.uid
                && storefront_kube_testing::conditions::pod_ready(&pod))
            .then_some(())
        },
    )
    .await;
    let after = eventually(
        "the orders after the restart",
        Duration::from_secs(120),
        || async {
            let answer = shop
                .try_call(Method::GET, "/api/v1/orders", &token, None, &[])
                .await
                .ok()?;
            (answer.status == StatusCode::OK).then(|| {
                answer.body["orders"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
        },
    )
    .await;
    assert_eq!(
        before, after,
        "the orders changed across the database pod's restart"
    );
    assert_eq!(
        shop.add_to_cart(&token, 4, 1).await.status,
        StatusCode::CREATED
    );
    let again = shop
        .checkout_until_final(
            &token,
            &format!("{user}-after-restart"),
            Duration::from_secs(120),
        )
        .await;
    assert_eq!(again.status, StatusCode::CREATED, "{:?}", again.body);
}

/// Uninstalling the shop deletes the Storefront and every child; the
/// operator chart's uninstall leaves nothing in its namespace.
async fn uninstall_leaves_nothing(shop_ns: &str, operator_ns: &str) {
    let started = Instant::now();
    helm(&[
        "uninstall",
        "shop",
        "-n",
        shop_ns,
        "--wait",
        "--timeout",
        "3m",
    ])
    .expect("helm uninstall shop");
    eventually("the Storefront gone", Duration::from_secs(180), || async {
        kubectl(&["-n", shop_ns, "get", "storefront", "shop"])
            .is_err()
            .then_some(())
    })
    .await;
    eventually(
        "every child of the shop gone",
        Duration::from_secs(180),
        || async {
            let left = cluster::leftovers(
                shop_ns,
                &format!("{CHILD_KINDS},pods,persistentvolumeclaims"),
                "app.kubernetes.io/instance=shop",
            );
            left.is_empty().then_some(())
        },
    )
    .await;
    println!(
        "shop uninstalled and every child gone in {} s",
        started.elapsed().as_secs()
    );
    helm(&[
        "uninstall",
        "storefront-operator",
        "-n",
        operator_ns,
        "--wait",
        "--timeout",
        "3m",
    ])
    .expect("helm uninstall the operator");
    eventually(
        "nothing left of the operator chart",
        Duration::from_secs(120),
        || async {
            let left = kubectl(&[
                "-n",
                operator_ns,
                "get",
                "all,serviceaccounts,roles,rolebindings,configmaps,secrets,leases",
                "-o",
                "name",
            ])
            .unwrap_or_default();
            let left: Vec<&str> = left
                .lines()
                .filter(|l| {
                    !l.is_empty()
                        && !l.starts_with("serviceaccount/default")
                        && !l.starts_with("configmap/kube-root-ca.crt")
                })
                .collect();
            left.is_empty().then_some(())
        },
    )
    .await;
    let cluster_wide =
        kubectl(&["get", "clusterroles,clusterrolebindings", "-o", "name"]).unwrap_or_default();
    assert!(
        !cluster_wide.lines().any(|l| l.contains(operator_ns)),
        "cluster-wide RBAC of the operator chart left behind: {cluster_wide}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_managed_shop_on_the_real_node_serves_upgrades_survives_and_goes_away() {
    let client = cluster::real_node().await;
    cluster::apply_crd();
    let operator_ns = NodeNamespace::new(&client, "e2e-operator").await;
    let shop_ns = NodeNamespace::new(&client, "e2e-shop").await;
    let (spans, otlp) = Receiver::start().await;
    let _uninstall = UninstallOnFailure {
        shops: vec![(shop_ns.name().to_owned(), "shop".to_owned())],
        operator_namespace: operator_ns.name().to_owned(),
        namespaces: vec![shop_ns.name().to_owned(), operator_ns.name().to_owned()],
    };

    cluster::install_operator(operator_ns.name(), shop_ns.name());
    let operator_pods = cluster::pods(
        &client,
        operator_ns.name(),
        "app.kubernetes.io/name=storefront-operator",
    )
    .await;
    assert_eq!(operator_pods.len(), 1);
    let spec = operator_pods[0].spec.clone().expect("a pod spec");
    assert_eq!(spec.node_name.as_deref(), Some(NODE_NAME));
    assert_eq!(
        spec.containers[0].image.as_deref(),
        Some(format!("{}:{}", images::OPERATOR_REPOSITORY, images::OPERATOR_TAG).as_str())
    );
    assert_eq!(
        spec.service_account_name.as_deref(),
        Some("storefront-operator")
    );

    let applied = Instant::now();
    install_shop(shop_ns.name(), &otlp);
    cluster::wait_ready(shop_ns.name(), "shop", operator_ns.name(), READY_TIMEOUT).await;
    let ready_after = applied.elapsed();
    println!(
        "apply -> Ready (managed stores included): {:.1} s",
        ready_after.as_secs_f64()
    );
    // The services waited for their stores and databases; none was restarted.
    let restarted: Vec<String> =
        cluster::pods(&client, shop_ns.name(), "app.kubernetes.io/instance=shop")
            .await
            .iter()
            .filter_map(|pod| {
                let statuses = pod.status.as_ref()?.container_statuses.as_ref()?;
                let restarts: i32 = statuses.iter().map(|c| c.restart_count).sum();
                (restarts > 0).then(|| {
                    format!(
                        "{} ({restarts})",
                        pod.metadata.name.clone().unwrap_or_default()
                    )
                })
            })
            .collect();
    assert!(
        restarted.is_empty(),
        "pods restarted while the shop started: {restarted:?}"
    );

    let shop = shop_client(&client, shop_ns.name()).await;
    catalog_page(&client, shop_ns.name(), &shop).await;
    rest_flow(&shop, &spans, "e2e-alice").await;
    let (upgrade_requests, upgrade_failed) =
        upgrade_under_traffic(&client, shop_ns.name(), &shop).await;
    catalog_page(&client, shop_ns.name(), &shop).await;
    // `make bench` reads these (STOREFRONT_E2E_FIGURES: a JSON file to write).
    if let Ok(path) = std::env::var("STOREFRONT_E2E_FIGURES") {
        let figures = serde_json::json!({
            "apply_to_ready_seconds": (ready_after.as_secs_f64() * 10.0).round() / 10.0,
            "apply_to_ready_target_seconds": 90,
            "upgrade_requests": upgrade_requests,
            "upgrade_failed_requests": upgrade_failed,
            "upgrade_failed_target": 0,
            "node": NODE_NAME,
        });
        std::fs::write(
            &path,
            serde_json::to_string_pretty(&figures).unwrap() + "\n",
        )
        .expect("write the figures");
    }
    checkouts_survive_a_deleted_pod(&client, shop_ns.name(), &shop).await;
    database_pod_comes_back(&client, shop_ns.name(), &shop, "e2e-alice").await;
    uninstall_leaves_nothing(shop_ns.name(), operator_ns.name()).await;

    // Installing both again into the same namespaces works.
    cluster::install_operator(operator_ns.name(), shop_ns.name());
    install_shop(shop_ns.name(), &otlp);
    cluster::wait_ready(shop_ns.name(), "shop", operator_ns.name(), READY_TIMEOUT).await;
    let shop = shop_client(&client, shop_ns.name()).await;
    catalog_page(&client, shop_ns.name(), &shop).await;
    rest_flow(&shop, &spans, "e2e-bob").await;
    uninstall_leaves_nothing(shop_ns.name(), operator_ns.name()).await;

    shop_ns.delete().await;
    operator_ns.delete().await;
}
