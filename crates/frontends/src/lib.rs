//! The parts between the transports and the storage stack, which `scsiport` wires from its configuration: an iSCSI
//! target's LUN map over the adapters' pass-through clients ([`lun_map`]), an NBD export over the disk class driver
//! ([`nbd_disk`]), an export's device as the server runs it, counted and retirable ([`metered`]), and the per-LU
//! counters the two front ends keep ([`metrics`]).

pub mod lun_map;
pub mod metered;
pub mod metrics;
pub mod nbd_disk;

pub use lun_map::LunMap;
pub use metered::Metered;
pub use nbd_disk::ClassDisk;
