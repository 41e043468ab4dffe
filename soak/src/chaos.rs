//! The chaos loop: every `every`, one target chosen at random — a service
//! process, PostgreSQL, Redis or Kafka — is SIGKILLed, left down for a few
//! seconds, and started again. Services are the soak's own children;
//! PostgreSQL, Redis and Kafka are killed and started through a control
//! script (hack/soak-infra.sh), which only ever touches the soak's own
//! instances. One fault at a time: the next waits until the last is undone.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::IndexedRandom as _;
use rand::{Rng as _, SeedableRng as _};

use crate::report::FaultRecord;
use crate::shop::{SERVICES, Shop};

/// The infrastructure the control script knows.
pub const INFRA: [&str; 3] = ["postgres", "redis", "kafka"];

#[derive(Debug, Clone)]
pub struct ChaosConfig {
    pub every: Duration,
    pub down_min: Duration,
    pub down_max: Duration,
    /// `<script> kill|start postgres|redis|kafka`; no infrastructure faults without it.
    pub infra_ctl: Option<PathBuf>,
    /// Whether service processes are killed (only when the soak started them).
    pub services: bool,
    pub seed: u64,
    /// Where the control script's output goes.
    pub log: PathBuf,
}

impl ChaosConfig {
    fn targets(&self) -> Vec<&'static str> {
        let mut targets = Vec::new();
        if self.services {
            targets.extend(SERVICES);
        }
        if self.infra_ctl.is_some() {
            targets.extend(INFRA);
        }
        targets
    }
}

/// Injects faults until `stop`; the fault under way when it comes is undone first.
pub async fn run(
    shop: Option<Arc<Shop>>,
    config: ChaosConfig,
    stop: Arc<AtomicBool>,
    started: Instant,
) -> Vec<FaultRecord> {
    let targets = config.targets();
    let mut rng = StdRng::seed_from_u64(config.seed);
    let mut faults = Vec::new();
    if targets.is_empty() {
        return faults;
    }
    let mut next = Instant::now() + config.every;
    loop {
        while Instant::now() < next {
            if stop.load(Ordering::Acquire) {
                return faults;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let Some(&target) = targets.choose(&mut rng) else {
            return faults;
        };
        let down = if config.down_max > config.down_min {
            rng.random_range(config.down_min..=config.down_max)
        } else {
            config.down_min
        };
        let at_s = started.elapsed().as_secs_f64();
        eprintln!("soak: chaos at {at_s:.0} s: SIGKILL {target}, down for {down:.1?}");
        if let Err(error) = kill(shop.as_deref(), &config, target).await {
            eprintln!("soak: chaos could not kill {target}: {error:#}");
        }
        tokio::time::sleep(down).await;
        let restarting = Instant::now();
        let restarted = match restart(shop.as_deref(), &config, target).await {
            Ok(up) => up,
            Err(error) => {
                eprintln!("soak: chaos could not restart {target}: {error:#}");
                false
            }
        };
        let restart_s = restarting.elapsed().as_secs_f64();
        if !restarted {
            eprintln!("soak: {target} did not come back within the restart's bound");
        }
        faults.push(FaultRecord {
            at_s: (at_s * 10.0).round() / 10.0,
            target: target.to_owned(),
            down_s: (down.as_secs_f64() * 10.0).round() / 10.0,
            restart_s: (restart_s * 10.0).round() / 10.0,
            restarted,
        });
        // The next fault a full period after this one, and never while the
        // last is still being undone.
        next = (next + config.every).max(Instant::now() + Duration::from_secs(1));
    }
}

async fn kill(
    shop: Option<&Shop>,
    config: &ChaosConfig,
    target: &'static str,
) -> anyhow::Result<()> {
    if INFRA.contains(&target) {
        return infra(config, "kill", target).await.map(|_| ());
    }
    let shop = shop.ok_or_else(|| anyhow::anyhow!("no service processes of ours"))?;
    shop.kill(target).await
}

async fn restart(
    shop: Option<&Shop>,
    config: &ChaosConfig,
    target: &'static str,
) -> anyhow::Result<bool> {
    if INFRA.contains(&target) {
        // A start that fails (e.g. a port not yet released) is tried again.
        for _ in 0..3 {
            if infra(config, "start", target).await? {
                return Ok(true);
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        return Ok(false);
    }
    let shop = shop.ok_or_else(|| anyhow::anyhow!("no service processes of ours"))?;
    shop.revive(target).await
}

/// Runs the control script; true when it succeeded within its bound.
async fn infra(config: &ChaosConfig, action: &str, target: &str) -> anyhow::Result<bool> {
    let script = config
        .infra_ctl
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("no infrastructure control script"))?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&config.log)?;
    let mut child = tokio::process::Command::new("bash")
        .arg(script)
        .args([action, target])
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()?;
    match tokio::time::timeout(Duration::from_secs(180), child.wait()).await {
        Ok(status) => Ok(status?.success()),
        Err(_) => {
            child.start_kill().ok();
            child.wait().await.ok();
            Ok(false)
        }
    }
}
