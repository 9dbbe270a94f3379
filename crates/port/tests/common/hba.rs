//! A small host adapter for port tests: a handful of registers, DREQ and an interrupt line, moving data between the
//! DMA channel and a RAM vector that stands for the disk.
//!
//! Registers (offsets from the I/O base):
//! - `CMD` (write): `SETUP_IN` / `SETUP_OUT` arm a transfer of `COUNT` bytes at disk byte `POSITION` without moving
//!   data; `GO` lets the card assert DREQ; `ACK` drops the interrupt; `STOP` ends the transfer; `RESET` clears all;
//!   `NO_DATA` runs a command without a data phase (interrupt at once).
//! - `STATUS` (read): `ST_IRQ`, `ST_DONE` (count reached 0), `ST_ERROR`.
//! - `POSITION` (dword, write): disk byte offset. `COUNT` (dword, read/write): bytes left in the armed transfer.

use parking_lot::Mutex;
use port::{HbaHardware, IoWidth};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const PORTS: u16 = 16;
pub const CMD: u16 = 0;
pub const STATUS: u16 = 1;
pub const POSITION: u16 = 4;
pub const COUNT: u16 = 8;

pub const SETUP_IN: u8 = 1;
pub const SETUP_OUT: u8 = 2;
pub const GO: u8 = 3;
pub const ACK: u8 = 4;
pub const STOP: u8 = 5;
pub const RESET: u8 = 6;
pub const NO_DATA: u8 = 7;

pub const ST_IRQ: u8 = 0x01;
pub const ST_DONE: u8 = 0x02;
pub const ST_ERROR: u8 = 0x04;

/// What a test can do to the card from outside.
#[derive(Default)]
pub struct Knobs {
    /// The card never asserts DREQ: a transfer hangs until the port aborts or resets.
    pub stall: bool,
    /// The next `SETUP_*` fails at once with an interrupt (the command ends before its data phase).
    pub fail_next_setup: bool,
    /// Commands the card received, in order.
    pub commands: Vec<u8>,
}

/// The card's state: shared with the test through [`TestHba::disk`] and [`TestHba::knobs`].
pub struct TestHba {
    base: u16,
    disk: Arc<Mutex<Vec<u8>>>,
    knobs: Arc<Mutex<Knobs>>,
    position: u32,
    count: u32,
    /// Direction of the armed transfer: true = device to memory.
    to_memory: bool,
    armed: bool,
    go: bool,
    irq: bool,
    error: bool,
}

impl TestHba {
    pub fn new(base: u16, disk: Arc<Mutex<Vec<u8>>>, knobs: Arc<Mutex<Knobs>>) -> Self {
        TestHba {
            base,
            disk,
            knobs,
            position: 0,
            count: 0,
            to_memory: false,
            armed: false,
            go: false,
            irq: false,
            error: false,
        }
    }

    fn finish(&mut self, error: bool) {
        self.armed = false;
        self.go = false;
        self.error = error;
        self.irq = true;
    }

    fn command(&mut self, c: u8) {
        self.knobs.lock().commands.push(c);
        match c {
            SETUP_IN | SETUP_OUT => {
                self.to_memory = c == SETUP_IN;
                self.error = false;
                let end = self.position as usize + self.count as usize;
                if std::mem::take(&mut self.knobs.lock().fail_next_setup) || end > self.disk.lock().len() {
                    self.finish(true);
                } else {
                    self.armed = true;
                    self.go = false;
                }
            }
            GO if self.armed => self.go = true,
            ACK => self.irq = false,
            STOP => {
                self.armed = false;
                self.go = false;
            }
            RESET => {
                *self = TestHba::new(self.base, self.disk.clone(), self.knobs.clone());
            }
            NO_DATA => self.finish(false),
            _ => {}
        }
    }
}

impl hal::DmaDevice for TestHba {
    fn dreq(&self) -> bool {
        self.armed && self.go && self.count > 0 && !self.knobs.lock().stall
    }

    fn dma_write(&mut self, data: &[u8]) -> usize {
        if !self.dreq() || self.to_memory {
            return 0;
        }
        let n = data.len().min(self.count as usize);
        let at = self.position as usize;
        self.disk.lock()[at..at + n].copy_from_slice(&data[..n]);
        self.advance(n);
        n
    }

    fn dma_read(&mut self, buf: &mut [u8]) -> usize {
        if !self.dreq() || !self.to_memory {
            return 0;
        }
        let n = buf.len().min(self.count as usize);
        let at = self.position as usize;
        buf[..n].copy_from_slice(&self.disk.lock()[at..at + n]);
        self.advance(n);
        n
    }

    fn terminal_count(&mut self) {
        // The channel ended the transfer before the card's count did: the card stops and interrupts.
        if self.armed {
            self.finish(self.count > 0);
        }
    }
}

impl TestHba {
    fn advance(&mut self, n: usize) {
        self.position += n as u32;
        self.count -= n as u32;
        if self.count == 0 {
            self.finish(false);
        }
    }
}

impl HbaHardware for TestHba {
    fn io_read(&mut self, port: u16, _width: IoWidth) -> u32 {
        match port.wrapping_sub(self.base) {
            STATUS => {
                let mut s = 0;
                if self.irq {
                    s |= ST_IRQ;
                }
                if self.count == 0 {
                    s |= ST_DONE;
                }
                if self.error {
                    s |= ST_ERROR;
                }
                u32::from(s)
            }
            COUNT => self.count,
            _ => 0xFF,
        }
    }

    fn io_write(&mut self, port: u16, _width: IoWidth, value: u32) {
        match port.wrapping_sub(self.base) {
            CMD => self.command(value as u8),
            POSITION => self.position = value,
            COUNT => self.count = value,
            _ => {}
        }
    }

    fn irq(&self) -> bool {
        self.irq
    }

    /// While stalled mid-transfer the card checks every millisecond whether it may go on (so a test that lifts the
    /// stall sees the transfer resume without another request waking the port).
    fn next_deadline(&self) -> Option<Instant> {
        (self.armed && self.go && self.knobs.lock().stall).then(|| Instant::now() + Duration::from_millis(1))
    }
}
