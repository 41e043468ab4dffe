//! `storefront-operator-bench`: the operator under 100 Storefronts at once.
//!
//! Against the local control plane (`make cluster-up`, `$KUBECONFIG`): runs
//! the given `storefront-operator` binary watching a fresh namespace,
//! creates `--count` Storefronts in managed mode all at once, and measures
//! the time until every one reports `ServicesAvailable=True` for its
//! generation. In this control plane kwok's pods run nothing, so a managed
//! Storefront can never be `Ready` (its databases and broker are truthfully
//! unreachable, see DESIGN.md); `ServicesAvailable` is the end point, and
//! the time until each also has its `DatabasesReady`/`TopicsReady` verdict
//! is reported too. Then: reconciles per Storefront (from the operator's
//! `/metrics`) and the operator's peak RSS (VmHWM).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser;
use futures::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, CustomResourceExt};
use serde_json::json;
use storefront_operator::Storefront;

#[derive(Debug, Parser)]
#[command(name = "storefront-operator-bench")]
struct Args {
    /// The operator binary to run.
    #[arg(long)]
    operator: PathBuf,
    /// Storefronts created at once.
    #[arg(long, default_value_t = 100)]
    count: usize,
    /// Give up after this long.
    #[arg(long, default_value = "300s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Port of the operator's /metrics endpoint.
    #[arg(long, default_value_t = 18090)]
    metrics_port: u16,
    /// Instead of running the operator: write the same workloads the
    /// operator would (every child of `--count` managed shops, without
    /// owner references) straight to the API server, and time the control
    /// plane alone until every Deployment is available.
    #[arg(long)]
    baseline: bool,
    /// Leave the namespace and its Storefronts in place (to look at them).
    #[arg(long)]
    keep: bool,
    /// Where the JSON report goes.
    #[arg(long, default_value = "bench/results/operator.json")]
    out: PathBuf,
}

fn condition_true(sf: &Storefront, type_: &str) -> Option<bool> {
    let status = sf.status.as_ref()?;
    if status.observed_generation != sf.metadata.generation {
        return None;
    }
    status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status == "True")
}

fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

