//! An NBD export over the disk class driver: every request is split to the HBA's limits and moved by the DMA model.

use bytes::Bytes;
use class::{ClassError, DiskClass};
use hal::{Buffer, Placement, PAGE_SIZE};
use nbd::{Capabilities, DeviceError, Extent, PayloadBuf, WritePayload};
use passthrough::sysmem::SystemMemoryPayload;
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The largest request the export takes in one call.
pub const MAX_REQUEST: u32 = 32 << 20;

/// A class-driver disk as an NBD block device.
pub struct ClassDisk {
    disk: Arc<DiskClass>,
    read_only: bool,
    /// Bounds the system memory that requests in flight hold (in pages).
    memory: Arc<Semaphore>,
}

impl ClassDisk {
    pub fn new(disk: Arc<DiskClass>, read_only: bool) -> Self {
        let pages = (disk.memory().size() / PAGE_SIZE / 2).max(MAX_REQUEST as u64 / PAGE_SIZE) as usize;
        ClassDisk { disk, read_only, memory: Arc::new(Semaphore::new(pages)) }
    }

    async fn buffer(&self, len: usize) -> Result<(OwnedSemaphorePermit, Buffer), DeviceError> {
        let pages = (len as u64).div_ceil(PAGE_SIZE) as u32;
        let permit = self
            .memory
            .clone()
            .acquire_many_owned(pages.max(1))
            .await
            .map_err(|_| DeviceError::Io("shutting down".into()))?;
        let buf = self
            .disk
            .memory()
            .alloc(len.max(1), Placement::Any)
            .map_err(|e| DeviceError::Io(format!("system memory: {e}")))?;
        Ok((permit, buf))
    }

    fn lba(&self, offset: u64) -> u64 {
        offset / self.disk.block_size() as u64
    }
}

/// A WRITE payload received straight into system memory; it holds its share of the memory budget until written.
type Payload = SystemMemoryPayload<OwnedSemaphorePermit>;

/// A class-driver failure as an NBD error.
fn nbd_error(e: ClassError) -> DeviceError {
    match e {
        ClassError::WriteProtected => DeviceError::ReadOnly,
        ClassError::OutOfRange { .. } => DeviceError::Invalid,
        ClassError::IllegalRequest { code } if code.0 == scsi_proto::AscAscq::INVALID_COMMAND_OPCODE.0 => {
            DeviceError::NotSupported
        }
        ClassError::BadRequest(_) => DeviceError::Invalid,
        other => DeviceError::Io(other.to_string()),
    }
}

impl nbd::BlockDevice for ClassDisk {
    fn size(&self) -> u64 {
        self.disk.size_bytes()
    }

    fn capabilities(&self) -> Capabilities {
        let bs = self.disk.block_size();
        Capabilities {
            read_only: self.read_only,
            flush: true,
            fua: true,
            trim: !self.read_only,
            write_zeroes: !self.read_only,
            fast_zero: false,
            block_status: true,
            // One port driver and one disk cache behind every connection: a flush on one covers all.
            multi_conn: true,
            min_block: bs,
            preferred_block: 4096.max(bs),
            max_block: MAX_REQUEST,
        }
    }

    async fn read(&self, offset: u64, len: u32) -> Result<Bytes, DeviceError> {
        let (permit, buf) = self.buffer(len as usize).await?;
        self.disk.read_async(self.lba(offset), &buf, 0, len as usize).await.map_err(nbd_error)?;
        // The DMA engine has finished with the pages: the reply goes out from system memory itself.
        passthrough::sysmem::sysmem_bytes(buf, len as usize, permit).map_err(|e| DeviceError::Io(e.to_string()))
    }

    async fn write(&self, offset: u64, data: Bytes, fua: bool) -> Result<(), DeviceError> {
        if self.read_only {
            return Err(DeviceError::ReadOnly);
        }
        let (_permit, buf) = self.buffer(data.len()).await?;
        buf.write(0, &data).map_err(|e| DeviceError::Io(e.to_string()))?;
        self.disk.write_async(self.lba(offset), &buf, 0, data.len(), fua).await.map_err(nbd_error)
    }

    async fn payload_buffer(&self, len: u32) -> Result<Option<Box<dyn PayloadBuf>>, DeviceError> {
        if self.read_only {
            return Err(DeviceError::ReadOnly);
        }
        let (permit, buf) = self.buffer(len as usize).await?;
        // Not one physical run: the server receives into its own buffer and `write` copies.
        Ok(Payload::new(buf, len as usize, permit).map(|p| Box::new(p) as Box<dyn PayloadBuf>))
    }

    async fn write_payload(&self, offset: u64, payload: WritePayload, fua: bool) -> Result<(), DeviceError> {
        if !payload.is::<Payload>() {
            return self.write(offset, payload.into_bytes(), fua).await;
        }
        let p = payload.into_device_buffer::<Payload>().ok_or_else(|| DeviceError::Io("payload buffer lost".into()))?;
        let len = p.len();
        // The payload already lies in the DMA buffer: no copy before the transfer.
        let (buf, _permit) = p.into_buffer();
        self.disk.write_async(self.lba(offset), &buf, 0, len, fua).await.map_err(nbd_error)
    }

