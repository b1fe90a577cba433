//! Controller <-> agent transport (SPEC §6).
//!
//! The `zeromq` crate has no CURVE, so confidentiality and authentication of every frame is ours:
//! [`seal`] turns plaintext frames into authenticated, encrypted, sequence-numbered frames and back.

pub mod seal;
