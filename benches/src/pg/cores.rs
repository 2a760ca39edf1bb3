//! `--split-cores`: PostgreSQL on one core, the harness and the `lianxi serve` it spawns on the
//! other, as when the database has a host of its own (the deployment `deploy/` describes).
//!
//! On two shared cores a command's cost to the database and its cost to lianxi come out of the
//! same CPU, and the baseline's loop costs next to nothing on the client side: what group
//! commit saves the database does not show. Split, each side has a core; the baseline and
//! lianxi meet the same database on the same core, and the tables compare what each costs it.

use std::process::{Command, Stdio};

use anyhow::{ensure, Context, Result};

use crate::procstat;

/// The core PostgreSQL is pinned to.
const DATABASE_CPU: &str = "1";
/// The core the harness (and every process it spawns from then on) is pinned to.
const HARNESS_CPU: &str = "0";

/// Pins the postmaster and the processes it has forked to [`DATABASE_CPU`] (its backends, forked
/// later, inherit it), and this process's threads to [`HARNESS_CPU`] (the servers it spawns
/// later inherit that). Returns a line for the machine table.
pub(crate) fn split(postmaster: u32) -> Result<String> {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    ensure!(
        cores >= 2,
        "--split-cores needs two cores; this process may use {cores}"
    );
    pin(postmaster, DATABASE_CPU)?;
    let forked = children(postmaster);
    for &child in &forked {
        pin(child, DATABASE_CPU)?;
    }
    pin(std::process::id(), HARNESS_CPU)?;
    Ok(format!(
        "split: PostgreSQL (postmaster and {} processes it had forked) on CPU {DATABASE_CPU}; \
         the harness and lianxi on CPU {HARNESS_CPU}",
        forked.len()
    ))
}

/// Sets the CPU affinity of every thread of `pid` with util-linux's `taskset`.
fn pin(pid: u32, cpus: &str) -> Result<()> {
    let status = Command::new("taskset")
        .args(["--all-tasks", "--cpu-list", "--pid", cpus, &pid.to_string()])
        .stdout(Stdio::null())
        .status()
        .context("running taskset (util-linux)")?;
    ensure!(status.success(), "taskset -a -c {cpus} -p {pid}: {status}");
    Ok(())
}

/// The processes whose parent is `parent`.
fn children(parent: u32) -> Vec<u32> {
    procstat::parents()
        .into_iter()
        .filter(|&(_, ppid)| ppid == parent)
        .map(|(pid, _)| pid)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pinned_process_may_run_only_on_the_core_it_was_given() {
        let mut child = Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("spawning sleep");
        let pinned = pin(child.id(), "0");
        let status = std::fs::read_to_string(format!("/proc/{}/status", child.id()));
        child.kill().expect("killing sleep");
        child.wait().expect("reaping sleep");
        pinned.expect("pinning sleep to CPU 0");
        let status = status.expect("reading its status");
        let allowed = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .map(str::trim);
        assert_eq!(allowed, Some("0"));
    }

    #[test]
    fn this_process_is_a_child_of_its_parent() {
        let parent = std::os::unix::process::parent_id();
        assert!(children(parent).contains(&std::process::id()));
    }
}
