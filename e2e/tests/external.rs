//! External mode on the real node: a Storefront whose PostgreSQL, Redis and
//! Kafka run elsewhere (here: plain Deployments in a namespace of their
//! own, reached by their Service names), installed with both charts; and a
//! managed-mode Storefront whose Kafka never becomes reachable, deleted
//! beside it: its deletion completes all the same.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use storefront_e2e::cluster::{self, NodeNamespace, UninstallOnFailure, eventually, helm, kubectl};
use storefront_e2e::images;
use storefront_e2e::shop::Shop;

const PASSWORD: &str = "e2e-external-admin";

/// PostgreSQL, Redis and Kafka as a platform team might run them outside
/// the shop: Deployments with Services, on the stand-in images.
fn external_stores(namespace: &str) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{ name: postgres }}
spec:
  selector: {{ matchLabels: {{ app: postgres }} }}
  template:
    metadata: {{ labels: {{ app: postgres }} }}
    spec:
      securityContext: {{ runAsUser: 999, runAsGroup: 999, fsGroup: 999 }}
      containers:
      - name: postgres
        image: {postgres}
        env:
        - {{ name: POSTGRES_USER, value: platform }}
        - {{ name: POSTGRES_PASSWORD, value: {PASSWORD} }}
        - {{ name: PGDATA, value: /var/lib/postgresql/data/pgdata }}
        ports: [{{ containerPort: 5432 }}]
        readinessProbe: {{ exec: {{ command: [pg_isready, -U, platform] }}, periodSeconds: 2 }}
        volumeMounts: [{{ name: data, mountPath: /var/lib/postgresql/data }}]
      volumes: [{{ name: data, emptyDir: {{}} }}]
---
apiVersion: v1
kind: Service
metadata: {{ name: postgres }}
spec: {{ selector: {{ app: postgres }}, ports: [{{ port: 5432 }}] }}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{ name: redis }}
spec:
  selector: {{ matchLabels: {{ app: redis }} }}
  template:
    metadata: {{ labels: {{ app: redis }} }}
    spec:
      securityContext: {{ runAsUser: 999, runAsGroup: 999, fsGroup: 999 }}
      containers:
      - name: redis
        image: {redis}
        ports: [{{ containerPort: 6379 }}]
        readinessProbe: {{ exec: {{ command: [redis-cli, ping] }}, periodSeconds: 2 }}
        volumeMounts: [{{ name: data, mountPath: /data }}]
      volumes: [{{ name: data, emptyDir: {{}} }}]
---
apiVersion: v1
kind: Service
metadata: {{ name: redis }}
spec: {{ selector: {{ app: redis }}, ports: [{{ port: 6379 }}] }}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{ name: kafka }}
spec:
  selector: {{ matchLabels: {{ app: kafka }} }}
  template:
    metadata: {{ labels: {{ app: kafka }} }}
    spec:
      securityContext: {{ runAsUser: 1000, runAsGroup: 1000, fsGroup: 1000 }}
      containers:
      - name: kafka
        image: {kafka}
        env:
        - {{ name: KAFKA_NODE_ID, value: "1" }}
        - {{ name: KAFKA_PROCESS_ROLES, value: "broker,controller" }}
        - {{ name: KAFKA_LISTENERS, value: "PLAINTEXT://:9092,CONTROLLER://:9093" }}
        - {{ name: KAFKA_ADVERTISED_LISTENERS, value: "PLAINTEXT://kafka.{namespace}.svc:9092" }}
        - {{ name: KAFKA_CONTROLLER_LISTENER_NAMES, value: CONTROLLER }}
        - {{ name: KAFKA_LISTENER_SECURITY_PROTOCOL_MAP, value: "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT" }}
        - {{ name: KAFKA_CONTROLLER_QUORUM_VOTERS, value: "1@localhost:9093" }}
        - {{ name: KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR, value: "1" }}
        - {{ name: KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR, value: "1" }}
        - {{ name: KAFKA_TRANSACTION_STATE_LOG_MIN_ISR, value: "1" }}
        - {{ name: KAFKA_AUTO_CREATE_TOPICS_ENABLE, value: "false" }}
        - {{ name: KAFKA_LOG_DIRS, value: /var/lib/kafka/data/logs }}
        ports: [{{ containerPort: 9092 }}]
        readinessProbe: {{ tcpSocket: {{ port: 9092 }}, periodSeconds: 2 }}
        volumeMounts: [{{ name: data, mountPath: /var/lib/kafka/data }}]
      volumes: [{{ name: data, emptyDir: {{}} }}]