    async fn flush(&self) -> Result<(), DeviceError> {
        self.disk.flush_async().await.map_err(nbd_error)
    }

    async fn trim(&self, offset: u64, len: u64, fua: bool) -> Result<(), DeviceError> {
        if self.read_only {
            return Err(DeviceError::ReadOnly);
        }
        let bs = self.disk.block_size() as u64;
        self.disk.unmap_async(offset / bs, len / bs).await.map_err(nbd_error)?;
        if fua {
            self.flush().await?;
        }
        Ok(())
    }

    async fn write_zeroes(&self, offset: u64, len: u64, no_hole: bool, fua: bool) -> Result<(), DeviceError> {
        if self.read_only {
            return Err(DeviceError::ReadOnly);
        }
        let bs = self.disk.block_size() as u64;
        self.disk.write_zeroes_async(offset / bs, len / bs, !no_hole).await.map_err(nbd_error)?;
        if fua {
            self.flush().await?;
        }
        Ok(())
    }

    async fn block_status(&self, offset: u64, len: u32) -> Result<Vec<Extent>, DeviceError> {
        let bs = self.disk.block_size() as u64;
        let end = offset + len as u64;
        let descriptors = self.disk.lba_status_async(offset / bs).await.map_err(nbd_error)?;
        let mut out = Vec::new();
        let mut at = offset;
        for (lba, blocks, mapped) in descriptors {
            let (s, e) = (lba * bs, (lba + blocks as u64) * bs);
            if e <= at || s >= end {
                continue;
            }
            let from = s.max(at);
            let to = e.min(end);
            if from > at {
                out.push(Extent { length: from - at, hole: false, zero: false });
            }
            out.push(Extent { length: to - from, hole: !mapped, zero: !mapped });
            at = to;
            if at >= end {
                break;
            }
        }
        if out.is_empty() {
            out.push(Extent { length: len as u64, hole: false, zero: false });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nbd::{BlockDevice, BufferPool};
    use port::LuAddress;

    /// The reference card on DMA channel 5 with a 16 MiB RAM disk, opened by the class driver.
    fn machine() -> (rig::Machine, Arc<DiskClass>) {
        let m = rig::Machine::new(5, (16 << 20) / 512);
        let address = LuAddress { path_id: 0, target_id: 0, lun: 0 };
        let class = DiskClass::open(m.handle.clone(), address, m.mem.clone()).expect("the disk opens");
        (m, Arc::new(class))
    }

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len).map(|i| (i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[0] ^ seed).collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn payload_received_in_system_memory_is_written_through_the_dma_model() {
        let (_m, class) = machine();
        let max = class.limits().maximum_transfer_length as u64;
        let disk = ClassDisk::new(class.clone(), false);
        let len = (1 << 20) + 4096;
        let data = pattern(len, 0x3c);
        let mut dest = disk.payload_buffer(len as u32).await.unwrap().expect("fresh memory gives one run");
        AsMut::<[u8]>::as_mut(&mut *dest).copy_from_slice(&data);
        let payload = WritePayload::device(dest);
        assert!(payload.is::<Payload>());
        let before = class.adapter().stats();
        disk.write_payload(8192, payload, false).await.unwrap();
        let after = class.adapter().stats();
        assert_eq!(after.dma_ops - before.dma_ops, (len as u64).div_ceil(max), "one DMA operation per SRB");
        assert_eq!(after.dma_bytes - before.dma_bytes, len as u64, "every byte moved by the DMA model");
        assert_eq!(&disk.read(8192, len as u32).await.unwrap()[..], &data[..]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn payload_in_a_server_buffer_is_copied_into_system_memory_and_written() {
        let (_m, class) = machine();
        let disk = ClassDisk::new(class, false);
        let data = pattern(65536, 0xa5);
        let mut buf = BufferPool::new(1 << 20).take(data.len());
        buf.as_mut().copy_from_slice(&data);
        disk.write_payload(0, WritePayload::pooled(buf), true).await.unwrap();
        assert_eq!(&disk.read(0, data.len() as u32).await.unwrap()[..], &data[..]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn read_only_disk_hands_out_no_payload_buffer() {
        let (_m, class) = machine();
        let disk = ClassDisk::new(class, true);
        assert!(matches!(disk.payload_buffer(4096).await, Err(DeviceError::ReadOnly)));
    }

    #[test]
    fn class_driver_failures_become_nbd_errors() {
        use scsi_proto::AscAscq;
        assert!(matches!(nbd_error(ClassError::WriteProtected), DeviceError::ReadOnly));
        let unsupported = ClassError::IllegalRequest { code: AscAscq::INVALID_COMMAND_OPCODE };
        assert!(matches!(nbd_error(unsupported), DeviceError::NotSupported));
        let out = ClassError::OutOfRange { lba: 9, blocks: 1, capacity: 8 };
        assert!(matches!(nbd_error(out), DeviceError::Invalid));
        let medium = ClassError::Medium { lba: Some(7), code: AscAscq::UNRECOVERED_READ_ERROR };
        assert!(matches!(nbd_error(medium), DeviceError::Io(m) if m.contains("LBA Some(7)")));
    }
}
