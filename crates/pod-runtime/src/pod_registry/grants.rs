//! What the registry means: who may write where. A top-level pod claims its write rules;
//! a pod delegates part of its grant to a new child pod (the parent keeps the subtree in
//! its rules and records it in `delegated`); release and reclaim give grants back up the
//! tree. These are pure operations on a loaded [`Registry`] (they read the filesystem
//! only to compare directory identities); [`super::LockFileGuard`] runs them under the
//! lock and saves the result.
//!
//! Invariants kept: no two pods outside one line of descent hold overlapping write
//! rules; a child's rules lie inside its parent's, and each is one of the parent's
//! `delegated` roots; a suspended pod has at least one descendant in the registry.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use manifest::{Permission, PodName, ScopeRule, canonicalize_lenient};

use super::RegistryError;
use super::document::{PodEntry, PodState, Registry};
use super::liveness::{DeathReason, Verdict};
use super::overlap::{Mounts, RootView, Via, contains, overlap};

/// What [`Registry::release`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReleaseOutcome {
    /// The entry is gone and its grant went back up the tree.
    Removed {
        /// The pod that got the grant back (`None`: a top-level pod; it is free now).
        returned_to: Option<String>,
        /// Suspended ancestors removed with it, their last descendant gone.
        pruned: Vec<String>,
    },
    /// Child pods of it remain, so it stays as suspended and keeps what is left of its
    /// grant until they are gone.
    Suspended {
        /// Full names of its children still registered.
        children: Vec<String>,
    },
}

/// One pod whose entry reclaim removed or suspended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReclaimedPod {
    /// Its full name.
    pub full_name: String,
    /// Its instance id.
    pub instance_id: String,
    /// Its recorded pid.
    pub pid: u32,
    /// Why it counts as gone.
    pub reason: DeathReason,
    /// For a removed pod: the pod its grant went back to (`None`: freed entirely).
    pub(crate) returned_to: Option<String>,
}

/// What a reclaim pass changed.
#[derive(Debug, Default)]
pub struct ReclaimReport {
    /// Entries removed, their grants freed or returned to an ancestor.
    pub removed: Vec<ReclaimedPod>,
    /// Dead pods kept as suspended because descendants of theirs still run.
    pub suspended: Vec<ReclaimedPod>,
    /// Delegated roots dropped from a pod because no child holds them any more
    /// (`(pod, root)`); only an inconsistent file has these.
    pub(crate) healed: Vec<(String, PathBuf)>,
    /// Set by [`super::reclaim_stale`] when the pass could not run or save (lock
    /// timeout, corrupt registry, I/O); the pass is best-effort there.
    pub failure: Option<RegistryError>,
}

impl ReclaimReport {
    /// True when the pass changed nothing (and did not fail).
    pub fn is_empty(&self) -> bool {
        self.removed.is_empty()
            && self.suspended.is_empty()
            && self.healed.is_empty()
            && self.failure.is_none()
    }
}

/// What [`Registry::rebuild`] found while rebuilding.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RebuildReport {
    /// Entries dropped because their instance id was already taken.
    pub duplicates: Vec<String>,
    /// Pods whose parent instance is not among the entries (kept as they are).
    pub orphans: Vec<String>,
    /// Overlaps between pods outside one line of descent (kept; a person must stop one).
    pub conflicts: Vec<String>,
}

/// Checks a full name: dot-separated pod names, so it is safe as a directory name.
fn validate_full_name(full_name: &str) -> Result<(), RegistryError> {
    for part in full_name.split('.') {
        PodName::new(part).map_err(|e| RegistryError::InvalidEntry {
            full_name: full_name.to_owned(),
            reason: e.to_string(),
        })?;
    }
    Ok(())
}

/// Canonical form of one rule's target (absolute required).
fn canonical_rule(rule: &ScopeRule) -> Result<ScopeRule, RegistryError> {
    let invalid = |reason: String| RegistryError::InvalidRule {
        rule: rule.clone(),
        reason,
    };
    if !rule.target.is_absolute() {
        return Err(invalid(
            "its target is relative; resolve it against its manifest first".into(),
        ));
    }
    let target = canonicalize_lenient(&rule.target)
        .map_err(|e| invalid(format!("cannot resolve its target: {e}")))?;
    Ok(ScopeRule {
        target,
        ..rule.clone()
    })
}

/// The write rules among `rules`, canonical, exact duplicates dropped. Read rules never
/// conflict, so the registry does not keep them.
fn canonical_write_rules(rules: &[ScopeRule]) -> Result<Vec<ScopeRule>, RegistryError> {
    let mut out: Vec<ScopeRule> = Vec::new();
    for rule in rules.iter().filter(|r| r.permission == Permission::Write) {
        let rule = canonical_rule(rule)?;
        if !out.contains(&rule) {
            out.push(rule);
        }
    }
    Ok(out)
}