---
apiVersion: v1
kind: Service
metadata: {{ name: kafka }}
spec: {{ selector: {{ app: kafka }}, ports: [{{ port: 9092 }}] }}
"#,
        postgres = images::POSTGRES,
        redis = images::REDIS,
        kafka = images::KAFKA,
    )
}

/// A managed Storefront whose "Kafka" is an image that never listens on
/// the broker port: the operator can never reach it.
fn unreachable_kafka_shop() -> String {
    format!(
        r#"
apiVersion: shop.storefront.dev/v1alpha1
kind: Storefront
metadata: {{ name: nokafka }}
spec:
  image: {{ repository: {shop}, tag: {tag} }}
  postgres: {{ managed: {{ image: {postgres} }} }}
  redis: {{ managed: {{ image: {redis} }} }}
  kafka:
    managed: {{ image: {not_kafka} }}
    topics: {{ deletionPolicy: Delete }}
"#,
        shop = images::SHOP_REPOSITORY,
        tag = images::SHOP_TAG,
        postgres = images::POSTGRES,
        redis = images::REDIS,
        not_kafka = images::REDIS,
    )
}

fn apply(namespace: &str, manifest: &str) {
    let file = std::env::temp_dir().join(format!("e2e-{}.yaml", uuid::Uuid::new_v4().simple()));
    std::fs::write(&file, manifest).expect("write a manifest");
    let applied = kubectl(&[
        "-n",
        namespace,
        "apply",
        "-f",
        file.to_str().expect("a path"),
    ]);
    let _ = std::fs::remove_file(&file);
    applied.expect("kubectl apply");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_external_mode_shop_runs_and_a_shop_whose_kafka_never_answers_is_still_deleted() {
    let client = cluster::real_node().await;
    cluster::apply_crd();
    let stores_ns = NodeNamespace::new(&client, "e2e-stores").await;
    let operator_ns = NodeNamespace::new(&client, "e2e-ext-operator").await;
    let shop_ns = NodeNamespace::new(&client, "e2e-ext-shop").await;
    let _uninstall = UninstallOnFailure {
        shops: vec![
            (shop_ns.name().to_owned(), "ext".to_owned()),
            (shop_ns.name().to_owned(), "nokafka".to_owned()),
        ],
        operator_namespace: operator_ns.name().to_owned(),
        namespaces: vec![
            shop_ns.name().to_owned(),
            operator_ns.name().to_owned(),
            stores_ns.name().to_owned(),
        ],
    };
    apply(stores_ns.name(), &external_stores(stores_ns.name()));
    kubectl(&[
        "-n",
        stores_ns.name(),
        "rollout",
        "status",
        "deployment/postgres",
        "deployment/redis",
        "deployment/kafka",
        "--timeout=180s",
    ])
    .expect("the external stores start");

    cluster::install_operator(operator_ns.name(), shop_ns.name());

    let stores = stores_ns.name();
    helm(&[
        "install",
        "ext",
        "charts/storefront",
        "-n",
        shop_ns.name(),
        "--set",
        &format!("image.repository={}", images::SHOP_REPOSITORY),
        "--set",
        &format!("image.tag={}", images::SHOP_TAG),
        "--set",
        "postgres.mode=external",
        "--set",
        &format!("postgres.external.host=postgres.{stores}.svc"),
        "--set",
        "postgres.external.sslMode=disable",
        "--set",
        "postgres.external.createAdminSecret=true",
        "--set",
        "postgres.external.adminUsername=platform",
        "--set",
        &format!("postgres.external.adminPassword={PASSWORD}"),
        "--set",
        "redis.mode=external",
        "--set",
        &format!("redis.external.url=redis://redis.{stores}.svc:6379"),
        "--set",
        "kafka.mode=external",
        "--set",
        &format!("kafka.external.bootstrapServers=kafka.{stores}.svc:9092"),
        "--set",
        "kafka.topics.deletionPolicy=Delete",
    ])
    .expect("the storefront chart installs in external mode");
    let ready = cluster::wait_ready(
        shop_ns.name(),
        "ext",
        operator_ns.name(),
        Duration::from_secs(300),
    )
    .await;
    println!(
        "external mode: apply -> Ready in {:.1} s",
        ready.as_secs_f64()
    );

    let base = cluster::service_url(&client, shop_ns.name(), "ext-gateway").await;
    let secret = cluster::secret_value(&client, shop_ns.name(), "ext-jwt", "secret").await;
    let shop = Shop::new(base, secret);
    let products = shop.call(Method::GET, "/api/v1/products", "", None).await;
    assert_eq!(products.status, StatusCode::OK, "{:?}", products.body);
    assert_eq!(products.body["products"].as_array().map(Vec::len), Some(5));
    let token = shop.token("e2e-external");
    assert_eq!(
        shop.add_to_cart(&token, 5, 1).await.status,
        StatusCode::CREATED
    );
    let done = shop
        .checkout_until_final(&token, "e2e-external-1", Duration::from_secs(120))
        .await;
    assert_eq!(done.status, StatusCode::CREATED, "{:?}", done.body);
    let checkout_id = done.body["checkout_id"].as_str().expect("id").to_owned();
    eventually("the order", Duration::from_secs(60), || async {
        shop.orders(&token)
            .await
            .iter()
            .any(|o| o["checkout_id"] == checkout_id.as_str())
            .then_some(())
    })
    .await;

    // A managed shop whose broker never answers: never Ready, still deleted.
    apply(shop_ns.name(), &unreachable_kafka_shop());
    eventually(
        "the unreachable shop's Kafka StatefulSet",
        Duration::from_secs(60),
        || async {
            kubectl(&["-n", shop_ns.name(), "get", "statefulset", "nokafka-kafka"])
                .is_ok()
                .then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(15)).await;
    assert!(
        !cluster::storefront_ready(shop_ns.name(), "nokafka"),
        "a shop without a broker became Ready"
    );
    let deleting = Instant::now();
    kubectl(&[
        "-n",
        shop_ns.name(),
        "delete",
        "storefront",
        "nokafka",
        "--wait=false",
    ])
    .expect("delete");
    eventually(
        "the unreachable shop deleted",
        Duration::from_secs(180),
        || async {
            kubectl(&["-n", shop_ns.name(), "get", "storefront", "nokafka"])
                .is_err()
                .then_some(())
        },
    )
    .await;
    println!(
        "a Storefront whose Kafka never answered was deleted in {:.1} s",
        deleting.elapsed().as_secs_f64()
    );
    eventually("its children gone", Duration::from_secs(120), || async {
        cluster::leftovers(
            shop_ns.name(),
            "deployments,statefulsets,services,configmaps,persistentvolumeclaims",
            "app.kubernetes.io/instance=nokafka",
        )
        .is_empty()
        .then_some(())
    })
    .await;

    // The external shop goes too, its topics with it (deletionPolicy Delete).
    helm(&[
        "uninstall",
        "ext",
        "-n",
        shop_ns.name(),
        "--wait",
        "--timeout",
        "3m",
    ])
    .expect("helm uninstall ext");
    eventually(
        "the external shop deleted",
        Duration::from_secs(180),
        || async {
            kubectl(&["-n", shop_ns.name(), "get", "storefront", "ext"])
                .is_err()
                .then_some(())
        },
    )
    .await;
    helm(&[
        "uninstall",
        "storefront-operator",
        "-n",
        operator_ns.name(),
        "--wait",
        "--timeout",
        "2m",
    ])
    .expect("uninstall the operator");
    shop_ns.delete().await;
    operator_ns.delete().await;
    stores_ns.delete().await;
}
