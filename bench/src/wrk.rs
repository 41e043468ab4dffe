//! The HTTP GET phases, driven by `wrk` (Debian's, one thread) rather than by
//! this program: a lean C load generator, so that what is measured is the
//! server and not the client. On a machine with two or more CPUs the load
//! generator runs on the last CPU and the servers under test are moved to the
//! others for the phase (`taskset`), then given every CPU back.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

/// Which CPUs the servers and the load generator get during a GET phase.
#[derive(Debug, Clone)]
pub struct Pinning {
    /// The servers' CPUs and the load generator's, as taskset lists; `None`
    /// when the machine has one CPU and nothing is pinned.
    cpus: Option<(String, String)>,
    all: String,
    pids: Vec<u32>,
}

impl Pinning {
    /// Plans the pinning of `pids` (the servers) on a machine with `cpus` CPUs.
    pub fn new(cpus: usize, pids: Vec<u32>) -> Self {
        let all = format!("0-{}", cpus.saturating_sub(1));
        let cpus = (cpus >= 2).then(|| {
            let servers = if cpus == 2 {
                "0".to_owned()
            } else {
                format!("0-{}", cpus - 2)
            };
            (servers, (cpus - 1).to_string())
        });
        Pinning { cpus, all, pids }
    }

    /// What the report says about the pinning.
    pub fn describe(&self) -> Value {
        match &self.cpus {
            Some((servers, generator)) => json!({
                "servers_cpus": servers,
                "load_generator_cpus": generator,
                "server_pids": self.pids,
            }),
            None => json!("nothing pinned: one CPU"),
        }
    }

    /// Gives every thread of the servers the CPUs `list`; a thread that ends
    /// meanwhile is skipped (the runtimes' blocking threads come and go, and
    /// new ones inherit the mask of the thread that starts them).
    fn set(&self, list: &str) -> anyhow::Result<()> {
        for pid in &self.pids {
            let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
                .with_context(|| format!("listing the threads of process {pid}"))?;
            for task in tasks.flatten() {
                let tid = task.file_name().to_string_lossy().into_owned();
                let out = Command::new("taskset")
                    .args(["-p", "-c", list, &tid])
                    .output()
                    .context("running taskset")?;
                if !out.status.success() && task.path().exists() {
                    bail!(
                        "taskset -p -c {list} {tid}: {}",
                        String::from_utf8_lossy(&out.stderr).trim()
                    );
                }
            }
        }
        Ok(())
    }

    /// Runs `wrk` with `connections` connections against `url` for `duration`
    /// with the servers pinned, and reports the phase as `name`.
    pub fn run(
        &self,
        name: &str,
        url: &str,
        connections: usize,
        duration: Duration,
    ) -> anyhow::Result<Value> {
        let mut wrk = match &self.cpus {
            Some((servers, generator)) => {
                self.set(servers)?;
                let mut c = Command::new("taskset");
                c.args(["-c", generator, "wrk"]);
                c
            }
            None => Command::new("wrk"),
        };
        wrk.args([
            "-t1",
            &format!("-c{connections}"),
            &format!("-d{}s", duration.as_secs().max(1)),
            "--latency",
            url,
        ]);
        let out = wrk.output().context("running wrk (apt-get install wrk)");
        if self.cpus.is_some() {
            self.set(&self.all)?;
        }
        let out = out?;
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            bail!(
                "wrk failed: {}{}",
                text,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let mut report = parse(name, &text)?;
        report["load_generator"] = json!(format!("wrk -t1 -c{connections}"));
        report["pinning"] = self.describe();
        crate::print_phase(&report, "  (wrk)");
        Ok(report)
    }
}

/// A wrk duration ("812.00us", "1.23ms", "2.01s", "1.50m") in milliseconds.
fn millis(text: &str) -> Option<f64> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let n: f64 = number.parse().ok()?;
    Some(match unit {
        "us" => n / 1000.0,
        "ms" => n,
        "s" => n * 1000.0,
        "m" => n * 60_000.0,
        "h" => n * 3_600_000.0,
        _ => return None,
    })
}

