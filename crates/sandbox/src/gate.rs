//! Keeping commands and delegations apart.
//!
//! A running command's Landlock domain and mounts were fixed when it started and cannot
//! be revoked, so a subtree delegated while a command runs would stay writable to that
//! command. The pod therefore runs commands under a shared permit and delegates under an
//! exclusive one: a delegation waits for the running commands, and commands asked for
//! after it wait until it is done (the lock is fair, so a waiting delegation is not
//! starved by a stream of commands).

use std::sync::Arc;

use tokio::sync::{OwnedRwLockReadGuard, OwnedRwLockWriteGuard, RwLock};

/// The gate between commands (many at once) and scope changes (alone). Cheap to clone;
/// clones share the gate.
#[derive(Debug, Clone, Default)]
pub struct CommandGate {
    lock: Arc<RwLock<()>>,
}

/// Held while a command runs (shared with other commands).
#[derive(Debug)]
pub struct CommandPermit {
    _guard: OwnedRwLockReadGuard<()>,
}

/// Held while the scope shrinks (a delegation): no command runs meanwhile.
#[derive(Debug)]
pub struct DelegationPermit {
    _guard: OwnedRwLockWriteGuard<()>,
}

impl CommandGate {
    /// A new gate.
    pub fn new() -> Self {
        CommandGate::default()
    }

    /// Waits until no delegation is in progress or queued, then lets a command run.
    pub async fn command(&self) -> CommandPermit {
        CommandPermit {
            _guard: self.lock.clone().read_owned().await,
        }
    }

    /// Waits until every running command has finished, then lets a delegation proceed.
    pub async fn delegation(&self) -> DelegationPermit {
        DelegationPermit {
            _guard: self.lock.clone().write_owned().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn commands_overlap_but_a_delegation_waits_for_them() {
        let gate = CommandGate::new();
        let first = gate.command().await;
        let second = gate.command().await;

        let delegating = tokio::spawn({
            let gate = gate.clone();
            async move {
                let _permit = gate.delegation().await;
            }
        });
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
        assert!(!delegating.is_finished(), "delegated while commands ran");

        // A command asked for after the delegation queues behind it.
        let late = tokio::spawn({
            let gate = gate.clone();
            async move {
                let _permit = gate.command().await;
            }
        });
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
        assert!(
            !late.is_finished(),
            "a late command jumped the queued delegation"
        );

        drop(first);
        drop(second);
        tokio::time::timeout(Duration::from_secs(5), delegating)
            .await
            .unwrap()
            .unwrap();
        tokio::time::timeout(Duration::from_secs(5), late)
            .await
            .unwrap()
            .unwrap();
    }
}
