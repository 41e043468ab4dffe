#![allow(clippy::expect_used, clippy::unwrap_used)]
//! The charts installed on the local control plane (`make cluster-up`),
//! with the operator binary running here as the operator chart's
//! ServiceAccount (see charts/README.md, "The proof"):
//!
//! - with its default ClusterRole, and with `watchNamespace` (a Role), that
//!   ServiceAccount is all the operator needs to bring a Storefront of the
//!   storefront chart (external mode, on the local PostgreSQL, Redis and
//!   Kafka) to `Ready=True`, while requests outside its rules are refused
//!   with 403; `helm upgrade` reaches the Deployments and prunes what is no
//!   longer wanted; `helm uninstall` leaves nothing labelled with the
//!   instance behind (topics deleted, namespaced objects garbage-collected,
//!   no ClusterRole left);
//! - with the charts' defaults (everything managed), uninstalling both
//!   leaves no object, volume claim or Secret, and installing them again
//!   into the same namespace works.
//!
//! Pods are simulated by kwok, so the shop itself never answers: `Ready`
//! here means databases and topics provisioned for real and every
//! Deployment available as kwok reports it.

mod helm;

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Secret};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use kube::api::ListParams;
use kube::{Api, Client};
use storefront_kube_testing::{TestNamespace, conditions, kubectl_path, wait_for};
use storefront_operator::Storefront;

use helm::*;

/// What both install tests share: the operator chart installed with
/// `operator_values`, the shop chart (external mode), the operator running
/// with the chart's ServiceAccount, the shop Ready. Returns the pieces the
/// test goes on with.
struct Installed {
    // Dropped in this order on a failure: the operator stops (so it cannot
    // put its finalizer back), the leftovers go, then the namespace.
    operator: OperatorProcess,
    leftovers: LeftoverGuard,
    ns: TestNamespace,
    operator_release: String,
    sa_client: Client,
    identity: String,
}

async fn install(
    prefix: &str,
    operator_values: &[&str],
    operator_args: &[&str],
    shop_values: &[&str],
) -> Installed {
    let ns = TestNamespace::new(prefix).await.unwrap();
    let name = ns.name().to_owned();
    ensure_crd().await;

    // Release names are unique per test: the ClusterRole and its binding
    // are named after the release and are cluster-wide.
    let operator_release = format!("op-{}", &name[name.len() - 10..]);
    let leftovers = LeftoverGuard {
        namespace: name.clone(),
        operator_release: operator_release.clone(),
        armed: true,
    };
    let mut args = strings(&[
        "install",
        &operator_release,
        &chart("storefront-operator"),
        "-n",
        &name,
        "--wait",
        "--timeout",
        "60s",
    ]);
    for value in operator_values {
        args.extend(strings(&["--set", &value.replace("{ns}", &name)]));
    }
    helm(args).await;
    let service_account = format!("{operator_release}-storefront-operator");
    let manifest = helm(strings(&[
        "get",
        "manifest",
        &operator_release,
        "-n",
        &name,
    ]))
    .await;
    assert!(manifest.contains("kind: ServiceAccount"), "{manifest}");

    let mut args = strings(&["install", "shop", &chart("storefront"), "-n", &name]);
    args.extend(external_shop_values());
    for value in shop_values {
        args.extend(strings(&["--set", value]));
    }
    helm(args).await;

    let kubeconfig = service_account_kubeconfig(&name, &service_account);
    let sa_client = client_from(&kubeconfig).await;
    let identity = format!("charts-test-{}", uuid::Uuid::new_v4().simple());
    let args: Vec<String> = operator_args
        .iter()
        .map(|a| a.replace("{ns}", &name))
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let env = chart_env(&ns, &operator_release).await;
    let operator = OperatorProcess::start(&kubeconfig, &name, &identity, &args, &env);
    operator.wait_ready().await;

    let storefronts: Api<Storefront> = ns.api();
    let sf = wait_storefront_ready(&storefronts, "shop", &operator).await;
    let status = sf.status.unwrap();
    assert_eq!(
        status.gateway_address.as_deref(),
        Some(format!("shop-gateway.{name}.svc:8080").as_str())
    );
    assert_eq!(status.services.len(), 8, "{:?}", status.services);

    // It was this operator, with these credentials, that did the work: its
    // Events carry its identity, and it never hit a refusal.
    let events: Api<Event> = ns.api();
    let ours: Vec<String> = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.reporting_instance.as_deref() == Some(identity.as_str()))
        .map(|e| e.reason.unwrap_or_default())
        .collect();
    assert!(
        ours.iter().any(|r| r == "Applied"),
        "events of {identity}: {ours:?}"
    );
    let log = operator.log();
    // kube reports a refusal as `reason: "Forbidden", code: 403`; a bare
    // "403" would also match a log line's timestamp (…19.140318Z).
    assert!(
        !log.contains("code: 403") && !log.to_ascii_lowercase().contains("forbidden"),
        "the operator was refused something:\n{log}"
    );
    Installed {
        operator,
        leftovers,
        ns,
        operator_release,
        sa_client,
        identity,
    }
}