/// The phase report (the shape of the other phases') from wrk's `--latency`
/// output: requests, seconds, the latency distribution's percentiles, and as
/// errors the non-2xx/3xx answers plus every socket error.
fn parse(name: &str, text: &str) -> anyhow::Result<Value> {
    let mut percentiles = std::collections::BTreeMap::new();
    let mut requests = None;
    let mut seconds = None;
    let mut errors = 0u64;
    let mut max = None;
    for line in text.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            [p @ ("50%" | "75%" | "90%" | "99%"), value] => {
                percentiles.insert(*p, millis(value).context("bad wrk percentile")?);
            }
            ["Latency", _avg, _stdev, m, ..] => max = millis(m),
            [n, "requests", "in", s, ..] => {
                requests = n.parse::<u64>().ok();
                seconds = millis(s.trim_end_matches(',')).map(|ms| ms / 1000.0);
            }
            ["Non-2xx", "or", "3xx", "responses:", n] => errors += n.parse::<u64>().unwrap_or(0),
            ["Socket", "errors:", rest @ ..] => {
                errors += rest
                    .iter()
                    .filter_map(|w| w.trim_end_matches(',').parse::<u64>().ok())
                    .sum::<u64>();
            }
            _ => {}
        }
    }
    let (Some(requests), Some(seconds)) = (requests, seconds) else {
        bail!("wrk printed no request count:\n{text}");
    };
    anyhow::ensure!(seconds > 0.0, "wrk ran for no time:\n{text}");
    let at = |p: &str| percentiles.get(p).copied().unwrap_or(f64::NAN);
    Ok(json!({
        "phase": name,
        "operations": requests,
        "errors": errors,
        "seconds": seconds,
        "throughput_per_s": requests as f64 / seconds,
        "latency_ms": { "p50": at("50%"), "p90": at("90%"), "p99": at("99%"), "max": max.unwrap_or(f64::NAN) },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUTPUT: &str = "Running 10s test @ http://127.0.0.1:18080/api/v1/products
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.23ms  402.11us   2.05s    91.02%
    Req/Sec    52.35k     1.20k   55.10k    70.00%
  Latency Distribution
     50%  812.00us
     75%    1.02ms
     90%    1.33ms
     99%    3.45ms
  523456 requests in 10.00s, 300.00MB read
  Non-2xx or 3xx responses: 12
  Socket errors: connect 0, read 3, write 0, timeout 1
Requests/sec:  52345.60
Transfer/sec:     30.00MB
";

    #[test]
    fn wrk_output_becomes_a_phase_report() {
        let r = parse("products", OUTPUT).unwrap();
        assert_eq!(r["operations"], 523_456);
        assert_eq!(r["errors"], 16);
        assert!((r["throughput_per_s"].as_f64().unwrap() - 52_345.6).abs() < 0.01);
        assert!((r["latency_ms"]["p50"].as_f64().unwrap() - 0.812).abs() < 1e-9);
        assert!((r["latency_ms"]["p99"].as_f64().unwrap() - 3.45).abs() < 1e-9);
        assert!((r["latency_ms"]["max"].as_f64().unwrap() - 2050.0).abs() < 1e-9);
    }

    #[test]
    fn output_without_a_count_is_an_error() {
        assert!(parse("products", "unable to connect to 127.0.0.1:1").is_err());
    }

    #[test]
    fn two_cpus_put_servers_on_the_first_and_wrk_on_the_second() {
        let p = Pinning::new(2, vec![7]);
        assert_eq!(p.cpus, Some(("0".to_owned(), "1".to_owned())));
        assert_eq!(
            Pinning::new(4, vec![]).cpus,
            Some(("0-2".to_owned(), "3".to_owned()))
        );
        assert_eq!(Pinning::new(1, vec![]).cpus, None);
    }
}
