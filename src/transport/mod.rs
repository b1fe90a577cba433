//! Controller <-> agent transport (SPEC §6).
//!
//! The `zeromq` crate gives us sockets and framing, and nothing else we need: no CURVE, no
//! reconnection of a connecting socket, no heartbeats, no high-water mark. This module adds
//! them: [`seal`] encrypts and authenticates every frame, [`hub`] is the controller's bound
//! end with one sealed session per agent connection, [`link`] is an agent's disposable
//! connection (rebuilt on failure), [`token`] loads the shared secret.

pub mod admission;
pub mod bounds;
pub mod hub;
pub mod link;
pub mod ratelimit;
pub mod seal;
pub mod token;
