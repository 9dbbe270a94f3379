//! scsiport: the machine (memory, HAL, adapters, disks), its configuration, and the commands of the binary.

pub mod config;
pub mod control;
pub mod exercise;
pub mod frontends_config;
pub mod machine;
pub mod metrics;
pub mod ops;
pub mod serve;
pub mod size;
pub mod timing;
