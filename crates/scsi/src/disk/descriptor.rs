//! With D_SENSE set in the control mode page (SPC-4 §7.5.8) every sense this unit returns
//! is in descriptor format, including sense produced in the data phase. Wrapping only when
//! the bit is set keeps the usual path free of the extra call.

use crate::status::Outcome;
use crate::task::{Begin, DataInTask, DataOutTask};

fn fix(mut o: Outcome) -> Outcome {
    if let Some(s) = &mut o.sense {
        s.descriptor = true;
    }
    o
}

struct In(Box<dyn DataInTask>);
struct Out(Box<dyn DataOutTask>);

impl DataInTask for In {
    fn read(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), Outcome> {
        self.0.read(offset, buf).map_err(fix)
    }
    fn finish(self: Box<Self>, transferred: u64) -> Outcome {
        fix(self.0.finish(transferred))
    }
}

impl DataOutTask for Out {
    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), Outcome> {
        self.0.write(offset, data).map_err(fix)
    }
    fn finish(self: Box<Self>, transferred: u64) -> Outcome {
        fix(self.0.finish(transferred))
    }
}

pub(crate) fn wrap(b: Begin) -> Begin {
    match b {
        Begin::Complete(o) => Begin::Complete(fix(o)),
        Begin::DataIn { len, task } => Begin::DataIn { len, task: Box::new(In(task)) },
        Begin::DataOut { len, task } => Begin::DataOut { len, task: Box::new(Out(task)) },
    }
}