async fn reconciles(port: u16) -> anyhow::Result<f64> {
    let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await?
        .text()
        .await?;
    Ok(text
        .lines()
        .find(|l| l.starts_with("storefront_operator_reconciles_total"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0))
}

/// The control plane alone: the operator's children applied directly.
async fn baseline(client: Client, ns: &str, count: usize, timeout: Duration) -> anyhow::Result<()> {
    use k8s_openapi::api::apps::v1::Deployment;
    use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
    use storefront_operator::children::{self, SecretInputs};
    let started = Instant::now();
    let mut bodies = vec![];
    for i in 0..count {
        let mut sf: Storefront = serde_json::from_value(json!({
            "apiVersion": "shop.storefront.dev/v1alpha1",
            "kind": "Storefront",
            "metadata": { "name": format!("shop-{i:03}"), "namespace": ns },
            "spec": { "postgres": { "managed": {} }, "redis": { "managed": {} }, "kafka": { "managed": {} } },
        }))?;
        sf.metadata.uid = None;
        let inputs = SecretInputs {
            jwt: (format!("shop-{i:03}-jwt"), "secret".into()),
            ..SecretInputs::default()
        };
        for mut child in children::desired(&sf, &inputs, None) {
            if let Some(meta) = child.body["metadata"].as_object_mut() {
                meta.remove("ownerReferences");
            }
            bodies.push(child);
        }
    }
    let writes = bodies.len();
    futures::stream::iter(bodies)
        .map(|child| {
            let client = client.clone();
            async move {
                let (group, version, kind, plural) = child.kind.gvk();
                let resource = ApiResource::from_gvk_with_plural(
                    &GroupVersionKind::gvk(group, version, kind),
                    plural,
                );
                let api: Api<DynamicObject> = Api::namespaced_with(client, ns, &resource);
                api.patch(
                    &child.name,
                    &PatchParams::apply("storefront-operator-bench").force(),
                    &Patch::Apply(&child.body),
                )
                .await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<()>>()
        .await?;
    let written = started.elapsed();
    let deployments: Api<Deployment> = Api::namespaced(client, ns);
    loop {
        let available = deployments
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .filter(|d| d.status.as_ref().and_then(|s| s.available_replicas) == Some(1))
            .count();
        if available == count * 7 {
            break;
        }
        if started.elapsed() > timeout {
            bail!(
                "baseline: {available} of {} Deployments available",
                count * 7
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!(
        "baseline  {writes} objects of {count} shops written in {:.1} s, every Deployment available in {:.1} s (no operator)",
        written.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let client = Client::try_default()
        .await
        .context("no cluster: run `make cluster-up` and set KUBECONFIG")?;

    // The CRD and a namespace of our own.
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.patch(
        "storefronts.shop.storefront.dev",
        &PatchParams::apply("storefront-operator-bench").force(),
        &Patch::Apply(Storefront::crd()),
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    // A clean start: the shops of an earlier run (1,000 pods) are garbage
    // collected first, else that work competes with this run.
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let wait_until = Instant::now() + Duration::from_secs(300);
    loop {
        let leftovers = namespaces
            .list_metadata(&ListParams::default())
            .await?
            .items
            .iter()
            .filter(|n| {
                n.metadata
                    .name
                    .as_deref()
                    .is_some_and(|n| n.starts_with("bench-operator-"))
            })
            .count();
        if leftovers == 0 {
            break;
        }
        if Instant::now() > wait_until {
            bail!("{leftovers} namespaces of earlier runs are still being deleted");
        }
        eprintln!("waiting for {leftovers} namespace(s) of an earlier run to go");
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    let ns_name = format!("bench-operator-{}", std::process::id());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({ "metadata": { "name": ns_name } }))?,
        )
        .await?;

    if args.baseline {
        let result = baseline(client.clone(), &ns_name, args.count, args.timeout).await;
        namespaces
            .delete(&ns_name, &DeleteParams::background())
            .await?;
        return result;
    }
    let mut operator = Command::new(&args.operator)
        .args(["--log-format", "json", "--log-level", "warn", "run"])
        .args(["--listen", &format!("127.0.0.1:{}", args.metrics_port)])
        .args(["--watch-namespace", &ns_name])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("start the operator")?;
    let pid = operator.id();
    let ready_url = format!("http://127.0.0.1:{}/readyz", args.metrics_port);
    let start_deadline = Instant::now() + Duration::from_secs(30);
    while !reqwest::get(&ready_url)
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        if Instant::now() > start_deadline {
            let _ = operator.kill();
            bail!("the operator did not become ready");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let rss_idle = peak_rss_mib(pid).unwrap_or(0.0);

    let api: Api<Storefront> = Api::namespaced(client.clone(), &ns_name);
    let started = Instant::now();
    futures::stream::iter(0..args.count)
        .map(|i| {
            let api = api.clone();
            async move {
                let sf: Storefront = serde_json::from_value(json!({
                    "apiVersion": "shop.storefront.dev/v1alpha1",
                    "kind": "Storefront",
                    "metadata": { "name": format!("shop-{i:03}") },
                    "spec": {
                        "postgres": { "managed": {} },
                        "redis": { "managed": {} },
                        "kafka": { "managed": {} },
                    },
                }))?;
                api.create(&PostParams::default(), &sf).await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<()>>()
        .await?;
    let created = started.elapsed();
    println!(
        "created {} Storefronts in {:.1} s",
        args.count,
        created.as_secs_f64()
    );

    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(client.clone(), &ns_name);
    let statefulsets: Api<k8s_openapi::api::apps::v1::StatefulSet> =
        Api::namespaced(client.clone(), &ns_name);
    let mut applied_at = None;
    let mut polls = 0u64;
    let mut available_at = None;
    let mut verdicts_at = None;
    let mut peak_rss = rss_idle;
    loop {
        let list = api.list(&ListParams::default()).await?.items;
        let available = list
            .iter()
            .filter(|sf| condition_true(sf, "ServicesAvailable") == Some(true))
            .count();
        let verdicts = list
            .iter()
            .filter(|sf| {
                condition_true(sf, "DatabasesReady").is_some()
                    && condition_true(sf, "TopicsReady").is_some()
            })
            .count();
        peak_rss = peak_rss.max(peak_rss_mib(pid).unwrap_or(0.0));
        // Every fourth poll: have all the shops' workloads been written?
        polls += 1;
        if applied_at.is_none() && (polls.is_multiple_of(4) || available == args.count) {
            let d = deployments
                .list_metadata(&ListParams::default())
                .await?
                .items
                .len();
            let s = statefulsets
                .list_metadata(&ListParams::default())
                .await?
                .items
                .len();
            if d == args.count * 7 && s == args.count * 3 {
                applied_at = Some(started.elapsed());
            }
        }
        if available == args.count && available_at.is_none() {
            available_at = Some(started.elapsed());
        }
        if verdicts == args.count && verdicts_at.is_none() {
            verdicts_at = Some(started.elapsed());
        }
        if available_at.is_some() && verdicts_at.is_some() {
            break;
        }
        if started.elapsed() > args.timeout {
            eprintln!(
                "timed out: {available} of {} ServicesAvailable, {verdicts} with verdicts",
                args.count
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Let the status settle a few seconds, then count reconciles.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let total_reconciles = reconciles(args.metrics_port).await.unwrap_or(0.0);
    peak_rss = peak_rss.max(peak_rss_mib(pid).unwrap_or(0.0));

    let per_storefront = total_reconciles / args.count as f64;
    let report = json!({
        "storefronts": args.count,
        "mode": "managed (kwok pods: end point ServicesAvailable=True; Ready is impossible here)",
        "create_seconds": created.as_secs_f64(),
        "all_workloads_applied_seconds": applied_at.map(|d| d.as_secs_f64()),
        "all_services_available_seconds": available_at.map(|d| d.as_secs_f64()),
        "all_conditions_reported_seconds": verdicts_at.map(|d| d.as_secs_f64()),
        "target_seconds": 60,
        "reconciles_total": total_reconciles,
        "reconciles_per_storefront": per_storefront,
        "operator_peak_rss_mib": peak_rss,
        "operator_idle_rss_mib": rss_idle,
        "target_rss_mib": 100,
    });
    match available_at {
        Some(t) => println!(
            "operator  {} Storefronts ServicesAvailable in {:.1} s (target <= 60 s)",
            args.count,
            t.as_secs_f64()
        ),
        None => println!(
            "operator  not all ServicesAvailable within {:?}",
            args.timeout
        ),
    }
    if let Some(t) = applied_at {
        println!(
            "operator  all {} Deployments and {} StatefulSets written by {:.1} s (polled every second)",
            args.count * 7,
            args.count * 3,
            t.as_secs_f64()
        );
    }
    if let Some(t) = verdicts_at {
        println!(
            "operator  every DatabasesReady/TopicsReady verdict in {:.1} s",
            t.as_secs_f64()
        );
    }
    println!(
        "operator  {per_storefront:.1} reconciles per Storefront, peak RSS {peak_rss:.1} MiB (target <= 100 MiB)"
    );
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.out, serde_json::to_string_pretty(&report)?)?;
    println!("report: {}", args.out.display());

    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let _ = operator.wait();
    // The namespace goes with its 100 shops (no finalizers under Retain).
    if args.keep {
        println!("kept namespace {ns_name}");
    } else {
        namespaces
            .delete(&ns_name, &DeleteParams::background())
            .await?;
    }
    if available_at.is_none() {
        bail!("not all Storefronts became available");
    }
    Ok(())
}
