//! Distributed runs (SPEC §6): a controller hands a workload's iterations to agent processes
//! over ZeroMQ, checks the SLA on their merged reports, and gathers their results.
//!
//! [`plan`] decides who runs which iteration numbers, [`protocol`] is what travels (and
//! [`wire`] how, over the generic [`crate::transport`]), [`agent`] is the RunnerAgent,
//! [`controller`] the DistributedRunner and the pool of agents it drives.

pub mod agent;
pub mod controller;
pub mod plan;
pub mod pool;
pub mod protocol;
pub mod shares;
pub mod spawn;
pub mod wire;
