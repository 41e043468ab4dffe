#![allow(clippy::expect_used, clippy::unwrap_used)]
//! The Helm charts (`charts/`) and the packaging around them, against the
//! local control plane (`make cluster-up`) and the local PostgreSQL, Redis
//! and Kafka (`make infra-up`).
//!
//! - both charts pass `helm lint --strict`, render, and the rendering is
//!   accepted by the API server (`kubectl apply --dry-run=server`); a value
//!   the schema forbids is refused;
//! - the chart's CRD is `crds/storefront.yaml`, byte for byte;
//! - installed with its default ClusterRole, and with `watchNamespace` (a
//!   Role), the operator chart's ServiceAccount is all the operator needs:
//!   the operator binary runs here as a local process with that
//!   ServiceAccount's token (not the admin's) and brings a Storefront
//!   installed by the storefront chart (external mode, on the local
//!   PostgreSQL, Redis and Kafka) to `Ready=True`, while requests outside
//!   its rules are refused with 403; `helm upgrade` of a service's replicas
//!   reaches the Deployment, and children no longer wanted (Ingress, HPA)
//!   are pruned; `helm uninstall` leaves nothing labelled with the
//!   instance behind (topics deleted, namespaced objects garbage-collected,
//!   no ClusterRole left);
//! - the Dockerfiles, the Compose file, the kind config and the GitHub
//!   workflow pass their linters (installed by hack/charts/install-tools.sh).
//!
//! Pods are simulated by kwok, so the shop itself never answers: `Ready`
//! here means databases and topics provisioned for real and every
//! Deployment available as kwok reports it.

mod helm;

use std::path::{Path, PathBuf};

use storefront_kube_testing::TestNamespace;

use helm::*;

