//! The class driver's one retry policy: how a finished SRB is judged (done, retry after a delay, or fail with a typed
//! error), and how many retries one SRB gets. Every command the class driver sends — the pieces of a read or write,
//! and the small commands (INQUIRY, READ CAPACITY, SYNCHRONIZE CACHE, UNMAP, WRITE SAME) — goes through it.
//!
//! Retried: a unit attention (after a reset or a capacity change, they come in bursts), NOT READY "becoming ready"
//! (04h/01h and the other 04h qualifiers except 04h/02h, which needs an initializing command the class driver does not
//! send), ABORTED COMMAND, a CHECK CONDITION without valid sense, target BUSY and TASK SET FULL, an adapter BUSY, and
//! what the port or the bus ended without a device answer (bus reset, timeout, abort, flushed queue, unexpected bus
//! free, parity error). Done: GOOD, RECOVERED ERROR and NO SENSE (the command succeeded), and a short data-in transfer
//! for a command whose allocation length is only an upper bound. Everything else fails at once.

use crate::ClassError;
use port::{scsi_status, Srb, SrbStatus};
use scsi_proto::{AscAscq, Sense, SenseKey};
use std::time::Duration;

/// How many times a retryable failure is retried before the request fails (classpnp's MAXIMUM_RETRIES is 4; unit
/// attentions after a reset come in bursts, so a few more).
pub const MAX_RETRIES: u32 = 8;

/// What to do with a finished SRB.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// It succeeded.
    Done,
    /// Send it again after `delay`; `why` names the failure for the error if retries run out.
    Retry { why: String, delay: Duration },
    /// It failed for good.
    Fail(ClassError),
}

/// The retry policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries one SRB gets before its request fails with [`ClassError::RetriesExhausted`].
    pub max_retries: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { max_retries: MAX_RETRIES }
    }
}

impl RetryPolicy {
    /// What to do with `srb`, which asked for `asked` bytes and was already retried `retries` times. `short_ok`: a
    /// command whose data-in may be shorter than asked (an allocation length), so an underrun is success.
    pub fn decide(&self, srb: &Srb, asked: u32, short_ok: bool, retries: u32) -> Verdict {
        match judge(srb, asked, short_ok) {
            Verdict::Retry { why, .. } if retries >= self.max_retries => {
                Verdict::Fail(ClassError::RetriesExhausted { retries, last: why })
            }
            v => v,
        }
    }
}

fn retry(why: impl Into<String>, delay: Duration) -> Verdict {
    Verdict::Retry { why: why.into(), delay }
}

