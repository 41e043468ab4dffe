//! The builders' unit tests: fixtures in, objects out.

use super::*;
use crate::crd::{
    AutoscalingSpec, ExternalKafka, ExternalPostgres, ExternalRedis, KafkaSpec, ManagedStore,
    PostgresSpec, RedisSpec, StorefrontSpec,
};
use crate::names::METRICS_PORT;
use kube::api::ObjectMeta;

fn external() -> Storefront {
    let mut sf = Storefront::new(
        "shop",
        StorefrontSpec {
            postgres: PostgresSpec {
                managed: None,
                external: Some(ExternalPostgres {
                    host: "db.example".into(),
                    port: 5432,
                    admin_secret_name: "pg-admin".into(),
                    ssl_mode: None,
                }),
            },
            redis: RedisSpec {
                managed: None,
                external: Some(ExternalRedis {
                    url: "redis://cache:6379".into(),
                }),
            },
            kafka: KafkaSpec {
                managed: None,
                external: Some(ExternalKafka {
                    bootstrap_servers: "kafka:9092".into(),
                }),
                topics: Default::default(),
            },
            ..StorefrontSpec::default()
        },
    );
    sf.metadata = ObjectMeta {
        name: Some("shop".into()),
        namespace: Some("team".into()),
        uid: Some("uid-1".into()),
        ..ObjectMeta::default()
    };
    sf
}

fn inputs() -> SecretInputs {
    SecretInputs {
        jwt: ("shop-jwt".into(), "secret".into()),
        fingerprints: BTreeMap::from([("shop-jwt".into(), "abc".into())]),
    }
}

fn find<'a>(children: &'a [Child], kind: ChildKind, name: &str) -> &'a Value {
    &children
        .iter()
        .find(|c| c.kind == kind && c.name == name)
        .unwrap_or_else(|| panic!("no {kind:?} {name}"))
        .body
}

