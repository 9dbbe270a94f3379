//! Shared test fixtures: the machines of the `rig` crate (RAM-backed disks on a target, either card), and CDB
//! builders.
#![allow(dead_code, unused_imports)]

pub mod machine;

pub use rig::{inquiry, pattern, ram_target, read10, read16, write10, write16, BLOCK, TEST_UNIT_READY};
