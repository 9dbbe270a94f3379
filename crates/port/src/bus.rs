//! What the port driver sees of an HBA: I/O ports, an interrupt line and the device side of a DMA channel.
//!
//! The port routes the miniport's `ScsiPortRead/WritePort*` calls here and services the HBA's DREQ through the system
//! DMA controller; it never looks inside the model.

use std::time::Instant;

/// Width of a port access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoWidth {
    Byte,
    Word,
    Dword,
}

/// A host adapter card on the ISA bus.
pub trait HbaHardware: hal::DmaDevice + Send {
    /// A read from one of the card's I/O ports (the value is truncated to `width`).
    fn io_read(&mut self, port: u16, width: IoWidth) -> u32;
    /// A write to one of the card's I/O ports.
    fn io_write(&mut self, port: u16, width: IoWidth, value: u32);
    /// Level of the card's interrupt line.
    fn irq(&self) -> bool;
    /// The next moment the card has something to do by itself (a timer, a stalled transfer resuming), if any.
    fn next_deadline(&self) -> Option<Instant> {
        None
    }
    /// Let the card's time-driven behaviour run up to `now`.
    fn advance(&mut self, _now: Instant) {}
    /// The port hands the card a way to wake its engine when something happens away from the engine thread (a
    /// disconnected target finished its work and wants to reselect): the card calls it, then reports the event through
    /// [`next_deadline`](Self::next_deadline) and [`advance`](Self::advance).
    fn set_waker(&mut self, _waker: Waker) {}
    /// Work the card has going away from the engine thread that will end by itself (a disconnected target still
    /// working): the engine's virtual clock must not jump to an SRB's timeout past it.
    fn busy(&self) -> bool {
        false
    }
}

/// Wakes an adapter's engine thread from another thread.
pub type Waker = std::sync::Arc<dyn Fn() + Send + Sync>;
