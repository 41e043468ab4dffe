//! How busy the machine is just before the load starts, from `/proc`: the
//! share of all CPUs in use over a short window and the processes using the
//! most. A control plane left running (`make cluster-up`, `make
//! cluster-demo`) takes a tenth of this two-core machine; the report says
//! so instead of leaving lower figures unexplained.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value, json};

/// Above this share (%) the report warns that the figures are not a quiet
/// machine's.
const QUIET_PCT: f64 = 10.0;

/// All CPUs' (total, idle) time in clock ticks, from /proc/stat's first line.
fn cpu_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    parse_cpu_line(stat.lines().next()?)
}

fn parse_cpu_line(line: &str) -> Option<(u64, u64)> {
    let mut fields = line.split_whitespace();
    if fields.next()? != "cpu" {
        return None;
    }
    // user nice system idle iowait irq softirq steal (guest time is
    // already inside user and nice).
    let ticks: Vec<u64> = fields.take(8).filter_map(|f| f.parse().ok()).collect();
    if ticks.len() < 5 {
        return None;
    }
    Some((ticks.iter().sum(), ticks[3] + ticks[4]))
}

/// A process's name and user + system time in clock ticks, from a
/// /proc/<pid>/stat line (the name is in parentheses and may hold spaces).
fn parse_proc_stat(stat: &str) -> Option<(String, u64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat.get(open + 1..close)?.to_owned();
    let rest: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    // After the name: state ppid pgrp session tty_nr tpgid flags minflt
    // cminflt majflt cmajflt utime stime.
    let utime: u64 = rest.get(11)?.parse().ok()?;
    let stime: u64 = rest.get(12)?.parse().ok()?;
    Some((name, utime + stime))
}

fn process_ticks() -> HashMap<u32, (String, u64)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return HashMap::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            Some((pid, parse_proc_stat(&stat)?))
        })
        .collect()
}

/// The machine's busy share over `window`, printed and as JSON: `busy_pct`
/// and the five processes that used the most (`pct` of all CPUs).
pub async fn busy_before_load(window: Duration) -> Value {
    let (Some(cpu0), procs0) = (cpu_ticks(), process_ticks()) else {
        return Value::Null;
    };
    tokio::time::sleep(window).await;
    let (Some(cpu1), procs1) = (cpu_ticks(), process_ticks()) else {
        return Value::Null;
    };
    let total = cpu1.0.saturating_sub(cpu0.0).max(1) as f64;
    let idle = cpu1.1.saturating_sub(cpu0.1) as f64;
    let busy_pct = (100.0 * (total - idle) / total).clamp(0.0, 100.0);
    let me = std::process::id();
    let mut top: Vec<(String, u32, f64)> = procs1
        .into_iter()
        .filter(|(pid, _)| *pid != me)
        .filter_map(|(pid, (name, ticks))| {
            let before = procs0.get(&pid).map_or(0, |(_, t)| *t);
            let used = ticks.saturating_sub(before);
            (used > 0).then(|| (name, pid, 100.0 * used as f64 / total))
        })
        .collect();
    top.sort_by(|a, b| b.2.total_cmp(&a.2));
    top.truncate(5);
    let named = top
        .iter()
        .map(|(name, _, pct)| format!("{name} {pct:.1}%"))
        .collect::<Vec<_>>()
        .join(", ");
    println!(
        "machine    {busy_pct:>8.1} % of its CPUs busy before the load ({})",
        if named.is_empty() { "nothing" } else { &named }
    );
    if busy_pct > QUIET_PCT {
        println!(
            "           not a quiet machine: the figures below are lower than on an idle one \
             (stop what uses it, e.g. `make cluster-down`, for comparable runs)"
        );
    }
    json!({
        "window_s": window.as_secs_f64(),
        "busy_pct": busy_pct,
        "quiet": busy_pct <= QUIET_PCT,
        "top": top
            .iter()
            .map(|(name, pid, pct)| json!({ "name": name, "pid": pid, "pct": pct }))
            .collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpu_line_gives_total_and_idle_with_iowait() {
        let line = "cpu  100 5 50 800 20 3 2 10 0 0";
        assert_eq!(parse_cpu_line(line), Some((990, 820)));
        assert_eq!(parse_cpu_line("cpu0 1 2 3 4 5 6 7 8"), None);
        assert_eq!(parse_cpu_line("cpu 1 2"), None);
    }

    #[test]
    fn a_process_name_with_spaces_and_parentheses_is_read_whole() {
        let stat = "4242 (kube (api) server) S 1 4242 4242 0 -1 4194560 100 0 0 0 \
                    37 5 0 0 20 0 12 0 500 0 0";
        assert_eq!(
            parse_proc_stat(stat),
            Some(("kube (api) server".to_owned(), 42))
        );
        assert_eq!(parse_proc_stat("4242 (short) S 1"), None);
    }
}
