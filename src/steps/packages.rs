//! What the installing steps (runner-install, docker-install) want from the
//! package manager, in one shape: packages, some pinned to a version, from
//! some sources; what has to change for that (install, upgrade, downgrade,
//! hold); and doing it, alone or in one transaction with another step's.
//!
//! Only the package-manager seam (`host.packages()`) is used here: no
//! command, no file.

use std::cmp::Ordering;

use anyhow::{Context, Result};

use super::{Change, StepId};
use crate::edit::deb_version;
use crate::host::Host;
use crate::host::packages::{Package, Source};

/// One package to install or move to its pinned version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Action {
    pub package: Package,
    /// The version installed now; None when the package is missing.
    pub from: Option<String>,
}

impl Action {
    /// "upgrade X A → B", "downgrade X B → A" (`past`: "upgraded" …);
    /// None for a fresh install (see [`installs`]).
    fn describe_move(&self, past: bool) -> Option<String> {
        let (Some(from), Some(to)) = (&self.from, &self.package.version) else {
            return None;
        };
        let verb = match (deb_version::compare(to, from), past) {
            (Ordering::Less, false) => "downgrade",
            (Ordering::Less, true) => "downgraded",
            (_, false) => "upgrade",
            (_, true) => "upgraded",
        };
        Some(format!("{verb} {} {from} → {to}", self.package.name))
    }
}

/// "install package X" / "install packages X Y" for the fresh installs
/// among `actions` (`past`: "installed …"), then each upgrade or downgrade.
fn describe(actions: &[Action], past: bool) -> Vec<String> {
    let fresh: Vec<&Package> = actions
        .iter()
        .filter(|a| a.from.is_none())
        .map(|a| &a.package)
        .collect();
    let mut lines = Vec::new();
    if !fresh.is_empty() {
        let verb = if past { "installed" } else { "install" };
        let noun = if fresh.len() == 1 {
            "package"
        } else {
            "packages"
        };
        let pinned = fresh.iter().any(|p| p.version.is_some());
        let names: Vec<String> = fresh.iter().map(|p| p.to_string()).collect();
        lines.push(format!(
            "{verb} {noun} {}",
            names.join(if pinned { ", " } else { " " })
        ));
    }
    lines.extend(actions.iter().filter_map(|a| a.describe_move(past)));
    lines
}

/// What a step's packages need now.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    /// Where the packages come from (none: the distribution).
    pub sources: Vec<Source>,
    pub actions: Vec<Action>,
    /// Pinned packages to hold (`apt-mark hold`) once installed: those not
    /// held yet, and those the install moves (apt releases the hold of a
    /// held package it is told to change).
    pub hold: Vec<String>,
    /// Of those, the ones not held now (what `plan` shows as a new hold).
    pub newly_held: Vec<String>,
    /// Held packages the pin no longer covers whose hold the tool made
    /// (the receipt says so): released (`apt-mark unhold`).
    pub release: Vec<String>,
    /// The profile key that pins them, for messages ("runner.version").
    pub pin_key: &'static str,
    /// Before the transaction, stop gitlab-runner gracefully, waiting up to
    /// this long for its running jobs: set when the transaction changes
    /// the installed runner's version, whose package scripts stop the
    /// service with SIGTERM (which aborts jobs) and start the new one.
    pub graceful_stop: Option<std::time::Duration>,
}

