//! Agents on many hosts (SPEC §6 "Where agents come from"): a cluster file lists SSH hosts,
//! and the controller starts `rally-tui agent` on each through the system `ssh` client.
//!
//! Why the system client and not an SSH library: users' keys, agents, `~/.ssh/config`, jump
//! hosts and known-hosts files then work exactly as they do for `ssh` itself, and nothing
//! here ever handles a private key. `BatchMode=yes` keeps it from ever prompting.
//!
//! [`file`] reads and validates the cluster file, [`ssh`] builds and runs ssh commands
//! (and copies the binary), [`launch`] starts, watches and tears down the agents of a run,
//! and [`check`] is the dry run behind `rally-tui cluster check`.

pub mod check;
pub mod file;
pub mod launch;
pub mod ssh;

pub use file::{Binary, ClusterFile, HostSpec};
pub use launch::{ClusterAgents, ClusterError};
