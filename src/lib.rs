//! AegisAI Sandbox Orchestrator.
//!
//! The tree follows the trust boundaries:
//! - [`analysis`]: the orchestration of one analysis on the host (unprivileged logic).
//! - [`sandbox`]: host-side privileged set-up of the native sandbox (namespaces, cgroups,
//!   overlay mounts, seccomp) and the supervisor process that owns one sandbox.
//! - [`monitor`]: the behaviour monitor, which runs *inside* the sandbox as its init process.
//! - [`report`]: the report document and its JSON Schema.
//! - [`image`]: guest images built with mmdebstrap.
//! - [`windows`]: Windows samples under Wine (launch, and where a run's Wine evidence lies).

pub mod analysis;
pub mod cli;
pub mod config;
pub mod corpus;
pub mod docker;
pub mod doctor;
pub mod egress;
pub mod guest;
pub mod image;
pub mod monitor;
pub mod netsim;
pub mod paths;
pub mod report;
pub mod sample;
pub mod sandbox;
pub mod service;
pub mod windows;
