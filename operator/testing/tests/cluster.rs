//! The local control plane (hack/cluster) does what operator tests rely on:
//! controllers, scheduling, kwok's fake pods, garbage collection, CRD
//! validation and kubectl. Needs `make cluster-up` first.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, PostParams,
};
use kube::{Api, ResourceExt};
use serde_json::json;
use storefront_kube_testing::{
    NODE_NAME, TestNamespace, client, conditions, kubeconfig_path, kubectl_path, wait_for,
    wait_for_deletion, wait_for_list,
};

const TIMEOUT: Duration = Duration::from_secs(60);

fn labels(app: &str) -> BTreeMap<String, String> {
    [("app".to_owned(), app.to_owned())].into()
}

fn deployment(name: &str, replicas: i32) -> Deployment {
    serde_json::from_value(json!({
        "metadata": { "name": name, "labels": labels(name) },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": labels(name) },
            "template": {
                "metadata": { "labels": labels(name) },
                "spec": { "containers": [{ "name": "app", "image": "registry.invalid/storefront:test" }] }
            }
        }
    }))
    .unwrap()
}

fn statefulset(name: &str, replicas: i32) -> StatefulSet {
    serde_json::from_value(json!({
        "metadata": { "name": name, "labels": labels(name) },
        "spec": {
            "replicas": replicas,
            "serviceName": name,
            "selector": { "matchLabels": labels(name) },
            "template": {
                "metadata": { "labels": labels(name) },
                "spec": { "containers": [{ "name": "db", "image": "registry.invalid/postgres:test" }] }
            }
        }
    }))
    .unwrap()
}

fn selector(app: &str) -> ListParams {
    ListParams::default().labels(&format!("app={app}"))
}

#[tokio::test]
async fn deployment_and_statefulset_become_available_on_the_kwok_node() {
    let ns = TestNamespace::new("avail").await.unwrap();
    let deployments = ns.api::<Deployment>();
    let statefulsets = ns.api::<StatefulSet>();
    let pods = ns.api::<Pod>();

    deployments
        .create(&PostParams::default(), &deployment("web", 3))
        .await
        .unwrap();
    statefulsets
        .create(&PostParams::default(), &statefulset("db", 1))
        .await
        .unwrap();

    let web = wait_for(
        &deployments,
        "web",
        TIMEOUT,
        conditions::deployment_available,
    )
    .await
    .unwrap();
    assert_eq!(web.status.unwrap().available_replicas, Some(3));
    let db = wait_for(&statefulsets, "db", TIMEOUT, conditions::statefulset_ready)
        .await
        .unwrap();
    assert_eq!(db.status.unwrap().ready_replicas, Some(1));

    // The pods behind them are scheduled on the fake node, Running and Ready.
    for (app, count) in [("web", 3), ("db", 1)] {
        let items = pods.list(&selector(app)).await.unwrap().items;
        assert_eq!(items.len(), count, "pods of {app}");
        for pod in &items {
            assert!(
                conditions::pod_ready(pod),
                "pod {} not ready: {:?}",
                pod.name_any(),
                pod.status
            );
            assert_eq!(
                pod.spec.as_ref().and_then(|spec| spec.node_name.as_deref()),
                Some(NODE_NAME),
                "pod {} is not on the kwok node",
                pod.name_any()
            );
        }
    }
    let db_0 = pods.get("db-0").await.unwrap();
    assert!(conditions::pod_ready(&db_0));

    ns.cleanup().await.unwrap();
}

#[tokio::test]
async fn deleting_a_deployment_garbage_collects_its_replicasets_and_pods() {
    let ns = TestNamespace::new("gc").await.unwrap();
    let deployments = ns.api::<Deployment>();
    let replicasets = ns.api::<ReplicaSet>();
    let pods = ns.api::<Pod>();

    deployments
        .create(&PostParams::default(), &deployment("shop", 2))
        .await
        .unwrap();
    wait_for(
        &deployments,
        "shop",
        TIMEOUT,
        conditions::deployment_available,
    )
    .await
    .unwrap();
    let owned = replicasets.list(&selector("shop")).await.unwrap().items;
    assert_eq!(owned.len(), 1, "one ReplicaSet");
    assert_eq!(
        owned[0].owner_references()[0].name,
        "shop",
        "the ReplicaSet is owned by the Deployment"
    );
    assert_eq!(pods.list(&selector("shop")).await.unwrap().items.len(), 2);

    // The API's default for a Deployment is background propagation: the
    // garbage collector deletes the ReplicaSet, then the pods (which kwok
    // lets go of at once).
    deployments
        .delete("shop", &DeleteParams::default())
        .await
        .unwrap();
    wait_for_deletion(&deployments, "shop", TIMEOUT)
        .await
        .unwrap();
    wait_for_list(&replicasets, &selector("shop"), TIMEOUT, <[_]>::is_empty)
        .await
        .unwrap();
    wait_for_list(&pods, &selector("shop"), TIMEOUT, <[_]>::is_empty)
        .await
        .unwrap();

    ns.cleanup().await.unwrap();
}

