//! scsiport: the machine (memory, HAL, adapters, disks), its configuration, and the commands of the binary.

pub mod alua_peers;
pub mod config;
pub mod exercise;
pub mod frontends;
pub mod machine;
pub mod serve;
pub mod size;
