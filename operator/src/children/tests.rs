//! The builders' unit tests: fixtures in, objects out.

use super::*;
use crate::crd::{
    AutoscalingSpec, ExternalKafka, ExternalPostgres, ExternalRedis, KafkaSpec, ManagedStore,
    PostgresSpec, RedisSpec, StorefrontSpec,
};
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
    let children = desired(&external(), &inputs());
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
        if service.is_gateway() {
            assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
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
    let children = desired(&external(), &inputs());
    for service in SERVICES {
        let deployment = find(
            &children,
            ChildKind::Deployment,
            &format!("shop-{}", service.name),
        );
        let env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let secrets: Vec<&str> = env
            .iter()
            .filter_map(|e| e["valueFrom"]["secretKeyRef"]["name"].as_str())
            .collect();
        if service.is_gateway() {
            assert_eq!(secrets, ["shop-jwt"]);
        } else {
            assert_eq!(secrets, [format!("shop-{}-db", service.name)]);
        }
    }
}

#[test]
fn a_secret_change_changes_only_the_hash_of_the_pods_that_read_it() {
    let sf = external();
    let before = desired(&sf, &inputs());
    let mut changed = inputs();
    changed
        .fingerprints
        .insert("shop-jwt".into(), "rotated".into());
    let after = desired(&sf, &changed);
    let hash = |children: &[Child], service: &str| {
        find(children, ChildKind::Deployment, &format!("shop-{service}"))["spec"]["template"]
            ["metadata"]["annotations"][CONFIG_HASH_ANNOTATION]
            .clone()
    };
    assert_ne!(hash(&before, "gateway"), hash(&after, "gateway"));
    assert_eq!(hash(&before, "cart"), hash(&after, "cart"));
    // A configuration change rolls every service.
    let mut traced = sf.clone();
    traced.spec.tracing = Some(crate::crd::TracingSpec {
        otlp_endpoint: "http://collector:4317".into(),
        protocol: None,
        sampling_ratio: 0.5,
    });
    let traced = desired(&traced, &inputs());
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
    let children = desired(&sf, &inputs());
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
    let children = desired(&sf, &inputs());
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
fn only_the_gateway_takes_outside_traffic() {
    let children = desired(&external(), &inputs());
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
    sf.spec.kafka.external = None;
    sf.spec.kafka.managed = Some(ManagedStore::default());
    for child in desired(&sf, &inputs()) {
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