#[test]
fn every_service_gets_a_deployment_service_and_pdb_owned_by_the_storefront() {
    let children = desired(&external(), &inputs(), None);
    for service in SERVICES {
        let name = format!("shop-{}", service.name);
        for kind in [
            ChildKind::Deployment,
            ChildKind::Service,
            ChildKind::PodDisruptionBudget,
        ] {
            let body = find(&children, kind, &name);
            assert_eq!(body["metadata"]["namespace"], "team");
            assert_eq!(body["metadata"]["ownerReferences"][0]["uid"], "uid-1");
            assert_eq!(body["metadata"]["ownerReferences"][0]["kind"], "Storefront");
            assert_eq!(
                body["metadata"]["labels"]["app.kubernetes.io/instance"],
                "shop"
            );
            assert_eq!(
                body["metadata"]["labels"]["app.kubernetes.io/component"],
                service.name
            );
            assert_eq!(
                body["metadata"]["labels"]["app.kubernetes.io/managed-by"],
                MANAGED_BY
            );
        }
        let deployment = find(&children, ChildKind::Deployment, &name);
        let container = &deployment["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(container["args"], json!([service.name]));
        assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
        assert_eq!(
            container["securityContext"]["allowPrivilegeEscalation"],
            false
        );
        assert_eq!(deployment["spec"]["replicas"], 1);
        if service.is_http() {
            assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
            assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
            assert_eq!(container["ports"][0]["name"], "http");
        } else {
            assert_eq!(container["readinessProbe"]["grpc"]["port"], service.port);
        }
    }
    // No managed stores in external mode, no HPA without autoscaling.
    assert!(
        children
            .iter()
            .all(|c| c.kind != ChildKind::StatefulSet
                && c.kind != ChildKind::HorizontalPodAutoscaler)
    );
}

#[test]
fn each_deployment_reads_only_its_own_database_secret() {
    let children = desired(&external(), &inputs(), None);
    for service in SERVICES {
        let secrets: Vec<String> = env(&children, service.name)
            .iter()
            .filter_map(|e| e["valueFrom"]["secretKeyRef"]["name"].as_str())
            .map(str::to_owned)
            .collect();
        if service.is_gateway() {
            assert_eq!(secrets, ["shop-jwt"]);
        } else if service.is_web() {
            // Without the development sign-in the web signs no tokens.
            assert_eq!(secrets, ["shop-web-session"]);
        } else {
            assert_eq!(secrets, [format!("shop-{}-db", service.name)]);
        }
    }
}

/// The `env` of a service's container.
fn env(children: &[Child], service: &str) -> Vec<Value> {
    find(children, ChildKind::Deployment, &format!("shop-{service}"))["spec"]["template"]["spec"]
        ["containers"][0]["env"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// A variable of a service's `env`: its value, or where it comes from.
fn env_var(children: &[Child], service: &str, name: &str) -> Option<Value> {
    env(children, service)
        .into_iter()
        .find(|e| e["name"] == name)
        .map(|e| {
            e.get("value")
                .cloned()
                .unwrap_or_else(|| e["valueFrom"].clone())
        })
}

fn oidc() -> crate::crd::OidcSpec {
    crate::crd::OidcSpec {
        issuer: "https://id.example.com/realms/shop".into(),
        client_id: "storefront".into(),
        client_secret_ref: Some(crate::crd::SecretKeyRef {
            name: "oidc-client".into(),
            key: "secret".into(),
        }),
        scopes: vec!["openid".into(), "email".into()],
        provider_name: Some("Example ID".into()),
    }
}

#[test]
fn the_web_is_off_the_sign_ins_until_the_spec_turns_them_on() {
    let sf = external();
    let children = desired(&sf, &inputs(), None);
    let data = config_data(&sf);
    assert_eq!(data["WEB_LISTEN"], "0.0.0.0:8081");
    assert_eq!(data["WEB_GATEWAY_URL"], "http://shop-gateway.team.svc:8080");
    assert_eq!(data["WEB_DEV_SIGN_IN"], "false");
    assert!(data.keys().all(|k| !k.starts_with("WEB_OIDC_")));
    assert!(!data.contains_key("WEB_PUBLIC_URL"));
    assert_eq!(env_var(&children, "web", "JWT_SECRET"), None);
    assert_eq!(
        env_var(&children, "web", "WEB_SESSION_KEY"),
        Some(json!({ "secretKeyRef": { "name": "shop-web-session", "key": "key" } }))
    );
    assert_eq!(env_var(&children, "gateway", "OIDC_ISSUER"), None);
    let container = &find(&children, ChildKind::Deployment, "shop-web")["spec"]["template"]["spec"]
        ["containers"][0];
    assert_eq!(container["args"], json!(["web"]));
    assert_eq!(container["ports"][0]["containerPort"], 8081);

    // The development sign-in signs with the gateway's JWT secret.
    let mut dev = external();
    dev.spec.web.sign_in.dev = true;
    let children = desired(&dev, &inputs(), None);
    assert_eq!(config_data(&dev)["WEB_DEV_SIGN_IN"], "true");
    assert_eq!(
        env_var(&children, "web", "JWT_SECRET"),
        Some(json!({ "secretKeyRef": { "name": "shop-jwt", "key": "secret" } }))
    );

    // OIDC: the web's client, and the gateway trusting its ID tokens.
    let mut sso = external();
    sso.spec.web.public_url = Some("https://shop.example.com/".into());
    sso.spec.web.sign_in.oidc = Some(oidc());
    let children = desired(&sso, &inputs(), None);
    let data = config_data(&sso);
    assert_eq!(data["WEB_PUBLIC_URL"], "https://shop.example.com");
    assert_eq!(
        data["WEB_OIDC_ISSUER"],
        "https://id.example.com/realms/shop"
    );
    assert_eq!(data["WEB_OIDC_CLIENT_ID"], "storefront");
    assert_eq!(data["WEB_OIDC_SCOPES"], "openid email");
    assert_eq!(data["WEB_OIDC_PROVIDER_NAME"], "Example ID");
    assert_eq!(
        env_var(&children, "web", "WEB_OIDC_CLIENT_SECRET"),
        Some(json!({ "secretKeyRef": { "name": "oidc-client", "key": "secret" } }))
    );
    assert_eq!(
        env_var(&children, "gateway", "OIDC_ISSUER"),
        Some(json!("https://id.example.com/realms/shop"))
    );
    assert_eq!(
        env_var(&children, "gateway", "OIDC_AUDIENCE"),
        Some(json!("storefront"))
    );
    assert_eq!(env_var(&children, "cart", "OIDC_ISSUER"), None);
}

#[test]
fn the_shop_s_public_url_defaults_to_its_ingress() {
    let mut sf = external();
    sf.spec.gateway.ingress = Some(crate::crd::IngressSpec {
        host: "shop.example.com".into(),
        class_name: None,
        tls_secret_name: None,
    });
    assert_eq!(
        web_public_url(&sf).as_deref(),
        Some("http://shop.example.com")
    );
    if let Some(ingress) = sf.spec.gateway.ingress.as_mut() {
        ingress.tls_secret_name = Some("shop-tls".into());
    }
    assert_eq!(
        web_public_url(&sf).as_deref(),
        Some("https://shop.example.com")
    );
    sf.spec.web.public_url = Some("https://www.example.com/shop".into());
    assert_eq!(
        web_public_url(&sf).as_deref(),
        Some("https://www.example.com/shop")
    );
}

#[test]
fn the_ingress_leads_to_the_web_and_the_api_to_the_gateway() {
    let mut sf = external();
    sf.spec.gateway.ingress = Some(crate::crd::IngressSpec {
        host: "shop.example.com".into(),
        class_name: Some("nginx".into()),
        tls_secret_name: Some("shop-tls".into()),
    });
    let children = desired(&sf, &inputs(), None);
    let ingress = find(&children, ChildKind::Ingress, "shop-gateway");
    let paths: Vec<(String, String, String)> = ingress["spec"]["rules"][0]["http"]["paths"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            (
                p["path"].as_str().unwrap_or_default().to_owned(),
                p["pathType"].as_str().unwrap_or_default().to_owned(),
                p["backend"]["service"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect();
    let prefix =
        |path: &str, service: &str| (path.to_owned(), "Prefix".to_owned(), service.to_owned());
    assert_eq!(
        paths,
        [prefix("/api", "shop-gateway"), prefix("/", "shop-web")]
    );
    assert_eq!(ingress["spec"]["ingressClassName"], "nginx");
    assert_eq!(ingress["spec"]["tls"][0]["secretName"], "shop-tls");
    let web = find(&children, ChildKind::Service, "shop-web");
    assert_eq!(web["spec"]["ports"][0]["name"], "http");
    assert_eq!(web["spec"]["ports"][0]["port"], 8081);
    assert!(web["spec"].get("type").is_none(), "a ClusterIP Service");
}

#[test]
fn a_secret_change_changes_only_the_hash_of_the_pods_that_read_it() {
    let sf = external();
    let before = desired(&sf, &inputs(), None);
    let mut changed = inputs();
    changed
        .fingerprints
        .insert("shop-jwt".into(), "rotated".into());
    let after = desired(&sf, &changed, None);
    let hash = |children: &[Child], service: &str| {
        find(children, ChildKind::Deployment, &format!("shop-{service}"))["spec"]["template"]
            ["metadata"]["annotations"][CONFIG_HASH_ANNOTATION]
            .clone()
    };
    assert_ne!(hash(&before, "gateway"), hash(&after, "gateway"));
    assert_eq!(hash(&before, "cart"), hash(&after, "cart"));
    assert_eq!(hash(&before, "web"), hash(&after, "web"));
    // The web's own Secrets roll the web alone.
    let mut sso = sf.clone();
    sso.spec.web.public_url = Some("https://shop.example.com".into());
    sso.spec.web.sign_in.oidc = Some(oidc());
    let sso_before = desired(&sso, &inputs(), None);
    for secret in ["shop-web-session", "oidc-client"] {
        let mut changed = inputs();
        changed.fingerprints.insert(secret.into(), "rotated".into());
        let after = desired(&sso, &changed, None);
        assert_ne!(hash(&sso_before, "web"), hash(&after, "web"), "{secret}");
        assert_eq!(hash(&sso_before, "gateway"), hash(&after, "gateway"));
    }
    // A configuration change rolls every service.
    let mut traced = sf.clone();
    traced.spec.tracing = Some(crate::crd::TracingSpec {
        otlp_endpoint: "http://collector:4317".into(),
        protocol: None,
        sampling_ratio: 0.5,
    });
    let traced = desired(&traced, &inputs(), None);
    assert_ne!(hash(&before, "cart"), hash(&traced, "cart"));
    let config = find(&traced, ChildKind::ConfigMap, "shop-config");
    assert_eq!(config["data"]["OTEL_TRACES_SAMPLER_ARG"], "0.5");
}

#[test]
fn config_points_services_at_each_other_and_the_shop_scoped_topics() {
    let data = config_data(&external());
    assert_eq!(
        data["CHECKOUT_INVENTORY_URL"],
        "http://shop-inventory.team.svc:50053"
    );
    assert_eq!(
        data["GATEWAY_CHECKOUT_URL"],
        "http://shop-checkout.team.svc:50056"
    );
    assert_eq!(data["CART_CHECKOUT_TOPIC"], "team.shop.checkout-events");
    assert_eq!(data["ORDERS_ORDER_TOPIC"], "team.shop.order-events");
    assert_eq!(data["ORDERS_KAFKA_BOOTSTRAP"], "kafka:9092");
    // Cancelled orders are refunded and restocked from the order topic.
    for service in ["PAYMENT", "INVENTORY"] {
        assert_eq!(data[&format!("{service}_KAFKA_BOOTSTRAP")], "kafka:9092");
        assert_eq!(
            data[&format!("{service}_ORDER_TOPIC")],
            "team.shop.order-events"
        );
    }
    assert_eq!(data["PAYMENT_CONSUMER_GROUP"], "team.shop.payment");
    assert_eq!(data["INVENTORY_CONSUMER_GROUP"], "team.shop.inventory");
    let topics: Vec<String> = topics(&external()).into_iter().map(|t| t.name).collect();
    assert_eq!(
        topics,
        [
            "team.shop.checkout-events",
            "team.shop.checkout-events.dlq",
            "team.shop.order-events",
            "team.shop.order-events.dlq",
        ],
        "every consumed topic has its dead-letter topic"
    );
    assert_eq!(data["CART_REDIS_URL"], "redis://cache:6379");
    assert!(!data.contains_key("OTEL_EXPORTER_OTLP_ENDPOINT"));
    assert!(!data.contains_key("GATEWAY_TRUSTED_PROXIES"));
    assert!(data.values().all(|v| !v.contains("password")));

    let mut behind_ingress = external();
    behind_ingress.spec.gateway.trusted_proxies = vec!["10.0.0.0/8".into(), "fd00::/8".into()];
    let data = config_data(&behind_ingress);
    assert_eq!(data["GATEWAY_TRUSTED_PROXIES"], "10.0.0.0/8,fd00::/8");
}

#[test]
fn autoscaling_makes_an_hpa_and_leaves_replicas_to_it() {
    let mut sf = external();
    sf.spec.services.cart.autoscaling = Some(AutoscalingSpec {
        min_replicas: 2,
        max_replicas: 5,
        target_cpu_utilization_percentage: 70,
    });
    let children = desired(&sf, &inputs(), None);
    let hpa = find(&children, ChildKind::HorizontalPodAutoscaler, "shop-cart");
    assert_eq!(hpa["spec"]["minReplicas"], 2);
    assert_eq!(hpa["spec"]["maxReplicas"], 5);
    assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], "shop-cart");
    let deployment = find(&children, ChildKind::Deployment, "shop-cart");
    assert!(deployment["spec"].get("replicas").is_none());
}

#[test]
fn managed_mode_adds_statefulsets_and_points_at_them() {
    let mut sf = external();
    sf.spec.postgres = PostgresSpec {
        managed: Some(ManagedStore::default()),
        external: None,
    };
    sf.spec.redis = RedisSpec {
        managed: Some(ManagedStore::default()),
        external: None,
    };
    sf.spec.kafka.external = None;
    sf.spec.kafka.managed = Some(ManagedStore {
        storage: Some("5Gi".into()),
        ..ManagedStore::default()
    });
    let children = desired(&sf, &inputs(), None);
    for store in ["postgres", "redis", "kafka"] {
        let name = format!("shop-{store}");
        let set = find(&children, ChildKind::StatefulSet, &name);
        assert_eq!(set["spec"]["replicas"], 1);
        assert_eq!(
            find(&children, ChildKind::Service, &name)["spec"]["clusterIP"],
            "None"
        );
    }
    let kafka = find(&children, ChildKind::StatefulSet, "shop-kafka");
    assert_eq!(
        kafka["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"],
        "5Gi"
    );
    let data = config_data(&sf);
    assert_eq!(data["CART_KAFKA_BOOTSTRAP"], "shop-kafka.team.svc:9092");
    assert_eq!(data["CART_REDIS_URL"], "redis://shop-redis.team.svc:6379");
    assert_eq!(
        postgres_host(&sf),
        ("shop-postgres.team.svc".to_owned(), 5432)
    );
}

#[test]
fn only_the_gateway_and_the_web_take_outside_traffic() {
    let children = desired(&external(), &inputs(), None);
    let internal = find(&children, ChildKind::NetworkPolicy, "shop-internal");
    assert_eq!(
        internal["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/instance"],
        "shop"
    );
    let gateway = find(&children, ChildKind::NetworkPolicy, "shop-gateway");
    assert_eq!(
        gateway["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"],
        "gateway"
    );
    assert_eq!(gateway["spec"]["ingress"][0]["ports"][0]["port"], 8080);
    assert!(gateway["spec"]["ingress"][0].get("from").is_none());
    let web = find(&children, ChildKind::NetworkPolicy, "shop-web");
    assert_eq!(
        web["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"],
        "web"
    );
    assert_eq!(web["spec"]["ingress"][0]["ports"][0]["port"], 8081);
    assert!(web["spec"]["ingress"][0].get("from").is_none());
}

#[test]
fn every_built_object_has_the_shape_of_its_kind() {
    use k8s_openapi::api::{apps, autoscaling, core, networking, policy};
    let mut sf = external();
    sf.spec.services.orders.autoscaling = Some(AutoscalingSpec {
        min_replicas: 1,
        max_replicas: 3,
        target_cpu_utilization_percentage: 80,
    });
    sf.spec.services.web.autoscaling = sf.spec.services.orders.autoscaling.clone();
    sf.spec.gateway.ingress = Some(crate::crd::IngressSpec {
        host: "shop.example.com".into(),
        class_name: None,
        tls_secret_name: None,
    });
    sf.spec.web.sign_in.oidc = Some(oidc());
    sf.spec.kafka.external = None;
    sf.spec.kafka.managed = Some(ManagedStore::default());
    for child in desired(&sf, &inputs(), None) {
        let body = child.body.clone();
        let parsed = match child.kind {
            ChildKind::ConfigMap => serde_json::from_value::<core::v1::ConfigMap>(body).map(|_| ()),
            ChildKind::Secret => serde_json::from_value::<core::v1::Secret>(body).map(|_| ()),
            ChildKind::Service => serde_json::from_value::<core::v1::Service>(body).map(|_| ()),
            ChildKind::Deployment => {
                serde_json::from_value::<apps::v1::Deployment>(body).map(|_| ())
            }
            ChildKind::StatefulSet => {
                serde_json::from_value::<apps::v1::StatefulSet>(body).map(|_| ())
            }
            ChildKind::PodDisruptionBudget => {
                serde_json::from_value::<policy::v1::PodDisruptionBudget>(body).map(|_| ())
            }
            ChildKind::HorizontalPodAutoscaler => {
                serde_json::from_value::<autoscaling::v2::HorizontalPodAutoscaler>(body).map(|_| ())
            }
            ChildKind::NetworkPolicy => {
                serde_json::from_value::<networking::v1::NetworkPolicy>(body).map(|_| ())
            }
            ChildKind::Ingress => {
                serde_json::from_value::<networking::v1::Ingress>(body).map(|_| ())
            }
        };
        assert!(
            parsed.is_ok(),
            "{:?} {}: {parsed:?}",
            child.kind,
            child.name
        );
        assert_eq!(child.body["kind"], child.kind.gvk().2);
    }
}

/// [`external`] with PostgreSQL, Redis and Kafka managed by the operator.
fn managed() -> Storefront {
    let mut sf = external();
    sf.spec.postgres = PostgresSpec {
        managed: Some(ManagedStore::default()),
        external: None,
    };
    sf.spec.redis = RedisSpec {
        managed: Some(ManagedStore::default()),
        external: None,
    };
    sf.spec.kafka.external = None;
    sf.spec.kafka.managed = Some(ManagedStore::default());
    sf
}

#[test]
fn upgrading_the_shop_s_image_leaves_the_stores_untouched() {
    let mut old = managed();
    old.spec.image.tag = Some("1.0.0".into());
    let mut new = old.clone();
    new.spec.image.tag = Some("1.1.0".into());
    let (old, new) = (
        desired(&old, &inputs(), None),
        desired(&new, &inputs(), None),
    );
    for store in ["postgres", "redis", "kafka"] {
        let name = format!("shop-{store}");
        for kind in [ChildKind::StatefulSet, ChildKind::Service] {
            assert_eq!(
                find(&old, kind, &name),
                find(&new, kind, &name),
                "{kind:?} {name} changes with the shop's image tag"
            );
        }
    }
    // The services themselves do roll.
    assert_ne!(
        find(&old, ChildKind::Deployment, "shop-cart")["spec"]["template"],
        find(&new, ChildKind::Deployment, "shop-cart")["spec"]["template"]
    );
}

#[test]
fn cart_cache_keys_of_two_shops_never_meet() {
    let prefix = |ns: &str, name: &str| {
        let mut sf = external();
        sf.metadata.namespace = Some(ns.into());
        sf.metadata.name = Some(name.into());
        config_data(&sf)["CART_CACHE_PREFIX"].clone()
    };
    // The cart caches a user's cart under `<prefix><user id>`: no shop's
    // prefix may be the start of another's, whatever the user ids.
    let shops = [
        ("a", "b"),
        ("a", "bc"),
        ("a-b", "c"),
        ("a", "b-c"),
        ("ab", "c"),
    ];
    for (i, one) in shops.iter().enumerate() {
        for (j, other) in shops.iter().enumerate() {
            let (p, q) = (prefix(one.0, one.1), prefix(other.0, other.1));
            assert!(i == j || !q.starts_with(&p), "{p:?} is a prefix of {q:?}");
        }
    }
    assert!(prefix("team", "shop").ends_with(':'));
}

#[test]
fn pods_report_traces_as_storefront_service() {
    let children = desired(&external(), &inputs(), None);
    for service in SERVICES {
        assert_eq!(
            env_var(&children, service.name, "OTEL_SERVICE_NAME"),
            Some(json!(format!("storefront-{}", service.name)))
        );
    }
}

#[test]
fn a_slow_first_start_is_left_to_a_startup_probe_not_killed_by_liveness() {
    let children = desired(&external(), &inputs(), None);
    for service in SERVICES {
        let deployment = find(
            &children,
            ChildKind::Deployment,
            &format!("shop-{}", service.name),
        );
        let container = &deployment["spec"]["template"]["spec"]["containers"][0];
        let startup = &container["startupProbe"];
        // The same check as liveness, for up to five minutes.
        let liveness = &container["livenessProbe"];
        for key in ["grpc", "httpGet"] {
            assert_eq!(startup[key], liveness[key], "{}: {key}", service.name);
        }
        let budget = startup["periodSeconds"].as_i64().unwrap_or(10)
            * startup["failureThreshold"].as_i64().unwrap_or(3);
        assert!(budget >= 300, "{}: {budget} s", service.name);
    }
}

/// The services' own pool sizes when nothing sets them (their `--help`).
fn default_pool(service: &str) -> i64 {
    if service == "product" { 8 } else { 10 }
}

/// The connections a managed shop may open at most: every pod of every
/// database service (one more during a rolling update) times its pool,
/// against the managed PostgreSQL's `max_connections`.
fn connections(sf: &Storefront) -> (i64, i64) {
    let children = desired(sf, &inputs(), None);
    let mut wanted = 0;
    for service in SERVICES.iter().filter(|s| s.database) {
        let spec = service_spec(sf, *service);
        let pods = i64::from(
            spec.autoscaling
                .as_ref()
                .map_or(spec.replicas, |a| a.max_replicas),
        ) + 1;
        let key = format!("{}_DB_MAX_CONNECTIONS", service.env_prefix());
        let pool = env_var(&children, service.name, &key)
            .and_then(|v| v.as_str().and_then(|v| v.parse().ok()))
            .unwrap_or_else(|| default_pool(service.name));
        assert!(pool >= 2, "{}: a pool of {pool}", service.name);
        wanted += pods * pool;
    }
    let postgres = find(&children, ChildKind::StatefulSet, "shop-postgres");
    let args: Vec<String> = postgres["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|a| a.as_str().map(str::to_owned))
        .collect();
    let max = args
        .iter()
        .find_map(|a| a.strip_prefix("max_connections="))
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    (wanted, max)
}

#[test]
fn a_scaled_managed_shop_stays_within_its_postgres_connections() {
    // Room for superuser_reserved_connections (3), the operator and a
    // person with psql.
    let fits = |sf: &Storefront| {
        let (wanted, max) = connections(sf);
        assert!(
            wanted + 10 <= max,
            "{wanted} pooled connections, max_connections {max}"
        );
        max
    };
    assert_eq!(fits(&managed()), 100, "one replica each fits the default");
    let mut scaled = managed();
    scaled.spec.services.cart.replicas = 4;
    scaled.spec.services.checkout.autoscaling = Some(AutoscalingSpec {
        min_replicas: 2,
        max_replicas: 6,
        target_cpu_utilization_percentage: 80,
    });
    assert_eq!(fits(&scaled), 100, "a moderately scaled shop still fits");
    let mut large = managed();
    for spec in [
        &mut large.spec.services.product,
        &mut large.spec.services.cart,
        &mut large.spec.services.orders,
    ] {
        spec.replicas = 30;
    }
    assert!(
        fits(&large) > 100,
        "beyond what 100 can serve, the server grows"
    );
    let mut largest = managed();
    for service in SERVICES.iter().filter(|s| s.database) {
        let spec = match service.name {
            "product" => &mut largest.spec.services.product,
            "cart" => &mut largest.spec.services.cart,
            "inventory" => &mut largest.spec.services.inventory,
            "payment" => &mut largest.spec.services.payment,
            "orders" => &mut largest.spec.services.orders,
            _ => &mut largest.spec.services.checkout,
        };
        spec.autoscaling = Some(AutoscalingSpec {
            min_replicas: 1,
            max_replicas: 100,
            target_cpu_utilization_percentage: 80,
        });
    }
    fits(&largest);
}

/// A pod as a NetworkPolicy sees it: namespace, labels.
struct Pod<'a> {
    namespace: &'a str,
    labels: BTreeMap<String, String>,
}

impl Pod<'_> {
    fn of(namespace: &str, labels: &[(&str, &str)]) -> Pod<'static> {
        Pod {
            namespace: namespace.to_owned().leak(),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }
}

/// Whether a label selector (`matchLabels`, `matchExpressions`) selects `labels`.
fn selects(selector: &Value, labels: &BTreeMap<String, String>) -> bool {
    let by_labels = selector["matchLabels"]
        .as_object()
        .into_iter()
        .flatten()
        .all(|(k, v)| labels.get(k).map(String::as_str) == v.as_str());
    let by_expressions = selector["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
        .all(|e| {
            let value = labels.get(e["key"].as_str().unwrap_or_default());
            let listed = e["values"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|v| Some(v.as_str().unwrap_or_default()) == value.map(String::as_str));
            match e["operator"].as_str() {
                Some("In") => listed,
                Some("NotIn") => !listed,
                Some("Exists") => value.is_some(),
                Some("DoesNotExist") => value.is_none(),
                other => panic!("operator {other:?}"),
            }
        });
    by_labels && by_expressions
}

/// Whether the NetworkPolicies among `children` let `from` reach `to` on
/// `port` (Kubernetes' rules: a pod no policy selects takes everything; a
/// selected one takes what any selecting policy's rule admits).
fn admitted(children: &[Child], from: &Pod<'_>, to: &Pod<'_>, port: i32) -> bool {
    let policies: Vec<&Value> = children
        .iter()
        .filter(|c| c.kind == ChildKind::NetworkPolicy)
        .map(|c| &c.body)
        .filter(|p| {
            p["metadata"]["namespace"] == to.namespace
                && selects(&p["spec"]["podSelector"], &to.labels)
        })
        .collect();
    if policies.is_empty() {
        return true;
    }
    let namespace_labels =
        |ns: &str| BTreeMap::from([("kubernetes.io/metadata.name".to_owned(), ns.to_owned())]);
    policies.iter().any(|policy| {
        policy["spec"]["ingress"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|rule| {
                let port_ok = match rule["ports"].as_array() {
                    None => true,
                    Some(ports) => ports.iter().any(|p| p["port"] == port),
                };
                let peer_ok = match rule["from"].as_array() {
                    None => true,
                    Some(peers) => peers.iter().any(|peer| {
                        let ns_ok = match peer.get("namespaceSelector") {
                            None => from.namespace == to.namespace,
                            Some(s) => selects(s, &namespace_labels(from.namespace)),
                        };
                        let pod_ok = match peer.get("podSelector") {
                            None => true,
                            Some(s) => selects(s, &from.labels),
                        };
                        assert!(peer.get("ipBlock").is_none(), "no ipBlock expected");
                        ns_ok && pod_ok
                    }),
                };
                port_ok && peer_ok
            })
    })
}

#[test]
fn the_stores_take_the_shop_s_pods_and_the_operator_and_nobody_else() {
    let sf = managed();
    let operator_pods = OperatorPods {
        namespace: "storefront-system".into(),
        labels: BTreeMap::from([
            (
                "app.kubernetes.io/name".to_owned(),
                "storefront-operator".to_owned(),
            ),
            ("app.kubernetes.io/instance".to_owned(), "ops".to_owned()),
        ]),
    };
    let children = desired(&sf, &inputs(), Some(&operator_pods));
    let shop = |component: &str| {
        Pod::of(
            "team",
            &[
                ("app.kubernetes.io/name", "storefront"),
                ("app.kubernetes.io/instance", "shop"),
                ("app.kubernetes.io/component", component),
            ],
        )
    };
    let operator = Pod::of(
        "storefront-system",
        &[
            ("app.kubernetes.io/name", "storefront-operator"),
            ("app.kubernetes.io/instance", "ops"),
        ],
    );
    let stranger_here = Pod::of("team", &[("app", "debug")]);
    let stranger_there = Pod::of("storefront-system", &[("app", "debug")]);
    let other_shop = Pod::of(
        "team",
        &[
            ("app.kubernetes.io/name", "storefront"),
            ("app.kubernetes.io/instance", "other"),
            ("app.kubernetes.io/component", "cart"),
        ],
    );
    // The operator creates databases, roles and topics: it reaches
    // PostgreSQL and Kafka, and has no business with Redis.
    assert!(admitted(&children, &operator, &shop("postgres"), 5432));
    assert!(admitted(&children, &operator, &shop("kafka"), 9092));
    assert!(!admitted(&children, &operator, &shop("redis"), 6379));
    let other_release = Pod::of(
        "storefront-system",
        &[
            ("app.kubernetes.io/name", "storefront-operator"),
            ("app.kubernetes.io/instance", "other"),
        ],
    );
    assert!(!admitted(
        &children,
        &other_release,
        &shop("postgres"),
        5432
    ));
    // An operator that does not know where it runs (outside the cluster)
    // lets in nobody but the shop.
    let unknown = desired(&sf, &inputs(), None);
    assert!(!admitted(&unknown, &operator, &shop("postgres"), 5432));
    assert!(admitted(&unknown, &shop("cart"), &shop("postgres"), 5432));
    for (store, port) in [("postgres", 5432), ("redis", 6379), ("kafka", 9092)] {
        let target = shop(store);
        assert!(
            admitted(&children, &shop("cart"), &target, port),
            "cart → {store}"
        );
        for stranger in [&stranger_here, &stranger_there, &other_shop] {
            assert!(
                !admitted(&children, stranger, &target, port),
                "stranger → {store}"
            );
        }
        // Not even the metrics port, which the services open to scrapers.
        assert!(
            !admitted(&children, &stranger_here, &target, METRICS_PORT),
            "{store} metrics"
        );
    }
    // The services: the shop's pods, scrapers on /metrics; the gateway
    // from anywhere.
    assert!(admitted(&children, &shop("checkout"), &shop("cart"), 50052));
    assert!(!admitted(&children, &stranger_here, &shop("cart"), 50052));
    assert!(admitted(
        &children,
        &stranger_there,
        &shop("cart"),
        METRICS_PORT
    ));
    assert!(admitted(&children, &stranger_there, &shop("gateway"), 8080));
    // The web: browsers from anywhere; it calls the gateway.
    assert!(admitted(&children, &stranger_there, &shop("web"), 8081));
    assert!(admitted(&children, &shop("web"), &shop("gateway"), 8080));
    assert!(!admitted(&children, &stranger_here, &shop("web"), 50052));
}