#[tokio::test]
async fn a_crd_with_a_structural_schema_is_served_and_enforced() {
    let client = client().await;
    let ns = TestNamespace::with_client(client.clone(), "crd")
        .await
        .unwrap();
    // CRDs are cluster-wide: a group of its own per run.
    let group = format!("{}.test.storefront.dev", ns.name());
    let crd_name = format!("widgets.{group}");
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "metadata": { "name": crd_name },
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": { "plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList" },
            "versions": [{
                "name": "v1",
                "served": true,
                "storage": true,
                "subresources": { "status": {} },
                "schema": { "openAPIV3Schema": {
                    "type": "object",
                    "properties": {
                        "spec": {
                            "type": "object",
                            "required": ["size", "color"],
                            "properties": {
                                "size": { "type": "integer", "minimum": 1 },
                                "color": { "type": "string", "enum": ["red", "green", "blue"] }
                            },
                            "x-kubernetes-validations": [{
                                "rule": "self.size <= 10",
                                "message": "size must be at most 10"
                            }]
                        },
                        "status": { "type": "object", "x-kubernetes-preserve-unknown-fields": true }
                    }
                }}
            }]
        }
    }))
    .unwrap();
    let crds = Api::<CustomResourceDefinition>::all(client.clone());
    crds.create(&PostParams::default(), &crd).await.unwrap();
    wait_for(&crds, &crd_name, TIMEOUT, conditions::crd_established)
        .await
        .unwrap();

    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(&group, "v1", "Widget"),
        "widgets",
    );
    let widgets = Api::<DynamicObject>::namespaced_with(client.clone(), ns.name(), &resource);
    let widget = |name: &str, spec: serde_json::Value| {
        DynamicObject::new(name, &resource).data(json!({ "spec": spec }))
    };

    // A valid object is stored (retried briefly: a just-established API may
    // still be missing from the discovery of an apiserver under load).
    let mut attempts = 0;
    loop {
        match widgets
            .create(
                &PostParams::default(),
                &widget("good", json!({ "size": 3, "color": "red" })),
            )
            .await
        {
            Ok(_) => break,
            Err(kube::Error::Api(status)) if status.is_not_found() && attempts < 20 => {
                attempts += 1;
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(error) => panic!("creating a valid Widget failed: {error}"),
        }
    }
    assert_eq!(widgets.get("good").await.unwrap().data["spec"]["size"], 3);

    // Invalid ones are refused with 422 and the schema's message.
    for (name, spec, expected) in [
        (
            "wrong-type",
            json!({ "size": "big", "color": "red" }),
            "spec.size: Invalid value: \"string\": spec.size in body must be of type integer",
        ),
        (
            "missing",
            json!({ "size": 1 }),
            "spec.color: Required value",
        ),
        (
            "bad-enum",
            json!({ "size": 1, "color": "pink" }),
            "spec.color: Unsupported value: \"pink\"",
        ),
        (
            "cel",
            json!({ "size": 11, "color": "red" }),
            "size must be at most 10",
        ),
    ] {
        match widgets
            .create(&PostParams::default(), &widget(name, spec))
            .await
        {
            Ok(_) => panic!("the invalid Widget {name} was accepted"),
            Err(kube::Error::Api(status)) => {
                assert_eq!(status.code, 422, "{name}: {status:?}");
                assert!(status.is_invalid(), "{name}: {status:?}");
                assert!(
                    status.message.contains(expected),
                    "{name}: message {:?} lacks {expected:?}",
                    status.message
                );
            }
            Err(error) => panic!("{name}: unexpected error {error}"),
        }
    }

    crds.delete(&crd_name, &DeleteParams::default())
        .await
        .unwrap();
    ns.cleanup().await.unwrap();
}

#[tokio::test]
async fn kubectl_sees_the_kwok_node_ready() {
    let nodes = Api::<Node>::all(client().await);
    wait_for(&nodes, NODE_NAME, TIMEOUT, conditions::node_ready)
        .await
        .unwrap();

    let kubeconfig = kubeconfig_path();
    let kubectl = kubectl_path();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(&kubectl)
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["get", "nodes", "--no-headers"])
            .output()
            .unwrap_or_else(|error| panic!("cannot run {}: {error}", kubectl.display()))
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "kubectl get nodes failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let line = stdout
        .lines()
        .find(|line| line.split_whitespace().next() == Some(NODE_NAME))
        .unwrap_or_else(|| panic!("{NODE_NAME} missing from kubectl get nodes:\n{stdout}"));
    assert_eq!(
        line.split_whitespace().nth(1),
        Some("Ready"),
        "kubectl get nodes: {line}"
    );
}

#[tokio::test]
async fn a_dropped_test_namespace_is_deleted() {
    let client = client().await;
    let ns = TestNamespace::with_client(client.clone(), "dropped")
        .await
        .unwrap();
    let name = ns.name().to_owned();
    drop(ns);
    let namespaces = Api::<k8s_openapi::api::core::v1::Namespace>::all(client);
    // Deleted, or being deleted (the namespace controller empties it first).
    let gone = namespaces.get_opt(&name).await.unwrap();
    assert!(
        gone.as_ref()
            .is_none_or(|ns| ns.metadata.deletion_timestamp.is_some()),
        "namespace {name} still there: {gone:?}"
    );
    wait_for_deletion(&namespaces, &name, TIMEOUT)
        .await
        .unwrap();
}