/// `write:/a, write:/b [non-recursive]`, or `nothing`.
fn rules_summary(rules: &[ScopeRule]) -> String {
    if rules.is_empty() {
        return "nothing".into();
    }
    rules
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl Registry {
    /// Index of the entry with instance id `instance`.
    fn position(&self, instance: &str) -> Option<usize> {
        self.pods.iter().position(|p| p.instance_id == instance)
    }

    /// Instance ids of `instance`'s ancestors, nearest first (a cycle in a hand-edited
    /// file ends the walk).
    fn ancestors(&self, instance: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut current = self
            .get(instance)
            .and_then(|e| e.parent_instance_id.clone());
        while let Some(id) = current {
            if id == instance || out.contains(&id) {
                break;
            }
            current = self.get(&id).and_then(|e| e.parent_instance_id.clone());
            out.push(id);
        }
        out
    }

    /// Children of each instance id present.
    fn children_map(&self) -> HashMap<&str, Vec<&str>> {
        let mut map: HashMap<&str, Vec<&str>> = HashMap::new();
        for pod in &self.pods {
            if let Some(parent) = &pod.parent_instance_id {
                map.entry(parent.as_str())
                    .or_default()
                    .push(pod.instance_id.as_str());
            }
        }
        map
    }

    /// Errors unless `full_name` and `instance_id` are both unused.
    fn check_unused(&self, entry: &PodEntry) -> Result<(), RegistryError> {
        if self.get(&entry.instance_id).is_some() {
            return Err(RegistryError::DuplicateInstance {
                instance_id: entry.instance_id.clone(),
            });
        }
        if let Some(other) = self.pods.iter().find(|p| p.full_name == entry.full_name) {
            return Err(RegistryError::NameInUse {
                full_name: other.full_name.clone(),
                pid: other.pid,
            });
        }
        Ok(())
    }

    /// The first overlap of `rules` with a write rule of a pod not in `exempt`.
    fn find_conflict(
        &self,
        rules: &[ScopeRule],
        exempt: &[String],
        mounts: &Mounts,
    ) -> Option<RegistryError> {
        let wanted: Vec<RootView> = rules
            .iter()
            .map(|r| RootView::new(&r.target, r.recursive, mounts))
            .collect();
        for holder in self
            .pods
            .iter()
            .filter(|p| !exempt.contains(&p.instance_id))
        {
            for held in &holder.write_rules {
                let held_view = RootView::new(&held.target, held.recursive, mounts);
                for view in &wanted {
                    if let Some(via) = overlap(view, &held_view) {
                        return Some(RegistryError::ScopeConflict {
                            requested: view.path().to_path_buf(),
                            held: held.target.clone(),
                            holder: holder.full_name.clone(),
                            holder_pid: holder.pid,
                            holder_state: holder.state,
                            via_alias: via == Via::Alias,
                        });
                    }
                }
            }
        }
        None
    }

    /// Registers a top-level pod and its write rules, refusing any overlap with a rule
    /// another pod holds (live or suspended, including subtrees delegated onwards).
    ///
    /// Read rules in `entry.write_rules` are dropped and targets canonicalised. The entry
    /// must have no parent (children get their grant through [`Registry::delegate`]).
    /// Dead holders are not skipped here: run a reclaim first (as
    /// [`super::LockFileGuard::claim`] does).
    pub fn claim(&mut self, mut entry: PodEntry) -> Result<(), RegistryError> {
        validate_full_name(&entry.full_name)?;
        if entry.parent_instance_id.is_some() {
            return Err(RegistryError::InvalidEntry {
                full_name: entry.full_name.clone(),
                reason: "it has a parent; a child pod's grant is given by delegation, not claimed"
                    .into(),
            });
        }
        self.check_unused(&entry)?;
        entry.write_rules = canonical_write_rules(&entry.write_rules)?;
        entry.delegated.clear();
        entry.state = PodState::Live;
        if let Some(conflict) = self.find_conflict(&entry.write_rules, &[], &Mounts::load()) {
            return Err(conflict);
        }
        self.pods.push(entry);
        Ok(())
    }

    /// Moves `grants` (recursive write rules) from the live pod `parent_instance` to the
    /// new pod `child`, which is registered with exactly those write rules.
    ///
    /// Each grant must lie inside one of the parent's recursive write rules and must not
    /// overlap a subtree it already delegated (nor each other). The parent keeps the
    /// subtree in its rules and lists it in `delegated`, so parent and child do not
    /// conflict while a third pod conflicts with both. All or nothing.
    pub fn delegate(
        &mut self,
        parent_instance: &str,
        mut child: PodEntry,
        grants: &[ScopeRule],
    ) -> Result<(), RegistryError> {
        validate_full_name(&child.full_name)?;
        let parent_index =
            self.position(parent_instance)
                .ok_or_else(|| RegistryError::UnknownPod {
                    instance_id: parent_instance.to_owned(),
                })?;
        let parent = &self.pods[parent_index];
        let prefix = format!("{}.", parent.full_name);
        if !child.full_name.starts_with(&prefix) || child.full_name[prefix.len()..].contains('.') {
            return Err(RegistryError::InvalidEntry {
                full_name: child.full_name.clone(),
                reason: format!(
                    "a child of pod \"{}\" must be named \"{prefix}<name>\"",
                    parent.full_name
                ),
            });
        }
        if parent.state != PodState::Live {
            return Err(RegistryError::ParentSuspended {
                parent: parent.full_name.clone(),
            });
        }
        self.check_unused(&child)?;

        let mounts = Mounts::load();
        let own: Vec<RootView> = parent
            .write_rules
            .iter()
            .map(|r| RootView::new(&r.target, r.recursive, &mounts))
            .collect();
        let mut taken: Vec<(RootView, Option<String>)> = parent
            .delegated
            .iter()
            .map(|root| {
                let holder = self
                    .pods
                    .iter()
                    .find(|p| {
                        p.parent_instance_id.as_deref() == Some(parent_instance)
                            && p.write_rules.iter().any(|r| &r.target == root)
                    })
                    .map(|p| p.full_name.clone());
                (RootView::new(root, true, &mounts), holder)
            })
            .collect();

        let mut roots = Vec::new();
        for grant in grants {
            if grant.permission != Permission::Write || !grant.recursive {
                return Err(RegistryError::NotDelegable {
                    rule: grant.clone(),
                });
            }
            let grant = canonical_rule(grant)?;
            let view = RootView::new(&grant.target, true, &mounts);
            if !own.iter().any(|outer| contains(outer, &view).is_some()) {
                return Err(RegistryError::OutsideParentScope {
                    grant: grant.target,
                    parent: parent.full_name.clone(),
                    parent_scope: rules_summary(&parent.write_rules),
                });
            }
            if let Some((existing, holder)) = taken
                .iter()
                .find(|(existing, _)| overlap(&view, existing).is_some())
            {
                return Err(RegistryError::AlreadyDelegated {
                    grant: grant.target,
                    existing: existing.path().to_path_buf(),
                    holder: holder.clone(),
                });
            }
            taken.push((view, Some(child.full_name.clone())));
            roots.push(grant);
        }

        // Aliases can make a grant reach a third pod's directory even though it lies
        // inside the parent's rules by path; only the line of descent is exempt.
        let mut exempt = self.ancestors(parent_instance);
        exempt.push(parent_instance.to_owned());
        if let Some(conflict) = self.find_conflict(&roots, &exempt, &mounts) {
            return Err(conflict);
        }

        let parent = &mut self.pods[parent_index];
        parent
            .delegated
            .extend(roots.iter().map(|r| r.target.clone()));
        child.parent_instance_id = Some(parent_instance.to_owned());
        child.write_rules = roots;
        child.delegated.clear();
        child.state = PodState::Live;
        self.pods.push(child);
        Ok(())
    }

    /// Removes pod `instance` and gives its grant back to its parent — unless child pods
    /// of it remain, in which case it stays, suspended, until they are gone.
    pub fn release(&mut self, instance: &str) -> Result<ReleaseOutcome, RegistryError> {
        let index = self
            .position(instance)
            .ok_or_else(|| RegistryError::UnknownPod {
                instance_id: instance.to_owned(),
            })?;
        let children: Vec<String> = self
            .pods
            .iter()
            .filter(|p| p.parent_instance_id.as_deref() == Some(instance))
            .map(|p| p.full_name.clone())
            .collect();
        if !children.is_empty() {
            self.pods[index].state = PodState::Suspended;
            return Ok(ReleaseOutcome::Suspended { children });
        }
        let removed = self.remove_all(&HashSet::from([instance.to_owned()]));
        let mut returned_to = removed.into_iter().next().and_then(|(_, to)| to);
        let pruned = self.prune_suspended();
        // A suspended parent left childless is pruned too, and the grant travels on with
        // the parent's own to whoever received that.
        while let Some((_, to)) = returned_to
            .as_ref()
            .and_then(|name| pruned.iter().find(|(p, _)| &p.full_name == name))
        {
            returned_to = to.clone();
        }
        Ok(ReleaseOutcome::Removed {
            returned_to,
            pruned: pruned.into_iter().map(|(p, _)| p.full_name).collect(),
        })
    }

    /// Removes the entries in `ids` at once. A removed pod's grant goes back to its
    /// nearest ancestor that stays: that ancestor's `delegated` loses the root it gave to
    /// the topmost removed pod on the way. Returns each removed entry with that ancestor's
    /// name.
    fn remove_all(&mut self, ids: &HashSet<String>) -> Vec<(PodEntry, Option<String>)> {
        let mut returns: Vec<(usize, Vec<PathBuf>)> = Vec::new();
        let mut receivers: HashMap<String, Option<String>> = HashMap::new();
        for pod in self.pods.iter().filter(|p| ids.contains(&p.instance_id)) {
            // Walk up through removed ancestors to the first kept one.
            let mut giver = pod;
            let mut seen = HashSet::new();
            let receiver = loop {
                let Some(parent_id) = &giver.parent_instance_id else {
                    break None;
                };
                if !seen.insert(parent_id.clone()) {
                    break None;
                }
                match self.position(parent_id) {
                    Some(i) if ids.contains(parent_id) => giver = &self.pods[i],
                    Some(i) => break Some((i, giver)),
                    None => break None,
                }
            };
            let name = receiver.map(|(i, giver)| {
                let roots = giver.write_rules.iter().map(|r| r.target.clone()).collect();
                returns.push((i, roots));
                self.pods[i].full_name.clone()
            });
            receivers.insert(pod.instance_id.clone(), name);
        }
        for (i, roots) in returns {
            self.pods[i].delegated.retain(|d| !roots.contains(d));
        }
        let mut removed = Vec::new();
        let mut kept = Vec::new();
        for pod in std::mem::take(&mut self.pods) {
            if ids.contains(&pod.instance_id) {
                let to = receivers.remove(&pod.instance_id).flatten();
                removed.push((pod, to));
            } else {
                kept.push(pod);
            }
        }
        self.pods = kept;
        removed
    }

    /// Removes suspended entries with no descendants left, repeatedly (removing one can
    /// leave its suspended parent childless).
    fn prune_suspended(&mut self) -> Vec<(PodEntry, Option<String>)> {
        let mut all = Vec::new();
        loop {
            let children = self.children_map();
            let ids: HashSet<String> = self
                .pods
                .iter()
                .filter(|p| {
                    p.state == PodState::Suspended && !children.contains_key(p.instance_id.as_str())
                })
                .map(|p| p.instance_id.clone())
                .collect();
            if ids.is_empty() {
                return all;
            }
            all.extend(self.remove_all(&ids));
        }
    }

    /// Drops pods that are gone, judged by `verdict` (called for live entries only;
    /// suspended ones are gone by definition). A gone pod with a live descendant becomes
    /// suspended and keeps its remaining grant; every other gone pod is removed and its
    /// grant returned to its nearest remaining ancestor (or freed). Also drops delegated
    /// roots that no child holds any more.
    pub fn reclaim(&mut self, mut verdict: impl FnMut(&PodEntry) -> Verdict) -> ReclaimReport {
        let mut report = ReclaimReport::default();
        let mut dead: HashMap<String, DeathReason> = HashMap::new();
        let mut alive: HashSet<String> = HashSet::new();
        for pod in &self.pods {
            match pod.state {
                PodState::Suspended => {
                    dead.insert(pod.instance_id.clone(), DeathReason::NoDescendantsLeft);
                }
                PodState::Live => match verdict(pod) {
                    Verdict::Alive => {
                        alive.insert(pod.instance_id.clone());
                    }
                    Verdict::Dead(reason) => {
                        dead.insert(pod.instance_id.clone(), reason);
                    }
                },
            }
        }

        let children = self.children_map();
        let has_live_descendant = |id: &str| {
            let mut stack: Vec<&str> = children.get(id).cloned().unwrap_or_default();
            let mut seen: HashSet<&str> = HashSet::new();
            while let Some(next) = stack.pop() {
                if !seen.insert(next) {
                    continue;
                }
                if alive.contains(next) {
                    return true;
                }
                stack.extend(children.get(next).into_iter().flatten());
            }
            false
        };
        let mut suspend = Vec::new();
        let mut remove = HashSet::new();
        for pod in &self.pods {
            let Some(reason) = dead.get(&pod.instance_id) else {
                continue;
            };
            if has_live_descendant(&pod.instance_id) {
                if pod.state == PodState::Live {
                    suspend.push((pod.instance_id.clone(), reason.clone()));
                }
            } else {
                remove.insert(pod.instance_id.clone());
            }
        }
        drop(children);

        for (id, reason) in suspend {
            if let Some(i) = self.position(&id) {
                let pod = &mut self.pods[i];
                pod.state = PodState::Suspended;
                report.suspended.push(ReclaimedPod {
                    full_name: pod.full_name.clone(),
                    instance_id: id,
                    pid: pod.pid,
                    reason,
                    returned_to: None,
                });
            }
        }
        for (pod, returned_to) in self.remove_all(&remove) {
            let reason = dead
                .remove(&pod.instance_id)
                .unwrap_or(DeathReason::NoDescendantsLeft);
            report.removed.push(ReclaimedPod {
                full_name: pod.full_name,
                instance_id: pod.instance_id,
                pid: pod.pid,
                reason,
                returned_to,
            });
        }
        report.healed = self.heal_delegations();
        report
    }

    /// Drops delegated roots no child of the pod holds (e.g. after a hand edit).
    fn heal_delegations(&mut self) -> Vec<(String, PathBuf)> {
        let held: HashSet<(String, PathBuf)> = self
            .pods
            .iter()
            .filter_map(|p| p.parent_instance_id.as_ref().map(|parent| (parent, p)))
            .flat_map(|(parent, p)| {
                p.write_rules
                    .iter()
                    .map(move |r| (parent.clone(), r.target.clone()))
            })
            .collect();
        let mut healed = Vec::new();
        for pod in &mut self.pods {
            let id = pod.instance_id.clone();
            let name = pod.full_name.clone();
            pod.delegated.retain(|root| {
                let keep = held.contains(&(id.clone(), root.clone()));
                if !keep {
                    healed.push((name.clone(), root.clone()));
                }
                keep
            });
        }
        healed
    }

    /// A registry rebuilt from the entries of the pods that run (as `pod doctor --repair`
    /// gathers them from their status files): each parent's `delegated` is recomputed
    /// from its children's rules. Nothing is dropped but duplicate instance ids; orphans
    /// and conflicts are reported for a person to resolve.
    pub fn rebuild(entries: Vec<PodEntry>) -> (Registry, RebuildReport) {
        let mut report = RebuildReport::default();
        let mut registry = Registry::default();
        for entry in entries {
            if registry.get(&entry.instance_id).is_some() {
                report.duplicates.push(entry.instance_id);
            } else {
                registry.pods.push(entry);
            }
        }
        let mut delegated: HashMap<String, Vec<PathBuf>> = HashMap::new();
        for pod in &registry.pods {
            if let Some(parent) = &pod.parent_instance_id {
                if registry.get(parent).is_some() {
                    delegated
                        .entry(parent.clone())
                        .or_default()
                        .extend(pod.write_rules.iter().map(|r| r.target.clone()));
                } else {
                    report.orphans.push(pod.full_name.clone());
                }
            }
        }
        for pod in &mut registry.pods {
            pod.delegated = delegated.remove(&pod.instance_id).unwrap_or_default();
        }
        report.conflicts = registry.conflicts();
        (registry, report)
    }

    /// Every overlap between two pods outside one line of descent, as messages. An
    /// intact registry has none.
    pub fn conflicts(&self) -> Vec<String> {
        let mounts = Mounts::load();
        let mut out = Vec::new();
        for (i, pod) in self.pods.iter().enumerate() {
            let mut exempt = self.ancestors(&pod.instance_id);
            exempt.push(pod.instance_id.clone());
            // Only pods after this one, and not its descendants (they list it as an
            // ancestor, which the check from their side would exempt anyway).
            let later = Registry {
                pods: self.pods[i + 1..]
                    .iter()
                    .filter(|p| !self.ancestors(&p.instance_id).contains(&pod.instance_id))
                    .cloned()
                    .collect(),
                ..Registry::default()
            };
            if let Some(conflict) = later.find_conflict(&pod.write_rules, &exempt, &mounts) {
                out.push(format!("pod \"{}\": {conflict}", pod.full_name));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use manifest::Permission::{Read, Write};
    use std::fs;
    use std::path::Path;

    struct Fixture {
        _dir: tempfile::TempDir,
        root: PathBuf,
    }

    impl Fixture {
        fn new() -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            let root = fs::canonicalize(dir.path()).unwrap();
            for sub in ["repo/src/a", "repo/docs", "other"] {
                fs::create_dir_all(root.join(sub)).unwrap();
            }
            Fixture { _dir: dir, root }
        }

        fn p(&self, rel: &str) -> PathBuf {
            self.root.join(rel)
        }

        fn w(&self, rel: &str) -> ScopeRule {
            ScopeRule::recursive(self.p(rel), Write)
        }
    }

    fn entry(name: &str, rules: Vec<ScopeRule>) -> PodEntry {
        PodEntry {
            full_name: name.into(),
            instance_id: format!("id-{name}"),
            parent_instance_id: None,
            pid: 1000 + u32::try_from(name.len()).unwrap(),
            start_time: 1,
            host: "h".into(),
            boot_id: "b".into(),
            socket_path: format!("/run/{name}/sock").into(),
            write_rules: rules,
            delegated: vec![],
            state: PodState::Live,
            extra: serde_json::Map::new(),
        }
    }

    fn names(reg: &Registry) -> Vec<&str> {
        reg.pods.iter().map(|p| p.full_name.as_str()).collect()
    }

    fn get<'a>(reg: &'a Registry, name: &str) -> &'a PodEntry {
        reg.pods.iter().find(|p| p.full_name == name).unwrap()
    }

    /// api holds repo; api.child holds repo/src; api.child.leaf holds repo/src/a.
    fn three_generations(fx: &Fixture) -> Registry {
        let mut reg = Registry::default();
        reg.claim(entry("api", vec![fx.w("repo")])).unwrap();
        reg.delegate("id-api", entry("api.child", vec![]), &[fx.w("repo/src")])
            .unwrap();
        reg.delegate(
            "id-api.child",
            entry("api.child.leaf", vec![]),
            &[fx.w("repo/src/a")],
        )
        .unwrap();
        reg
    }

    #[test]
    fn claim_keeps_canonical_write_rules_only() {
        let fx = Fixture::new();
        let mut reg = Registry::default();
        let rules = vec![
            ScopeRule::recursive(fx.p("repo/src/../docs"), Write),
            ScopeRule::recursive(fx.p("repo/docs"), Write),
            ScopeRule::recursive(fx.p("other"), Read),
        ];
        reg.claim(entry("api", rules)).unwrap();
        assert_eq!(reg.pods[0].write_rules, vec![fx.w("repo/docs")]);
    }

    #[test]
    fn claim_refuses_bad_entries() {
        let fx = Fixture::new();
        let mut reg = Registry::default();
        let err = reg
            .claim(entry("Bad/Name", vec![fx.w("repo")]))
            .unwrap_err();
        assert!(matches!(err, RegistryError::InvalidEntry { .. }), "{err}");
        let err = reg.claim(entry("a..b", vec![])).unwrap_err();
        assert!(matches!(err, RegistryError::InvalidEntry { .. }), "{err}");
        let rel = ScopeRule::recursive("repo", Write);
        let err = reg.claim(entry("api", vec![rel])).unwrap_err();
        assert!(err.to_string().contains("relative"), "{err}");
        let mut child = entry("api", vec![]);
        child.parent_instance_id = Some("x".into());
        let err = reg.claim(child).unwrap_err();
        assert!(err.to_string().contains("delegation"), "{err}");

        reg.claim(entry("api", vec![fx.w("repo")])).unwrap();
        let mut same_name = entry("api", vec![fx.w("other")]);
        same_name.instance_id = "id-api-2".into();
        let err = reg.claim(same_name).unwrap_err();
        assert!(matches!(err, RegistryError::NameInUse { .. }), "{err}");
        let mut same_id = entry("web", vec![fx.w("other")]);
        same_id.instance_id = "id-api".into();
        let err = reg.claim(same_id).unwrap_err();
        assert!(
            matches!(err, RegistryError::DuplicateInstance { .. }),
            "{err}"
        );
        assert_eq!(names(&reg), ["api"]);
    }

    #[test]
    fn non_recursive_rules_conflict_where_their_paths_meet() {
        let fx = Fixture::new();
        let n = |rel: &str| ScopeRule::non_recursive(fx.p(rel), Write);
        // (held, requested, conflict?)
        let table = [
            (n("repo"), n("repo"), true),
            (n("repo"), n("repo/src"), true),
            (n("repo/src"), n("repo/docs"), false),
            (n("repo"), n("repo/src/a"), false),
            (fx.w("repo"), n("repo/src"), true),
            (fx.w("repo/src"), n("repo"), true),
            (fx.w("repo/src/a"), n("repo"), false),
            (fx.w("repo/docs"), n("repo/src"), false),
        ];
        for (held, requested, want) in table {
            let mut reg = Registry::default();
            reg.claim(entry("api", vec![held.clone()])).unwrap();
            let got = reg.claim(entry("web", vec![requested.clone()]));
            assert_eq!(
                got.is_err(),
                want,
                "held {held}, requested {requested}: {got:?}"
            );
        }
    }

    #[test]
    fn conflict_message_names_holder_and_remedy() {
        let fx = Fixture::new();
        let mut reg = Registry::default();
        reg.claim(entry("api", vec![fx.w("repo/src")])).unwrap();
        let err = reg.claim(entry("web", vec![fx.w("repo/src")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "scope conflict: {} is already written by pod \"api\" (pid 1003); choose another path or stop \"api\"",
                fx.p("repo/src").display()
            )
        );
        let err = reg.claim(entry("web", vec![fx.w("repo")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "scope conflict: {} overlaps {}, which pod \"api\" (pid 1003) writes; choose another path or stop \"api\"",
                fx.p("repo").display(),
                fx.p("repo/src").display()
            )
        );
    }

    #[test]
    fn delegation_carves_out_and_third_pods_conflict_with_both() {
        let fx = Fixture::new();
        let reg = three_generations(&fx);
        assert_eq!(get(&reg, "api").delegated, vec![fx.p("repo/src")]);
        assert_eq!(get(&reg, "api.child").delegated, vec![fx.p("repo/src/a")]);
        assert_eq!(
            get(&reg, "api.child.leaf").parent_instance_id.as_deref(),
            Some("id-api.child")
        );
        assert!(reg.conflicts().is_empty(), "{:?}", reg.conflicts());

        let mut third = reg;
        let err = third
            .claim(entry("web", vec![fx.w("repo/src/a/deep")]))
            .unwrap_err();
        // The first holder in registry order is named: the top of the line.
        assert!(
            matches!(&err, RegistryError::ScopeConflict { holder, .. } if holder == "api"),
            "{err}"
        );
        let mut without_api = third.clone();
        without_api.pods.retain(|p| p.full_name != "api");
        let err = without_api
            .claim(entry("web", vec![fx.w("repo/src/a/deep")]))
            .unwrap_err();
        assert!(
            matches!(&err, RegistryError::ScopeConflict { holder, .. } if holder == "api.child"),
            "{err}"
        );
    }

    #[test]
    fn delegation_errors() {
        let fx = Fixture::new();
        let mut reg = three_generations(&fx);
        let before = reg.clone();
        let err = reg
            .delegate("id-api", entry("api.x", vec![]), &[fx.w("other")])
            .unwrap_err();
        assert!(
            matches!(err, RegistryError::OutsideParentScope { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("write:"), "{err}");
        let err = reg
            .delegate("id-api", entry("api.x", vec![]), &[fx.w("repo/src/a/z")])
            .unwrap_err();
        assert!(
            matches!(&err, RegistryError::AlreadyDelegated { holder: Some(h), .. } if h == "api.child"),
            "{err}"
        );
        let err = reg
            .delegate("id-api", entry("api.x", vec![]), &[fx.w("repo")])
            .unwrap_err();
        assert!(
            matches!(err, RegistryError::AlreadyDelegated { .. }),
            "{err}"
        );
        let err = reg
            .delegate(
                "id-api",
                entry("api.x", vec![]),
                &[fx.w("repo/docs"), fx.w("repo/docs/sub")],
            )
            .unwrap_err();
        assert!(
            matches!(err, RegistryError::AlreadyDelegated { .. }),
            "{err}"
        );
        for bad_name in ["web", "api.child.x", "apix.y"] {
            let err = reg
                .delegate("id-api", entry(bad_name, vec![]), &[fx.w("repo/docs")])
                .unwrap_err();
            assert!(
                err.to_string().contains("must be named \"api.<name>\""),
                "{err}"
            );
        }
        let nr = ScopeRule::non_recursive(fx.p("repo/docs"), Write);
        let err = reg
            .delegate("id-api", entry("api.x", vec![]), &[nr])
            .unwrap_err();
        assert!(matches!(err, RegistryError::NotDelegable { .. }), "{err}");
        let err = reg
            .delegate("nope", entry("api.x", vec![]), &[fx.w("repo/docs")])
            .unwrap_err();
        assert!(matches!(err, RegistryError::UnknownPod { .. }), "{err}");
        assert_eq!(reg, before, "failed delegations change nothing");

        reg.pods[0].state = PodState::Suspended;
        let err = reg
            .delegate("id-api", entry("api.x", vec![]), &[fx.w("repo/docs")])
            .unwrap_err();
        assert!(
            matches!(err, RegistryError::ParentSuspended { .. }),
            "{err}"
        );
    }

    #[test]
    fn release_returns_grants_or_suspends() {
        let fx = Fixture::new();
        let mut reg = three_generations(&fx);
        assert_eq!(
            reg.release("id-api.child").unwrap(),
            ReleaseOutcome::Suspended {
                children: vec!["api.child.leaf".into()]
            }
        );
        assert_eq!(get(&reg, "api.child").state, PodState::Suspended);
        // The leaf goes; its suspended parent is pruned; everything is api's again.
        assert_eq!(
            reg.release("id-api.child.leaf").unwrap(),
            ReleaseOutcome::Removed {
                returned_to: Some("api".into()),
                pruned: vec!["api.child".into()]
            }
        );
        assert_eq!(names(&reg), ["api"]);
        assert!(reg.pods[0].delegated.is_empty());
        assert!(matches!(
            reg.release("id-api.child"),
            Err(RegistryError::UnknownPod { .. })
        ));
        assert_eq!(
            reg.release("id-api").unwrap(),
            ReleaseOutcome::Removed {
                returned_to: None,
                pruned: vec![]
            }
        );
        assert!(reg.pods.is_empty());
    }

    fn dead_if(names: &'static [&'static str]) -> impl FnMut(&PodEntry) -> Verdict {
        move |e| {
            if names.contains(&e.full_name.as_str()) {
                Verdict::Dead(DeathReason::LockReleased)
            } else {
                Verdict::Alive
            }
        }
    }

    #[test]
    fn reclaim_returns_a_dead_leafs_grant_to_its_parent() {
        let fx = Fixture::new();
        let mut reg = three_generations(&fx);
        let report = reg.reclaim(dead_if(&["api.child.leaf"]));
        assert_eq!(report.removed.len(), 1);
        assert_eq!(report.removed[0].returned_to.as_deref(), Some("api.child"));
        assert!(get(&reg, "api.child").delegated.is_empty());
        assert_eq!(get(&reg, "api").delegated, vec![fx.p("repo/src")]);
        // Now free for a new child of api.child.
        reg.delegate(
            "id-api.child",
            entry("api.child.new", vec![]),
            &[fx.w("repo/src/a")],
        )
        .unwrap();
    }

    #[test]
    fn reclaim_suspends_a_dead_parent_with_a_live_child() {
        let fx = Fixture::new();
        let mut reg = three_generations(&fx);
        let report = reg.reclaim(dead_if(&["api.child"]));
        assert!(report.removed.is_empty());
        assert_eq!(report.suspended.len(), 1);
        assert_eq!(report.suspended[0].full_name, "api.child");
        let child = get(&reg, "api.child");
        assert_eq!(child.state, PodState::Suspended);
        assert_eq!(child.write_rules, vec![fx.w("repo/src")]);
        // Its remaining grant stays taken: api cannot hand it out again.
        let err = reg
            .delegate("id-api", entry("api.y", vec![]), &[fx.w("repo/src/b")])
            .unwrap_err();
        assert!(
            matches!(err, RegistryError::AlreadyDelegated { .. }),
            "{err}"
        );

        // When the leaf dies too, both go and api has everything back.
        let report = reg.reclaim(dead_if(&["api.child.leaf"]));
        let mut removed: Vec<(&str, Option<&str>)> = report
            .removed
            .iter()
            .map(|r| (r.full_name.as_str(), r.returned_to.as_deref()))
            .collect();
        removed.sort();
        assert_eq!(
            removed,
            [("api.child", Some("api")), ("api.child.leaf", Some("api"))]
        );
        assert_eq!(names(&reg), ["api"]);
        assert!(reg.pods[0].delegated.is_empty());
    }

    #[test]
    fn reclaim_frees_a_whole_dead_line() {
        let fx = Fixture::new();
        let mut reg = three_generations(&fx);
        let report = reg.reclaim(dead_if(&["api", "api.child", "api.child.leaf"]));
        assert_eq!(report.removed.len(), 3);
        assert!(report.removed.iter().all(|r| r.returned_to.is_none()));
        assert!(reg.pods.is_empty());
        assert!(reg.reclaim(dead_if(&[])).is_empty());
    }

    #[test]
    fn reclaim_heals_delegations_no_child_holds() {
        let fx = Fixture::new();
        let mut reg = three_generations(&fx);
        reg.pods.retain(|p| p.full_name != "api.child.leaf");
        let report = reg.reclaim(dead_if(&[]));
        assert_eq!(
            report.healed,
            vec![("api.child".to_owned(), fx.p("repo/src/a"))]
        );
        assert!(get(&reg, "api.child").delegated.is_empty());
    }

    #[test]
    fn rebuild_recomputes_delegations_and_reports_problems() {
        let fx = Fixture::new();
        let intact = three_generations(&fx);
        let mut entries = intact.pods.clone();
        for e in &mut entries {
            e.delegated.clear();
        }
        entries.push(entries[0].clone());
        let mut orphan = entry("lost.kid", vec![fx.w("other")]);
        orphan.parent_instance_id = Some("id-lost".into());
        entries.push(orphan);
        entries.push(entry("intruder", vec![fx.w("repo/docs")]));
        let (rebuilt, report) = Registry::rebuild(entries);
        assert_eq!(report.duplicates, vec!["id-api".to_owned()]);
        assert_eq!(report.orphans, vec!["lost.kid".to_owned()]);
        assert_eq!(report.conflicts.len(), 1, "{:?}", report.conflicts);
        assert!(
            report.conflicts[0].contains("intruder"),
            "{:?}",
            report.conflicts
        );
        assert_eq!(&rebuilt.pods[..3], &intact.pods[..]);
    }

    #[test]
    fn overlaps_are_seen_through_symlinks_and_dotdot() {
        let fx = Fixture::new();
        std::os::unix::fs::symlink(fx.p("repo/src"), fx.p("link")).unwrap();
        let mut reg = Registry::default();
        reg.claim(entry("api", vec![fx.w("repo/src")])).unwrap();
        for alias in ["link", "link/a", "repo/docs/../src", "other/../repo"] {
            let err = reg.claim(entry("web", vec![fx.w(alias)])).unwrap_err();
            assert!(
                matches!(err, RegistryError::ScopeConflict { .. }),
                "{alias}: {err}"
            );
        }
        assert!(Path::new(&fx.p("link")).exists());
    }
}
