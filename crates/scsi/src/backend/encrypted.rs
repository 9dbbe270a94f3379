//! A self-encrypting medium: every 512-byte unit is stored encrypted with AES-256-XTS under a media key of the
//! logical unit's own, the unit's number as the tweak (IEEE 1619-2007, the mode self-encrypting drives use). SANITIZE
//! CRYPTOGRAPHIC ERASE (SBC-4 §4.11) replaces the key: everything written under the old key then reads back as
//! unspecified data, without one block of the medium being rewritten. `docs/scsi-features.md` ("CRYPTOGRAPHIC
//! ERASE") describes it.
//!
//! Thin provisioning stays: a unit of zeros is stored as zeros (not encrypted) and zeros on the medium read as
//! zeros, so UNMAP, WRITE SAME with UNMAP, WRITE_ZEROES and holes in an image behave as on a plain disk. The medium
//! shows which units hold zeros; a real drive hides that, this model does not.
//!
//! The key lives in a file beside the image (`<image>.key`, 64 bytes, mode 0600), or only in memory for a RAM disk:
//! an image without its key is unreadable, as a drive's platters are without the drive. The key is written to a new
//! file, synced, and renamed over the old one before the new key encrypts anything.

use super::{Backend, BackendError};
use aes::cipher::KeyInit;
use aes::Aes256;
use parking_lot::RwLock;
use rand::RngCore;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use xts_mode::{get_tweak_default, Xts128};

/// The encryption unit: the smallest logical block the disk offers.
pub const UNIT: usize = 512;
/// Two AES-256 keys: the data key and the tweak key.
const KEY_LEN: usize = 64;

/// A backend whose medium is encrypted under a replaceable key.
pub struct EncryptedBackend {
    inner: Arc<dyn Backend>,
    /// Readers encrypt and decrypt under the read lock; a crypto erase swaps the key under the write lock, so no
    /// transfer mixes two keys.
    cipher: RwLock<Xts128<Aes256>>,
    key_file: Option<PathBuf>,
}

fn cipher(key: &[u8; KEY_LEN]) -> Xts128<Aes256> {
    let data = Aes256::new_from_slice(&key[..32]).expect("32-byte AES key");
    let tweak = Aes256::new_from_slice(&key[32..]).expect("32-byte AES key");
    Xts128::new(data, tweak)
}

fn fresh_key() -> [u8; KEY_LEN] {
    let mut key = [0u8; KEY_LEN];
    rand::rngs::OsRng.fill_bytes(&mut key);
    key
}

/// Write `key` to `path` so that a crash leaves either the old key or the new one: a temporary file, synced,
/// renamed over `path`, the directory synced.
fn store_key(path: &Path, key: &[u8; KEY_LEN]) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("key-new");
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    f.write_all(key)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::File::open(dir)?.sync_all()
}

fn unaligned() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, "an encrypted medium is read and written in whole 512-byte units")
}

impl EncryptedBackend {
    /// Encrypt `inner` under the key in `key_file`, creating the file with a new key if it does not exist; `None`:
    /// a key that lives only as long as this value (a RAM disk).
    pub fn new(inner: Arc<dyn Backend>, key_file: Option<&Path>) -> Result<Self, BackendError> {
        if !inner.size().is_multiple_of(UNIT as u64) {
            return Err(BackendError::Encryption(format!(
                "an encrypted medium holds whole {UNIT}-byte units; {} bytes is not one",
                inner.size()
            )));
        }
        let key = match key_file {
            None => fresh_key(),
            Some(path) => match std::fs::read(path) {
                Ok(bytes) => <[u8; KEY_LEN]>::try_from(bytes.as_slice()).map_err(|_| {
                    BackendError::Encryption(format!(
                        "{}: a media key file holds {KEY_LEN} bytes, this one {}",
                        path.display(),
                        bytes.len()
                    ))
                })?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    let key = fresh_key();
                    store_key(path, &key).map_err(|e| BackendError::Key(path.to_path_buf(), e))?;
                    key
                }
                Err(e) => return Err(BackendError::Key(path.to_path_buf(), e)),
            },
        };
        Ok(Self { inner, cipher: RwLock::new(cipher(&key)), key_file: key_file.map(Path::to_path_buf) })
    }

    fn check(&self, off: u64, len: usize) -> io::Result<()> {
        if !off.is_multiple_of(UNIT as u64) || !len.is_multiple_of(UNIT) {
            return Err(unaligned());
        }
        super::check_range(self.inner.size(), off, len as u64)
    }
}

