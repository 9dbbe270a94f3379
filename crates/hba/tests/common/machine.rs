//! A machine with system memory, the HAL, and one host adapter with a RAM disk at target 0: the reference card unless
//! a test asks for the ESP (`Machine::card`).
#![allow(unused_imports)]

pub use rig::{Card, Machine, Spec, LU0};
