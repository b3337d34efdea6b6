//! The pod manifest and scope model.
//!
//! This crate owns the manifest TOML (its schema, [`layer`]), the cascade that merges
//! built-in defaults < user < project < overlay into a resolved [`Manifest`]
//! ([`cascade`]), the scope rules ([`ScopeRule`], [`Permission`]), path resolution
//! ([`path`]) and the live [`Scope`] the file tools check and the sandbox binds
//! ([`scope`]). It does not enforce anything itself (that is `tools` and the sandbox) and
//! does not know about other pods (the registry is in `pod`).

#![forbid(unsafe_code)]

pub mod cascade;
pub mod error;
pub mod hooks;
pub mod layer;
pub mod manifest;
pub mod mcp;
pub mod path;
pub mod rule;
pub mod scope;

pub use cascade::{
    Env, GateError, LayerInput, ManifestLoader, ProjectGate, find_project_root, merge_layers,
};
pub use error::ManifestError;
pub use hooks::{
    Hook, HookCommand, HookEvent, OnError, PermissionDecision, PermissionRule, SourcedHook,
    SourcedPermission,
};
pub use layer::ManifestLayer;
pub use manifest::{
    ApprovalsConfig, ContextConfig, InvalidPodName, Manifest, ModelConfig, Origin, PodConfig,
    PodName, SandboxConfig, SandboxMode, Scheme, ScopeConfig, SourcedRule, WorkerConfig,
};
pub use path::canonicalize_lenient;
pub use rule::{Permission, ScopeRule};
pub use scope::{Refusal, Scope, ScopeError};
