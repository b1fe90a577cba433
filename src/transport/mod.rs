//! Controller <-> agent transport (SPEC §6).
//!
//! The `zeromq` crate gives us sockets and framing, and nothing else we need: no CURVE, no
//! reconnection of a connecting socket, no heartbeats, no high-water mark. This module adds
//! them: [`seal`] encrypts and authenticates every frame, [`hub`] is the controller's bound
//! end with one sealed session per agent connection, [`link`] is an agent's disposable
//! connection (rebuilt on failure), [`token`] loads the shared secret. [`handshake`] is the
//! clear exchange that opens a session; [`message`] is all the transport knows of the
//! application's messages it carries, so that it stays generic over them.

pub mod admission;
pub mod bounds;
pub mod handshake;
pub mod hub;
pub mod link;
pub mod message;
pub mod ratelimit;
pub mod seal;
#[cfg(test)]
mod testing;
pub mod token;
