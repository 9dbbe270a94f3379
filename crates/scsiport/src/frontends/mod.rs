//! Glue between the transports and the storage stack: NBD over the class driver, iSCSI over pass-through SRBs.

pub mod lun_map;
pub mod metered;
pub mod nbd_disk;
