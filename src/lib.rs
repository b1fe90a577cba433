//! rally-tui: run Rally task files from one process or from many agents, check SLA criteria
//! live on the merged data, stop the load the moment they fail, and keep everything.
//!
//! The modules follow the data flow: a [`task`] file becomes workloads; each runs a
//! [`scenario`] under a [`runner`], whose results travel as [`chunk`]s to the [`engine`],
//! which keeps [`stats`] and checks the [`sla`], and publishes [`events`] for the front ends
//! ([`headless`]).

pub mod chunk;
pub mod cli;
pub mod clock;
pub mod cluster;
pub mod context;
pub mod distributed;
pub mod engine;
pub mod event_log;
pub mod events;
pub mod headless;
pub mod hook;
pub mod metrics;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod sla;
pub mod stats;
pub mod store;
pub mod task;
pub mod transport;
pub mod tui;