impl Plan {
    /// What `plan` shows: the sources' changes (when something is to be
    /// installed), each install, upgrade or downgrade, and the holds.
    pub fn changes(&self, host: &Host) -> Result<Vec<Change>> {
        let mut changes = Vec::new();
        if !self.actions.is_empty() {
            let packages = host.packages()?;
            for source in &self.sources {
                changes.extend(packages.repository_changes(host, source)?);
            }
        }
        if self.graceful_stop.is_some() && host.live && !host.runner_main_pids()?.is_empty() {
            changes.push(Change::new(
                "stop gitlab-runner gracefully first (SIGQUIT: running jobs finish; the package's own scripts stop it with SIGTERM, which aborts them), then its package starts the new version",
            ));
        }
        let pinned = self.actions.iter().any(|a| a.package.version.is_some());
        for line in describe(&self.actions, false) {
            if pinned {
                changes.push(Change::new(format!("{line} ({})", self.pin_key)));
            } else {
                changes.push(Change::new(line));
            }
        }
        if !self.newly_held.is_empty() {
            let them = if self.newly_held.len() == 1 {
                "it"
            } else {
                "them"
            };
            changes.push(Change::new(format!(
                "hold {} (apt-mark hold: upgrades, unattended-upgrades too, leave {them} where {} pins {them})",
                self.newly_held.join(" "),
                self.pin_key,
            )));
        }
        if !self.release.is_empty() {
            changes.push(Change::new(format!(
                "release the hold on {} (apt-mark unhold: {} pins no version now, and the hold was runner-provision's; upgrades move {} again)",
                self.release.join(" "),
                self.pin_key,
                if self.release.len() == 1 { "it" } else { "them" },
            )));
        }
        Ok(changes)
    }

    /// Anything to install or change (the part that one apt transaction can share).
    pub fn installs(&self) -> bool {
        !self.actions.is_empty()
    }
}

/// What `wanted` needs on this host: missing packages, pinned ones at
/// another version, pinned ones not held.
pub fn plan(
    host: &Host,
    wanted: &[Package],
    sources: Vec<Source>,
    pin_key: &'static str,
) -> Result<Plan> {
    let packages = host.packages()?;
    let mut plan = Plan {
        sources,
        pin_key,
        ..Plan::default()
    };
    for package in wanted {
        let from = packages.version(host, &package.name)?;
        let moves = match (&from, &package.version) {
            (None, _) => true,
            (Some(from), Some(to)) => from != to,
            (Some(_), None) => false,
        };
        if moves {
            plan.actions.push(Action {
                package: package.clone(),
                from,
            });
        }
        if package.version.is_some() {
            let held = packages.held(host, &package.name)?;
            if !held {
                plan.newly_held.push(package.name.clone());
            }
            if !held || moves {
                plan.hold.push(package.name.clone());
            }
        }
    }
    Ok(plan)
}