/// `helm uninstall` of the shop: the operator's finalizer deletes the
/// topics, then garbage collection leaves nothing labelled with the
/// instance; then the operator chart goes, cluster-scoped objects included.
async fn uninstall_and_check(mut installed: Installed) {
    let name = installed.ns.name().to_owned();
    helm(strings(&[
        "uninstall",
        "shop",
        "-n",
        &name,
        "--wait",
        "--timeout",
        "60s",
    ]))
    .await;
    let storefronts: Api<Storefront> = installed.ns.api();
    if let Err(error) =
        storefront_kube_testing::wait_for_deletion(&storefronts, "shop", Duration::from_secs(60))
            .await
    {
        panic!(
            "{error:#}\noperator log:\n{}",
            installed.operator.log_tail()
        );
    }
    wait_nothing_labelled(&name, "shop").await;
    let events: Api<Event> = installed.ns.api();
    let reasons: Vec<String> = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|e| e.reason)
        .collect();
    assert!(reasons.iter().any(|r| r == "TopicsDeleted"), "{reasons:?}");

    installed.operator.stop();
    helm(strings(&[
        "uninstall",
        &installed.operator_release,
        "-n",
        &name,
        "--wait",
        "--timeout",
        "60s",
    ]))
    .await;
    let (_, out) = try_run(
        &kubectl_path(),
        &[
            "get",
            "clusterrole,clusterrolebinding",
            "-o",
            "name",
            "-l",
            &format!("app.kubernetes.io/instance={}", installed.operator_release),
        ],
    );
    assert!(
        out.trim().is_empty() || out.contains("No resources found"),
        "{out}"
    );
    wait_nothing_labelled(&name, &installed.operator_release).await;
    drop_databases(&name, "shop").await;
    installed.leftovers.armed = false;
    installed.ns.cleanup().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_wide_chart_rbac_runs_the_operator_and_helm_upgrade_and_uninstall_reconcile() {
    // Leader election on, so the Lease rules are exercised too. The process
    // watches only the test's namespace, so that it leaves other tests'
    // Storefronts alone; the ClusterRole's cluster-wide reach is asked of
    // the API server instead. The shop starts with an Ingress and an HPA,
    // which the upgrade removes: pruning (list, delete) is exercised too.
    let installed = install(
        "charts-cluster",
        &["leaderElection.enabled=true"],
        &["--leader-elect", "--watch-namespace={ns}"],
        &[
            "gateway.ingress.enabled=true",
            "services.cart.autoscaling.minReplicas=1",
            "services.cart.autoscaling.maxReplicas=3",
            "web.signIn.dev=true",
        ],
    )
    .await;
    let name = installed.ns.name().to_owned();
    let sa = &installed.sa_client;

    let leases: Api<Lease> = installed.ns.api();
    let lease = leases.get("storefront-operator").await.unwrap();
    assert_eq!(
        lease.spec.and_then(|s| s.holder_identity).as_deref(),
        Some(installed.identity.as_str())
    );
    for (verb, group, resource) in [
        ("list", "shop.storefront.dev", "storefronts"),
        ("watch", "shop.storefront.dev", "storefronts"),
        ("watch", "apps", "deployments"),
        ("patch", "apps", "deployments"),
    ] {
        assert!(
            may_cluster_wide(sa, verb, group, resource).await,
            "{verb} {resource} cluster-wide"
        );
    }
    // Least privilege: what the operator never does is refused.
    assert!(!may_cluster_wide(sa, "watch", "", "secrets").await);
    assert!(!may_cluster_wide(sa, "delete", "", "secrets").await);
    assert!(!may_cluster_wide(sa, "update", "shop.storefront.dev", "storefronts").await);
    assert!(!may_cluster_wide(sa, "create", "", "pods").await);
    assert!(!may_cluster_wide(sa, "get", "", "configmaps").await);
    assert!(is_forbidden(
        Api::<Pod>::namespaced(sa.clone(), &name)
            .list(&ListParams::default())
            .await
    ));
    assert!(is_forbidden(
        Api::<Secret>::namespaced(sa.clone(), &name)
            .delete("shop-jwt", &Default::default())
            .await
    ));

    // helm upgrade: a service's replicas reach its Deployment; the Ingress
    // and the HPA no longer wanted are pruned.
    let events: Api<Event> = installed.ns.api();
    let ingresses: Api<Ingress> = installed.ns.api();
    let ingress = ingresses.get("shop-gateway").await.unwrap();
    let backends: Vec<(String, String)> = ingress.spec.unwrap().rules.unwrap()[0]
        .http
        .as_ref()
        .unwrap()
        .paths
        .iter()
        .map(|p| {
            let service = p.backend.service.as_ref().unwrap().name.clone();
            (p.path.clone().unwrap_or_default(), service)
        })
        .collect();
    assert_eq!(
        backends,
        [
            ("/api".to_owned(), "shop-gateway".to_owned()),
            ("/".to_owned(), "shop-web".to_owned())
        ]
    );
    let deployments: Api<Deployment> = installed.ns.api();
    // The chart's web.signIn.dev reaches the shop's configuration.
    let config: Api<ConfigMap> = installed.ns.api();
    let data = config.get("shop-config").await.unwrap().data.unwrap();
    assert_eq!(data["WEB_DEV_SIGN_IN"], "true");
    assert_eq!(data["WEB_PUBLIC_URL"], "http://shop.example.com");
    let before = deployments.get("shop-checkout").await.unwrap();
    assert_eq!(before.spec.unwrap().replicas, Some(1));
    // All values given again (not --reuse-values, whose merging cannot
    // drop the autoscaling map): without the Ingress and the HPA.
    let mut args = strings(&["upgrade", "shop", &chart("storefront"), "-n", &name]);
    args.extend(external_shop_values());
    args.extend(strings(&["--set", "services.checkout.replicas=3"]));
    helm(args).await;
    if let Err(error) = wait_for(
        &deployments,
        "shop-checkout",
        Duration::from_secs(60),
        |d| {
            d.spec.as_ref().and_then(|s| s.replicas) == Some(3)
                && conditions::deployment_available(d)
        },
    )
    .await
    {
        panic!(
            "{error:#}\noperator log:\n{}",
            installed.operator.log_tail()
        );
    }
    let storefronts: Api<Storefront> = installed.ns.api();
    let sf = wait_storefront_ready(&storefronts, "shop", &installed.operator).await;
    assert_eq!(sf.status.unwrap().services["checkout"].replicas, 3);
    let ingresses: Api<Ingress> = installed.ns.api();
    let autoscalers: Api<HorizontalPodAutoscaler> = installed.ns.api();
    assert!(ingresses.get_opt("shop-gateway").await.unwrap().is_none());
    assert!(autoscalers.get_opt("shop-cart").await.unwrap().is_none());
    let pruned = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .any(|e| {
            e.reason.as_deref() == Some("Pruned")
                && e.reporting_instance.as_deref() == Some(installed.identity.as_str())
        });
    assert!(pruned, "no Pruned event from {}", installed.identity);

    uninstall_and_check(installed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaced_chart_rbac_runs_the_operator_in_its_namespace_only() {
    let installed = install(
        "charts-namespaced",
        &["watchNamespace={ns}"],
        &["--watch-namespace={ns}"],
        &[],
    )
    .await;
    let name = installed.ns.name().to_owned();
    let sa = &installed.sa_client;

    let manifest = helm(strings(&[
        "get",
        "manifest",
        &installed.operator_release,
        "-n",
        &name,
    ]))
    .await;
    assert!(
        manifest.contains("kind: Role\n") && !manifest.contains("ClusterRole"),
        "{manifest}"
    );
    assert!(
        manifest.contains(&format!("--watch-namespace={name}")),
        "{manifest}"
    );
    // Nothing outside its namespace: another namespace's Secret, any
    // Storefront cluster-wide.
    assert!(is_forbidden(
        Api::<Secret>::namespaced(sa.clone(), "kube-system")
            .get("anything")
            .await
    ));
    assert!(is_forbidden(
        Api::<Secret>::namespaced(sa.clone(), "default")
            .get("shop-jwt")
            .await
    ));
    assert!(is_forbidden(
        Api::<Storefront>::all(sa.clone())
            .list(&ListParams::default())
            .await
    ));
    assert!(!may_cluster_wide(sa, "list", "shop.storefront.dev", "storefronts").await);
    // ... and inside it, only what it uses.
    assert!(is_forbidden(
        Api::<Secret>::namespaced(sa.clone(), &name)
            .delete("shop-jwt", &Default::default())
            .await
    ));
    assert!(is_forbidden(
        Api::<Pod>::namespaced(sa.clone(), &name)
            .list(&ListParams::default())
            .await
    ));
    assert!(
        Api::<Secret>::namespaced(sa.clone(), &name)
            .get("shop-jwt")
            .await
            .is_ok()
    );

    uninstall_and_check(installed).await;
}

/// The claims the managed stores' StatefulSets make (`data-<set>-0`).
const STORE_CLAIMS: [&str; 3] = [
    "data-shop-postgres-0",
    "data-shop-redis-0",
    "data-shop-kafka-0",
];

/// What one install of a managed shop made: the uids of its volumes' claims
/// and of its PostgreSQL admin Secret.
async fn managed_shop_objects(ns: &TestNamespace, operator: &OperatorProcess) -> Vec<String> {
    let claims: Api<PersistentVolumeClaim> = ns.api();
    let mut uids = vec![];
    for claim in STORE_CLAIMS {
        match wait_for(&claims, claim, Duration::from_secs(90), |_| true).await {
            Ok(claim) => uids.push(claim.metadata.uid.unwrap_or_default()),
            Err(error) => panic!("{error:#}\noperator log:\n{}", operator.log_tail()),
        }
    }
    let secrets: Api<Secret> = ns.api();
    let admin = wait_for(
        &secrets,
        "shop-postgres-admin",
        Duration::from_secs(30),
        |_| true,
    )
    .await
    .unwrap();
    uids.push(admin.metadata.uid.unwrap_or_default());
    uids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uninstalling_both_charts_of_a_managed_shop_leaves_nothing_and_installing_again_works() {
    // The charts' defaults: PostgreSQL, Redis and Kafka managed by the
    // operator. kwok runs nothing, so the shop is never Ready here, but the
    // StatefulSets make their volume claims, and the operator its Secrets.
    let ns = TestNamespace::new("charts-managed").await.unwrap();
    let name = ns.name().to_owned();
    ensure_crd().await;
    let operator_release = format!("op-{}", &name[name.len() - 10..]);
    let mut leftovers = LeftoverGuard {
        namespace: name.clone(),
        operator_release: operator_release.clone(),
        armed: true,
    };
    let service_account = format!("{operator_release}-storefront-operator");
    let mut before: Option<Vec<String>> = None;
    for round in ["first", "second"] {
        helm(strings(&[
            "install",
            &operator_release,
            &chart("storefront-operator"),
            "-n",
            &name,
            "--wait",
            "--timeout",
            "60s",
        ]))
        .await;
        helm(strings(&[
            "install",
            "shop",
            &chart("storefront"),
            "-n",
            &name,
        ]))
        .await;
        let kubeconfig = service_account_kubeconfig(&name, &service_account);
        let identity = format!("charts-managed-{round}");
        let env = chart_env(&ns, &operator_release).await;
        let watch = format!("--watch-namespace={name}");
        let operator = OperatorProcess::start(&kubeconfig, &name, &identity, &[&watch], &env);
        operator.wait_ready().await;

        let made = managed_shop_objects(&ns, &operator).await;
        if let Some(before) = &before {
            for (old, new) in before.iter().zip(&made) {
                assert_ne!(old, new, "the {round} install found an object of the first");
            }
        }
        // The stores let in the operator's pods, as the chart describes them.
        let policies: Api<NetworkPolicy> = ns.api();
        let policy = policies.get("shop-stores").await.unwrap();
        let rules = policy.spec.unwrap().ingress.unwrap();
        let peer = rules[1].from.as_ref().unwrap()[0].clone();
        assert_eq!(
            peer.namespace_selector.unwrap().match_labels.unwrap()["kubernetes.io/metadata.name"],
            name
        );
        assert_eq!(
            peer.pod_selector.unwrap().match_labels.unwrap()["app.kubernetes.io/instance"],
            operator_release
        );

        // Uninstall both: the Storefront goes at once (no finalizer waits
        // for a broker that never ran), the volumes and Secrets with it.
        helm(strings(&[
            "uninstall",
            "shop",
            "-n",
            &name,
            "--wait",
            "--timeout",
            "60s",
        ]))
        .await;
        let storefronts: Api<Storefront> = ns.api();
        if let Err(error) = storefront_kube_testing::wait_for_deletion(
            &storefronts,
            "shop",
            Duration::from_secs(30),
        )
        .await
        {
            panic!("{error:#}\noperator log:\n{}", operator.log_tail());
        }
        wait_nothing_labelled(&name, "shop").await;
        let claims: Api<PersistentVolumeClaim> = ns.api();
        storefront_kube_testing::wait_for_list(
            &claims,
            &ListParams::default(),
            Duration::from_secs(60),
            |items| items.is_empty(),
        )
        .await
        .unwrap();
        let secrets: Api<Secret> = ns.api();
        let left: Vec<String> = secrets
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter_map(|s| s.metadata.name)
            .filter(|n| n.starts_with("shop-"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
        operator.stop();
        helm(strings(&[
            "uninstall",
            &operator_release,
            "-n",
            &name,
            "--wait",
            "--timeout",
            "60s",
        ]))
        .await;
        wait_nothing_labelled(&name, &operator_release).await;
        before = Some(made);
    }
    leftovers.armed = false;
    ns.cleanup().await.unwrap();
}
