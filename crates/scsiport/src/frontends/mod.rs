//! Glue between the transports and the storage stack: NBD over the class driver, iSCSI over pass-through SRBs.

pub mod nbd_disk;
