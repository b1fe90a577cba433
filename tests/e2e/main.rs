//! End-to-end tests: they run the real `rally-tui` binary, against real servers on loopback.

mod bounds;
mod cluster;
mod distributed;
mod faults;
mod http2;
mod https;
mod invalid;
mod metrics;
mod partition;
mod proxy;
mod rally_interop;
mod run;
mod samples;
mod store;
mod support;
mod tui;