#[test]
fn the_charts_crd_is_the_generated_crd() {
    let generated = std::fs::read_to_string(repo().join("crds/storefront.yaml")).unwrap();
    let copy =
        std::fs::read_to_string(repo().join("charts/storefront-operator/crds/storefront.yaml"))
            .unwrap();
    assert!(
        generated == copy,
        "charts/storefront-operator/crds/storefront.yaml differs from crds/storefront.yaml: \
         cp crds/storefront.yaml charts/storefront-operator/crds/storefront.yaml"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_charts_lint_strict_render_and_pass_server_side_dry_run() {
    let ns = TestNamespace::new("charts-render").await.unwrap();
    let name = ns.name().to_owned();
    ensure_crd().await;

    let operator = chart("storefront-operator");
    let shop = chart("storefront");
    let mut external = strings(&["lint", "--strict", &shop]);
    external.extend(external_shop_values());
    for args in [
        strings(&["lint", "--strict", &operator]),
        strings(&[
            "lint",
            "--strict",
            &operator,
            "--set",
            &format!("watchNamespace={name}"),
            "--set",
            "replicas=2",
            "--set",
            "serviceMonitor.enabled=true",
        ]),
        strings(&["lint", "--strict", &shop]),
        external,
    ] {
        helm(args).await;
    }

    // Every rendering the tests and the docs use, applied as a dry run: the
    // API server checks each object against its schema (the Storefront
    // against the CRD's, CEL rules included).
    let mut renders = vec![
        strings(&["template", "op", &operator, "-n", &name]),
        strings(&[
            "template",
            "op",
            &operator,
            "-n",
            &name,
            "--set",
            &format!("watchNamespace={name}"),
            "--set",
            "replicas=2",
        ]),
        strings(&["template", "shop", &shop, "-n", &name]),
        strings(&[
            "template",
            "shop",
            &shop,
            "-n",
            &name,
            "--set",
            "postgres.managed.deletionPolicy=Retain",
        ]),
    ];
    let mut external = strings(&["template", "shop", &shop, "-n", &name]);
    external.extend(external_shop_values());
    external.extend(strings(&[
        "--set",
        "gateway.ingress.enabled=true",
        "--set",
        "services.cart.autoscaling.minReplicas=1",
        "--set",
        "services.cart.autoscaling.maxReplicas=4",
        "--set",
        "gateway.rateLimits.perUser=20",
        "--set",
        "tracing.enabled=true",
        "--set",
        "tracing.samplingRatio=0.25",
        "--set",
        "services.web.replicas=2",
        "--set",
        "web.signIn.dev=true",
        "--set",
        "web.publicUrl=https://shop.example.com",
        "--set",
        "web.signIn.oidc.enabled=true",
        "--set",
        "web.signIn.oidc.issuer=https://id.example.com",
        "--set",
        "web.signIn.oidc.clientId=storefront",
        "--set",
        "web.signIn.oidc.clientSecretRef.name=oidc-client",
        "--set",
        "web.signIn.oidc.scopes={openid,email}",
    ]));
    renders.push(external);
    for args in renders {
        let manifest = helm(args).await;
        let file = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-render.yaml"));
        std::fs::write(&file, &manifest).unwrap();
        let applied = kubectl(strings(&[
            "apply",
            "--dry-run=server",
            "-n",
            &name,
            "-f",
            &file.display().to_string(),
        ]))
        .await;
        assert!(applied.contains("(server dry run)"), "{applied}");
    }
    let manifest = helm(strings(&["template", "op", &operator, "-n", &name])).await;
    assert!(
        manifest.contains("kind: ClusterRole\n") && !manifest.contains("kind: Role\n"),
        "{manifest}"
    );
    let manifest = helm(strings(&[
        "template",
        "op",
        &operator,
        "-n",
        &name,
        "--set",
        "watchNamespace=shops",
    ]))
    .await;
    assert!(
        !manifest.contains("kind: ClusterRole") && manifest.contains("--watch-namespace=shops"),
        "{manifest}"
    );
    assert!(
        !manifest.contains("--leader-elect"),
        "one replica needs no election: {manifest}"
    );
    let manifest = helm(strings(&[
        "template",
        "op",
        &operator,
        "-n",
        &name,
        "--set",
        "replicas=2",
    ]))
    .await;
    assert!(
        manifest.contains("--leader-elect") && manifest.contains("leader-election"),
        "{manifest}"
    );

    // values.schema.json refuses what the templates cannot render.
    for bad in [
        "replicas=many",
        "unknownKey=1",
        "watchNamespace=Not_A_Namespace",
        "cleanupTimeout=soon",
    ] {
        let (ok, out) = try_run(&helm_path(), &["template", "op", &operator, "--set", bad]);
        assert!(!ok, "{bad} was accepted:\n{out}");
    }
    for bad in [
        "postgres.mode=external",
        "postgres.mode=elsewhere",
        "kafka.topics.deletionPolicy=Sometimes",
        "postgres.managed.deletionPolicy=Sometimes",
        "gateway.serviceType=LoadBalancer,gateway.ingress.enabled=true",
        "web.signIn.oidc.enabled=true,web.signIn.oidc.issuer=https://id.example.com,web.signIn.oidc.clientId=shop",
        "web.publicUrl=https://shop.example.com,web.signIn.oidc.enabled=true,web.signIn.oidc.clientId=shop",
        "web.publicUrl=shop.example.com",
        "web.signIn.oidc.scopes={email}",
    ] {
        let (ok, out) = try_run(&helm_path(), &["template", "shop", &shop, "--set", bad]);
        assert!(!ok, "{bad} was accepted:\n{out}");
    }
    ns.cleanup().await.unwrap();
}

/// hack/charts/install-tools.sh (idempotent; quick when its tools are
/// cached) and where it put them.
fn packaging_tools() -> PathBuf {
    let script = repo().join("hack/charts/install-tools.sh");
    let out = run(Path::new("bash"), &[&script.display().to_string()]);
    PathBuf::from(out.lines().last().unwrap().trim())
}

#[test]
fn dockerfiles_compose_kind_config_and_the_workflow_pass_their_linters() {
    let bin = packaging_tools();
    let repo = repo();
    let path = |p: &str| repo.join(p).display().to_string();
    for (tool, args) in [
        (
            "dockerfile-check",
            vec![
                path("docker/storefront.Dockerfile"),
                path("docker/operator.Dockerfile"),
            ],
        ),
        ("compose-check", vec![path("deploy/compose.yaml")]),
        ("kind-config-check", vec![path("deploy/kind.yaml")]),
        (
            "actionlint",
            vec![
                "-color=false".to_owned(),
                path(".github/workflows/kind.yaml"),
                path(".github/workflows/release.yaml"),
            ],
        ),
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (ok, out) = try_run(&bin.join(tool), &args);
        assert!(ok, "{tool} {}:\n{out}", args.join(" "));
    }
    // The linters do catch things: a broken file of each kind is refused.
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let broken = [
        (
            "dockerfile-check",
            "broken.Dockerfile",
            "from debian:13 as build\nRUN true\nCOPY --frm=build / /\n",
        ),
        (
            "compose-check",
            "broken-compose.yaml",
            "services:\n  a:\n    image: x\n    depends_on:\n      b:\n        condition: service_healthy\n",
        ),
        (
            "kind-config-check",
            "broken-kind.yaml",
            "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnodes:\n  - role: master\n    extraPortMapings: []\n",
        ),
        (
            "actionlint",
            "broken-workflow.yaml",
            "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ${{ matrix.nothing }}\n",
        ),
    ];
    for (tool, file, text) in broken {
        let file = tmp.join(file);
        std::fs::write(&file, text).unwrap();
        let (ok, out) = try_run(&bin.join(tool), &[&file.display().to_string()]);
        assert!(!ok, "{tool} accepted a broken file:\n{text}\n{out}");
    }
}