/// Installs what `plans` need in one transaction: one index update for
/// every source, one install of every package, one hold of every pinned
/// one. Returns what was done for each plan, in the operator's words,
/// with `together` appended to the install lines when several steps shared
/// the transaction.
pub fn apply_all(
    host: &Host,
    step: &str,
    plans: &[&Plan],
    together: &str,
) -> Result<Vec<Vec<String>>> {
    let packages = host.packages()?;
    let mut done: Vec<Vec<String>> = vec![Vec::new(); plans.len()];
    let installing: Vec<usize> = (0..plans.len()).filter(|&i| plans[i].installs()).collect();
    if !installing.is_empty() {
        let mut sources = Vec::new();
        let mut owner = Vec::new();
        for &i in &installing {
            for source in &plans[i].sources {
                sources.push(source.clone());
                owner.push(i);
            }
        }
        let prepared = packages.prepare(host, step, &sources)?;
        for (i, did) in owner.into_iter().zip(prepared) {
            done[i].extend(did);
        }
        for &i in &installing {
            if let Some(timeout) = plans[i].graceful_stop {
                let why = "lets its package stop and replace it";
                if let Some((jobs, waited)) = host.stop_runner_gracefully(step, timeout, why)? {
                    done[i].push(format!(
                        "stopped gitlab-runner gracefully before changing its version ({} finished, {waited} s)",
                        match jobs {
                            0 => "no counted job".to_string(),
                            1 => "its 1 running job".to_string(),
                            n => format!("its {n} running jobs"),
                        }
                    ));
                }
            }
        }
        let all: Vec<Package> = installing
            .iter()
            .flat_map(|&i| plans[i].actions.iter().map(|a| a.package.clone()))
            .collect();
        packages.install(host, step, &all).map_err(|e| {
            let pinned: Vec<String> = all
                .iter()
                .filter(|p| p.version.is_some())
                .map(|p| p.to_string())
                .collect();
            if pinned.is_empty() {
                e
            } else {
                e.context(format!(
                    "installing the pinned {} failed: check that the repository has that version (`apt-cache madison {}` lists what it has)",
                    pinned.join(", "),
                    all.iter().find(|p| p.version.is_some()).map_or("", |p| p.name.as_str())
                ))
            }
        })?;
        for &i in &installing {
            for action in &plans[i].actions {
                if action.from.is_none() {
                    let name = action.package.name.clone();
                    host.note(|r| {
                        r.packages.insert(name);
                    });
                }
            }
            for line in describe(&plans[i].actions, true) {
                done[i].push(format!("{line}{together}"));
            }
        }
    }
    let holds: Vec<&str> = plans
        .iter()
        .flat_map(|p| p.hold.iter().map(String::as_str))
        .collect();
    if !holds.is_empty() {
        packages
            .hold(host, step, &holds)
            .context("holding the pinned packages")?;
        for (i, plan) in plans.iter().enumerate() {
            if !plan.newly_held.is_empty() {
                done[i].push(format!(
                    "held {} (apt-mark hold)",
                    plan.newly_held.join(" ")
                ));
                // Not held before: the hold is the tool's, to release when
                // the pin goes away.
                host.note(|r| r.holds.extend(plan.newly_held.iter().cloned()));
            }
        }
    }
    let release: Vec<&str> = plans
        .iter()
        .flat_map(|p| p.release.iter().map(String::as_str))
        .collect();
    if !release.is_empty() {
        packages
            .unhold(host, step, &release)
            .context("releasing the holds no pin asks for")?;
        for (i, plan) in plans.iter().enumerate() {
            if !plan.release.is_empty() {
                done[i].push(format!(
                    "released the hold on {} (apt-mark unhold; {} pins no version)",
                    plan.release.join(" "),
                    plan.pin_key
                ));
                host.forget(|r| r.holds.extend(plan.release.iter().cloned()));
            }
        }
    }
    Ok(done)
}

/// One step's plan, applied on its own.
pub fn apply(host: &Host, step: StepId, plan: &Plan) -> Result<Vec<String>> {
    Ok(apply_all(host, step.as_str(), &[plan], "")?
        .pop()
        .unwrap_or_default())
}

/// Of `names`, those held now whose hold the tool made (its receipt lists
/// them): with no pin left for them, apply releases these.
pub fn own_holds(host: &Host, names: &[&str]) -> Result<Vec<String>> {
    let receipt = crate::receipt::load(host)?;
    let packages = host.packages()?;
    let mut own = Vec::new();
    for name in names {
        if receipt.holds.contains(*name) && packages.held(host, name)? {
            own.push((*name).to_string());
        }
    }
    Ok(own)
}

/// A warning for packages held although nothing pins them: upgrades pass
/// them by. Holds the tool made are released by apply (see [`own_holds`]);
/// one made by hand is the operator's, and stays.
pub fn warn_unpinned_holds(host: &Host, step: StepId, names: &[&str], key: &str) -> Result<()> {
    let packages = host.packages()?;
    let own = own_holds(host, names)?;
    let mut held = Vec::new();
    for name in names {
        if packages.held(host, name)? && !own.iter().any(|o| o == name) {
            held.push(*name);
        }
    }
    if !held.is_empty() {
        host.warn(
            step.as_str(),
            &format!(
                "{} held (apt-mark hold) but {key} pins no version: upgrades leave {} where {}; `apt-mark unhold {}` lets {} move again",
                held.join(" "),
                if held.len() == 1 { "it" } else { "them" },
                if held.len() == 1 { "it is" } else { "they are" },
                held.join(" "),
                if held.len() == 1 { "it" } else { "them" },
            ),
        );
    }
    Ok(())
}