fn is_zero(b: &[u8]) -> bool {
    b.iter().all(|&x| x == 0)
}

impl Backend for EncryptedBackend {
    fn size(&self) -> u64 {
        self.inner.size()
    }

    fn read_at(&self, off: u64, buf: &mut [u8]) -> io::Result<()> {
        self.check(off, buf.len())?;
        let cipher = self.cipher.read();
        self.inner.read_at(off, buf)?;
        let first = u128::from(off / UNIT as u64);
        for (i, unit) in buf.chunks_exact_mut(UNIT).enumerate() {
            if !is_zero(unit) {
                cipher.decrypt_sector(unit, get_tweak_default(first + i as u128));
            }
        }
        Ok(())
    }

    fn write_at(&self, off: u64, data: &[u8]) -> io::Result<()> {
        self.check(off, data.len())?;
        let mut sealed = data.to_vec();
        let cipher = self.cipher.read();
        let first = u128::from(off / UNIT as u64);
        for (i, unit) in sealed.chunks_exact_mut(UNIT).enumerate() {
            if !is_zero(unit) {
                cipher.encrypt_sector(unit, get_tweak_default(first + i as u128));
            }
        }
        self.inner.write_at(off, &sealed)
    }

    fn flush(&self) -> io::Result<()> {
        self.inner.flush()
    }

    fn discard(&self, off: u64, len: u64) -> io::Result<()> {
        self.inner.discard(off, len)
    }

    fn write_zeroes(&self, off: u64, len: u64) -> io::Result<()> {
        self.inner.write_zeroes(off, len)
    }

    fn is_allocated(&self, off: u64, len: u64) -> io::Result<bool> {
        self.inner.is_allocated(off, len)
    }

    fn allocation_run(&self, off: u64, max: u64) -> io::Result<(bool, u64)> {
        self.inner.allocation_run(off, max)
    }

    fn can_crypto_erase(&self) -> bool {
        true
    }