/// Judge one finished SRB, retries aside.
pub fn judge(srb: &Srb, asked: u32, short_ok: bool) -> Verdict {
    let status = srb.srb_status.status();
    if status == SrbStatus::SUCCESS {
        return Verdict::Done;
    }
    if srb.scsi_status == scsi_status::CHECK_CONDITION || srb.scsi_status == scsi_status::COMMAND_TERMINATED {
        let Some(s) = srb.srb_status.autosense_valid().then(|| Sense::parse(srb.sense())).flatten() else {
            return retry("CHECK CONDITION without sense", Duration::ZERO);
        };
        let code = s.code();
        return match s.key {
            SenseKey::RecoveredError | SenseKey::NoSense => Verdict::Done,
            SenseKey::UnitAttention => retry(format!("unit attention {:02x}/{:02x}", s.asc, s.ascq), Duration::ZERO),
            // Every LOGICAL UNIT NOT READY but "initializing command required", which the class driver never sends.
            SenseKey::NotReady if code.is_not_ready() && code != AscAscq::NOT_READY_INIT_REQUIRED => {
                retry("not ready, becoming ready", Duration::from_millis(10))
            }
            SenseKey::AbortedCommand => retry("aborted command", Duration::ZERO),
            SenseKey::MediumError => Verdict::Fail(ClassError::Medium { lba: s.info, code }),
            SenseKey::IllegalRequest => Verdict::Fail(ClassError::IllegalRequest { code }),
            SenseKey::DataProtect => Verdict::Fail(ClassError::WriteProtected),
            SenseKey::Miscompare => Verdict::Fail(ClassError::Miscompare),
            key => Verdict::Fail(ClassError::Sense { key, code }),
        };
    }
    if srb.scsi_status == scsi_status::RESERVATION_CONFLICT {
        return Verdict::Fail(ClassError::ReservationConflict);
    }
    if srb.scsi_status == scsi_status::BUSY || srb.scsi_status == scsi_status::QUEUE_FULL {
        return retry("target busy", Duration::from_millis(5));
    }
    match status {
        SrbStatus::DATA_OVERRUN if short_ok => Verdict::Done,
        SrbStatus::DATA_OVERRUN => Verdict::Fail(ClassError::ShortTransfer { moved: srb.data_transfer_length, asked }),
        SrbStatus::BUSY => retry("adapter busy", Duration::from_millis(5)),
        SrbStatus::BUS_RESET
        | SrbStatus::TIMEOUT
        | SrbStatus::COMMAND_TIMEOUT
        | SrbStatus::REQUEST_FLUSHED
        | SrbStatus::ABORTED
        | SrbStatus::UNEXPECTED_BUS_FREE
        | SrbStatus::PARITY_ERROR => retry(format!("SRB {:?}", srb.srb_status), Duration::from_millis(1)),
        _ => Verdict::Fail(ClassError::Srb { status: srb.srb_status, scsi_status: srb.scsi_status }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use port::LuAddress;
    use scsi_proto::opcode::READ_10;

    const CC: u8 = scsi_status::CHECK_CONDITION;

    /// Sense with `key` and `code`, INFORMATION 42, in fixed format.
    fn sense(key: SenseKey, code: AscAscq) -> Option<Sense> {
        Some(Sense::new(key, code).with_info(42))
    }

    /// A finished SRB: SRB status, SCSI status, and its autosense when given (in the format the sense says).
    fn srb(status: SrbStatus, scsi: u8, sense: Option<Sense>) -> Srb {
        let mut s = Srb::execute_scsi(LuAddress { path_id: 0, target_id: 0, lun: 0 }, &[READ_10]);
        s.srb_status = status;
        s.scsi_status = scsi;
        s.data_transfer_length = 512;
        if let Some(sense) = sense {
            let b = sense.to_bytes();
            s.sense_info_buffer[..b.len()].copy_from_slice(&b);
            s.sense_info_buffer_length = b.len() as u8;
            s.srb_status.0 |= SrbStatus::AUTOSENSE_VALID;
        }
        s
    }

    #[derive(Debug, PartialEq, Eq)]
    enum Want {
        Done,
        Retry(Duration),
        Fail(ClassError),
    }

    fn kind(v: Verdict) -> Want {
        match v {
            Verdict::Done => Want::Done,
            Verdict::Retry { delay, .. } => Want::Retry(delay),
            Verdict::Fail(e) => Want::Fail(e),
        }
    }

    #[test]
    fn each_status_and_sense_is_judged_as_the_policy_says() {
        use AscAscq as C;
        use SenseKey as K;
        use Want::*;
        let ms = Duration::from_millis;
        let zero = Duration::ZERO;
        let error = SrbStatus::ERROR;
        let descriptor = |k, c| sense(k, c).map(|s| s.with_descriptor(true));
        #[rustfmt::skip]
        let table: Vec<(&str, Srb, bool, Want)> = vec![
            ("good", srb(SrbStatus::SUCCESS, 0, None), false, Done),
            ("recovered error", srb(error, CC, sense(K::RecoveredError, C::RECOVERED_DATA_WITH_RETRIES)), false, Done),
            ("no sense", srb(error, CC, sense(K::NoSense, C::NO_ADDITIONAL)), false, Done),
            ("unit attention", srb(error, CC, sense(K::UnitAttention, C::POWER_ON_RESET)), false, Retry(zero)),
            ("becoming ready", srb(error, CC, sense(K::NotReady, C::NOT_READY_BECOMING_READY)), false, Retry(ms(10))),
            ("needs an initializing command", srb(error, CC, sense(K::NotReady, C::NOT_READY_INIT_REQUIRED)), false,
                Fail(ClassError::Sense { key: K::NotReady, code: C::NOT_READY_INIT_REQUIRED })),
            ("medium not present", srb(error, CC, sense(K::NotReady, C::MEDIUM_NOT_PRESENT)), false,
                Fail(ClassError::Sense { key: K::NotReady, code: C::MEDIUM_NOT_PRESENT })),
            ("aborted command", srb(error, CC, sense(K::AbortedCommand, C::SCSI_PARITY_ERROR)), false, Retry(zero)),
            ("medium error", srb(error, CC, sense(K::MediumError, C::UNRECOVERED_READ_ERROR)), false,
                Fail(ClassError::Medium { lba: Some(42), code: C::UNRECOVERED_READ_ERROR })),
            ("medium error, descriptor sense", srb(error, CC, descriptor(K::MediumError, C::WRITE_ERROR)), false,
                Fail(ClassError::Medium { lba: Some(42), code: C::WRITE_ERROR })),
            ("illegal request", srb(error, CC, sense(K::IllegalRequest, C::INVALID_COMMAND_OPCODE)), false,
                Fail(ClassError::IllegalRequest { code: C::INVALID_COMMAND_OPCODE })),
            ("data protect", srb(error, CC, sense(K::DataProtect, C::WRITE_PROTECTED)), false,
                Fail(ClassError::WriteProtected)),
            ("miscompare", srb(error, CC, sense(K::Miscompare, C::MISCOMPARE_DURING_VERIFY)), false,
                Fail(ClassError::Miscompare)),
            ("hardware error", srb(error, CC, sense(K::HardwareError, C::INTERNAL_TARGET_FAILURE)), false,
                Fail(ClassError::Sense { key: K::HardwareError, code: C::INTERNAL_TARGET_FAILURE })),
            ("unit attention, descriptor sense", srb(error, CC, descriptor(K::UnitAttention, C::CAPACITY_DATA_CHANGED)),
                false, Retry(zero)),
            ("check condition without sense", srb(error, CC, None), false, Retry(zero)),
            ("command terminated", srb(error, scsi_status::COMMAND_TERMINATED, sense(K::UnitAttention, C::CAPACITY_DATA_CHANGED)),
                false, Retry(zero)),
            ("reservation conflict", srb(error, scsi_status::RESERVATION_CONFLICT, None), false,
                Fail(ClassError::ReservationConflict)),
            ("target busy", srb(error, scsi_status::BUSY, None), false, Retry(ms(5))),
            ("task set full", srb(error, scsi_status::QUEUE_FULL, None), false, Retry(ms(5))),
            ("adapter busy", srb(SrbStatus::BUSY, 0, None), false, Retry(ms(5))),
            ("bus reset", srb(SrbStatus::BUS_RESET, 0, None), false, Retry(ms(1))),
            ("port timeout", srb(SrbStatus::TIMEOUT, 0, None), false, Retry(ms(1))),
            ("command timeout", srb(SrbStatus::COMMAND_TIMEOUT, 0, None), false, Retry(ms(1))),
            ("flushed", srb(SrbStatus(SrbStatus::REQUEST_FLUSHED.0 | SrbStatus::QUEUE_FROZEN), 0, None), false,
                Retry(ms(1))),
            ("aborted", srb(SrbStatus::ABORTED, 0, None), false, Retry(ms(1))),
            ("unexpected bus free", srb(SrbStatus::UNEXPECTED_BUS_FREE, 0, None), false, Retry(ms(1))),
            ("parity error", srb(SrbStatus::PARITY_ERROR, 0, None), false, Retry(ms(1))),
            ("short read", srb(SrbStatus::DATA_OVERRUN, 0, None), false,
                Fail(ClassError::ShortTransfer { moved: 512, asked: 4096 })),
            ("short data-in under an allocation length", srb(SrbStatus::DATA_OVERRUN, 0, None), true, Done),
            ("selection timeout", srb(SrbStatus::SELECTION_TIMEOUT, 0, None), false,
                Fail(ClassError::Srb { status: SrbStatus::SELECTION_TIMEOUT, scsi_status: 0 })),
            ("verifier refusal", srb(SrbStatus::INTERNAL_ERROR, 0, None), false,
                Fail(ClassError::Srb { status: SrbStatus::INTERNAL_ERROR, scsi_status: 0 })),
            ("no adapter", srb(SrbStatus::NO_HBA, 0, None), false,
                Fail(ClassError::Srb { status: SrbStatus::NO_HBA, scsi_status: 0 })),
        ];
        let policy = RetryPolicy::default();
        for (name, s, short_ok, want) in table {
            assert_eq!(kind(policy.decide(&s, 4096, short_ok, 0)), want, "{name}");
        }
    }

    #[test]
    fn sense_cut_short_by_the_buffer_is_judged_by_its_key() {
        // Eight bytes of fixed sense: the key is there, ASC/ASCQ are not.
        let mut s = srb(SrbStatus::ERROR, CC, sense(SenseKey::MediumError, AscAscq::UNRECOVERED_READ_ERROR));
        s.sense_info_buffer_length = 8;
        assert_eq!(
            RetryPolicy::default().decide(&s, 512, false, 0),
            Verdict::Fail(ClassError::Medium { lba: Some(42), code: AscAscq::NO_ADDITIONAL })
        );
    }

    #[test]
    fn retries_run_out_after_max_retries_and_say_why() {
        let policy = RetryPolicy { max_retries: 3 };
        let ua = srb(SrbStatus::ERROR, CC, sense(SenseKey::UnitAttention, AscAscq::POWER_ON_RESET));
        for retries in 0..3 {
            assert!(matches!(policy.decide(&ua, 512, false, retries), Verdict::Retry { .. }), "{retries}");
        }
        assert_eq!(
            policy.decide(&ua, 512, false, 3),
            Verdict::Fail(ClassError::RetriesExhausted { retries: 3, last: "unit attention 29/00".into() })
        );
        // A failure that is not retried fails the same way whatever the count.
        let medium = srb(SrbStatus::ERROR, CC, sense(SenseKey::MediumError, AscAscq::UNRECOVERED_READ_ERROR));
        assert!(matches!(policy.decide(&medium, 512, false, 0), Verdict::Fail(ClassError::Medium { .. })));
        assert_eq!(policy.decide(&srb(SrbStatus::SUCCESS, 0, None), 512, false, 3), Verdict::Done);
    }
}