    fn crypto_erase(&self) -> io::Result<()> {
        let mut cipher = self.cipher.write();
        let key = fresh_key();
        if let Some(path) = &self.key_file {
            store_key(path, &key)?;
        }
        *cipher = self::cipher(&key);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::RamBackend;

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) | 1).collect()
    }

    #[test]
    fn data_reads_back_and_is_not_stored_in_the_clear() {
        let ram = Arc::new(RamBackend::new(1 << 20));
        let enc = EncryptedBackend::new(ram.clone(), None).unwrap();
        let data = pattern(8 * UNIT, 7);
        enc.write_at(4096, &data).unwrap();
        let mut back = vec![0u8; data.len()];
        enc.read_at(4096, &mut back).unwrap();
        assert_eq!(back, data);
        let mut raw = vec![0u8; data.len()];
        ram.read_at(4096, &mut raw).unwrap();
        assert!(raw.chunks(UNIT).zip(data.chunks(UNIT)).all(|(r, d)| r != d), "every unit is stored encrypted");
        // The same plaintext in two places is stored differently (the tweak is the unit's number).
        enc.write_at(0, &data[..UNIT]).unwrap();
        enc.write_at(UNIT as u64, &data[..UNIT]).unwrap();
        let mut two = vec![0u8; 2 * UNIT];
        ram.read_at(0, &mut two).unwrap();
        assert_ne!(two[..UNIT], two[UNIT..]);
    }

    #[test]
    fn zeros_stay_zeros_on_the_medium_and_holes_read_as_zeros() {
        let ram = Arc::new(RamBackend::new(1 << 20));
        let enc = EncryptedBackend::new(ram.clone(), None).unwrap();
        let mut back = vec![0xFFu8; 4 * UNIT];
        enc.read_at(0, &mut back).unwrap();
        assert!(is_zero(&back), "an unwritten medium reads as zeros");
        let mut data = pattern(4 * UNIT, 3);
        data[UNIT..2 * UNIT].fill(0);
        enc.write_at(0, &data).unwrap();
        let mut raw = vec![0u8; 4 * UNIT];
        ram.read_at(0, &mut raw).unwrap();
        assert!(is_zero(&raw[UNIT..2 * UNIT]) && !is_zero(&raw[..UNIT]));
        enc.read_at(0, &mut back).unwrap();
        assert_eq!(back, data);
        enc.discard(0, UNIT as u64).unwrap();
        enc.read_at(0, &mut back[..UNIT]).unwrap();
        assert!(is_zero(&back[..UNIT]), "a discarded unit reads as zeros");
    }

    #[test]
    fn crypto_erase_leaves_nothing_of_the_old_data_readable() {
        let ram = Arc::new(RamBackend::new(1 << 20));
        let enc = EncryptedBackend::new(ram, None).unwrap();
        let data = pattern(256 * UNIT, 0x61);
        enc.write_at(0, &data).unwrap();
        enc.crypto_erase().unwrap();
        let mut back = vec![0u8; data.len()];
        enc.read_at(0, &mut back).unwrap();
        assert!(back.chunks(UNIT).zip(data.chunks(UNIT)).all(|(b, d)| b != d), "no unit survived the erase");
        // New writes work under the new key.
        enc.write_at(0, &data).unwrap();
        enc.read_at(0, &mut back).unwrap();
        assert_eq!(back, data);
    }

    #[test]
    fn the_key_file_keeps_the_data_readable_across_opens_and_an_erase_replaces_it() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("disk.key");
        let ram: Arc<dyn Backend> = Arc::new(RamBackend::new(1 << 20));
        let data = pattern(16 * UNIT, 9);
        {
            let enc = EncryptedBackend::new(ram.clone(), Some(&key)).unwrap();
            enc.write_at(8192, &data).unwrap();
        }
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
        let first_key = std::fs::read(&key).unwrap();
        let enc = EncryptedBackend::new(ram.clone(), Some(&key)).unwrap();
        let mut back = vec![0u8; data.len()];
        enc.read_at(8192, &mut back).unwrap();
        assert_eq!(back, data, "the same key file opens the same data");
        enc.crypto_erase().unwrap();
        assert_ne!(std::fs::read(&key).unwrap(), first_key, "the erase replaced the stored key");
        drop(enc);
        let enc = EncryptedBackend::new(ram, Some(&key)).unwrap();
        enc.read_at(8192, &mut back).unwrap();
        assert_ne!(back, data, "reopened after the erase, the old data stays unreadable");
    }

    #[test]
    fn bad_key_files_and_unaligned_io_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("short.key");
        std::fs::write(&key, [1u8; 10]).unwrap();
        let ram: Arc<dyn Backend> = Arc::new(RamBackend::new(1 << 20));
        assert!(matches!(EncryptedBackend::new(ram.clone(), Some(&key)), Err(BackendError::Encryption(_))));
        let enc = EncryptedBackend::new(ram, None).unwrap();
        assert_eq!(enc.write_at(100, &[1u8; UNIT]).unwrap_err().kind(), io::ErrorKind::InvalidInput);
        assert_eq!(enc.read_at(0, &mut [0u8; 100]).unwrap_err().kind(), io::ErrorKind::InvalidInput);
        assert!(enc.write_at((1 << 20) - UNIT as u64, &[1u8; 2 * UNIT]).is_err(), "past the end");
    }
}
