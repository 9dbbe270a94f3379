//! The header and the Rust side agree: a C program compiled against `include/scsiport/miniport.h` prints the size of
//! every structure and the offset of every field the header declares, and each must equal the Rust layout; the
//! header compiles with `-Wall -Wextra -Werror` as C99 and as C++.

use std::path::{Path, PathBuf};
use std::process::Command;

fn include_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../include")
}

fn compiler(name: &str) -> String {
    std::env::var(if name == "cc" { "CC" } else { "CXX" }).unwrap_or_else(|_| name.to_string())
}

fn compile(tool: &str, args: &[&str], src: &Path, out: &Path) {
    let o = Command::new(tool)
        .args(args)
        .arg("-I")
        .arg(include_dir())
        .arg(src)
        .arg("-o")
        .arg(out)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {tool} (a C compiler is needed to build C miniports): {e}"));
    assert!(o.status.success(), "{tool} {args:?} failed:\n{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn every_size_and_offset_matches() {
    let entries = miniport_c::ffi::layout();
    let mut src =
        String::from("#include <stdio.h>\n#include <stddef.h>\n#include <scsiport/miniport.h>\nint main(void) {\n");
    for e in &entries {
        if e.c_field.is_empty() {
            src += &format!("    printf(\"{s} %zu\\n\", sizeof({s}));\n", s = e.c_struct);
        } else {
            src += &format!("    printf(\"{s}.{f} %zu\\n\", offsetof({s}, {f}));\n", s = e.c_struct, f = e.c_field);
        }
    }
    src += "    return 0;\n}\n";
    let dir = tempfile::tempdir().unwrap();
    let c = dir.path().join("layout.c");
    std::fs::write(&c, src).unwrap();
    let exe = dir.path().join("layout");
    compile(&compiler("cc"), &["-std=c99", "-Wall", "-Wextra", "-Werror"], &c, &exe);
    let out = Command::new(&exe).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), entries.len());
    let mut mismatches = Vec::new();
    for (line, e) in lines.iter().zip(&entries) {
        let name = if e.c_field.is_empty() { e.c_struct.to_string() } else { format!("{}.{}", e.c_struct, e.c_field) };
        let (n, v) = line.rsplit_once(' ').unwrap();
        assert_eq!(n, name);
        let c: usize = v.parse().unwrap();
        if c != e.value {
            mismatches.push(format!("{name}: C {c}, Rust {}", e.value));
        }
    }
    assert!(mismatches.is_empty(), "layouts differ:\n{}", mismatches.join("\n"));
    // The DDK's 64-bit SRB: Cdb after a Reserved ULONG at 0x48, 88 bytes in all.
    let find = |s: &str, f: &str| entries.iter().find(|e| e.c_struct == s && e.c_field == f).unwrap().value;
    assert_eq!(find("SCSI_REQUEST_BLOCK", "Cdb"), 0x48);
    assert_eq!(find("SCSI_REQUEST_BLOCK", ""), 88);
}

#[test]
fn numeric_values_match_the_port() {
    use port::{SrbFlags, SrbFunction, SrbStatus};
    let checks: Vec<(&str, u64)> = vec![
        ("SRB_FUNCTION_EXECUTE_SCSI", SrbFunction::EXECUTE_SCSI.0 as u64),
        ("SRB_FUNCTION_IO_CONTROL", SrbFunction::IO_CONTROL.0 as u64),
        ("SRB_FUNCTION_RELEASE_QUEUE", SrbFunction::RELEASE_QUEUE.0 as u64),
        ("SRB_FUNCTION_SHUTDOWN", SrbFunction::SHUTDOWN.0 as u64),
        ("SRB_FUNCTION_FLUSH", SrbFunction::FLUSH.0 as u64),
        ("SRB_FUNCTION_ABORT_COMMAND", SrbFunction::ABORT_COMMAND.0 as u64),
        ("SRB_FUNCTION_RESET_BUS", SrbFunction::RESET_BUS.0 as u64),
        ("SRB_FUNCTION_RESET_DEVICE", SrbFunction::RESET_DEVICE.0 as u64),
        ("SRB_FUNCTION_FLUSH_QUEUE", SrbFunction::FLUSH_QUEUE.0 as u64),
        ("SRB_STATUS_PENDING", SrbStatus::PENDING.0 as u64),
        ("SRB_STATUS_SUCCESS", SrbStatus::SUCCESS.0 as u64),
        ("SRB_STATUS_ABORTED", SrbStatus::ABORTED.0 as u64),
        ("SRB_STATUS_ERROR", SrbStatus::ERROR.0 as u64),
        ("SRB_STATUS_BUSY", SrbStatus::BUSY.0 as u64),
        ("SRB_STATUS_INVALID_REQUEST", SrbStatus::INVALID_REQUEST.0 as u64),
        ("SRB_STATUS_SELECTION_TIMEOUT", SrbStatus::SELECTION_TIMEOUT.0 as u64),
        ("SRB_STATUS_BUS_RESET", SrbStatus::BUS_RESET.0 as u64),
        ("SRB_STATUS_DATA_OVERRUN", SrbStatus::DATA_OVERRUN.0 as u64),
        ("SRB_STATUS_REQUEST_FLUSHED", SrbStatus::REQUEST_FLUSHED.0 as u64),
        ("SRB_STATUS_INTERNAL_ERROR", SrbStatus::INTERNAL_ERROR.0 as u64),
        ("SRB_STATUS_QUEUE_FROZEN", SrbStatus::QUEUE_FROZEN as u64),
        ("SRB_STATUS_AUTOSENSE_VALID", SrbStatus::AUTOSENSE_VALID as u64),
        ("SRB_FLAGS_QUEUE_ACTION_ENABLE", SrbFlags::QUEUE_ACTION_ENABLE.bits() as u64),
        ("SRB_FLAGS_DISABLE_AUTOSENSE", SrbFlags::DISABLE_AUTOSENSE.bits() as u64),
        ("SRB_FLAGS_DATA_IN", SrbFlags::DATA_IN.bits() as u64),
        ("SRB_FLAGS_DATA_OUT", SrbFlags::DATA_OUT.bits() as u64),
        ("SRB_FLAGS_UNSPECIFIED_DIRECTION", SrbFlags::UNSPECIFIED_DIRECTION.bits() as u64),
        ("SRB_FLAGS_NO_QUEUE_FREEZE", SrbFlags::NO_QUEUE_FREEZE.bits() as u64),
        ("SRB_FLAGS_IS_ACTIVE", SrbFlags::IS_ACTIVE.bits() as u64),
        ("SRB_SIMPLE_TAG_REQUEST", port::queue_action::SIMPLE_TAG as u64),
        ("SRB_HEAD_OF_QUEUE_TAG_REQUEST", port::queue_action::HEAD_OF_QUEUE_TAG as u64),
        ("SRB_ORDERED_QUEUE_TAG_REQUEST", port::queue_action::ORDERED_QUEUE_TAG as u64),
        ("SP_UNTAGGED", port::SP_UNTAGGED as u64),
        ("SP_UNINITIALIZED_VALUE", port::SP_UNINITIALIZED_VALUE as u64),
        ("RequestComplete", miniport_c::ffi::notification::REQUEST_COMPLETE as u64),
        ("NextRequest", miniport_c::ffi::notification::NEXT_REQUEST as u64),
        ("NextLuRequest", miniport_c::ffi::notification::NEXT_LU_REQUEST as u64),
        ("ResetDetected", miniport_c::ffi::notification::RESET_DETECTED as u64),
        ("CallDisableInterrupts", miniport_c::ffi::notification::CALL_DISABLE_INTERRUPTS as u64),
        ("CallEnableInterrupts", miniport_c::ffi::notification::CALL_ENABLE_INTERRUPTS as u64),
        ("RequestTimerCall", miniport_c::ffi::notification::REQUEST_TIMER_CALL as u64),
        ("Isa", miniport_c::ffi::interface::ISA as u64),
        ("STATUS_REVISION_MISMATCH", miniport_c::ffi::status::REVISION_MISMATCH as u64),
        ("STATUS_NO_SUCH_DEVICE", miniport_c::ffi::status::NO_SUCH_DEVICE as u64),
    ];
    let mut src = String::from("#include <stdio.h>\n#include <scsiport/miniport.h>\nint main(void) {\n");
    for (name, _) in &checks {
        src += &format!("    printf(\"%llu\\n\", (unsigned long long)({name}));\n");
    }
    src += "    return 0;\n}\n";
    let dir = tempfile::tempdir().unwrap();
    let c = dir.path().join("values.c");
    std::fs::write(&c, src).unwrap();
    let exe = dir.path().join("values");
    compile(&compiler("cc"), &["-std=c99", "-Wall", "-Wextra", "-Werror"], &c, &exe);
    let text = String::from_utf8(Command::new(&exe).output().unwrap().stdout).unwrap();
    for ((name, want), got) in checks.iter().zip(text.lines()) {
        assert_eq!(got.parse::<u64>().unwrap(), *want, "{name}");
    }
}

#[test]
fn header_compiles_as_c99_and_as_cxx_without_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("use.c");
    // Every routine type and routine named once, so that a declaration the compiler rejects cannot hide.
    std::fs::write(
        &src,
        "#include <scsiport/miniport.h>\n\
         static BOOLEAN start(PVOID e, PSCSI_REQUEST_BLOCK s) { (void)e; return s->SrbStatus == SRB_STATUS_PENDING; }\n\
         int main(void) {\n\
           HW_INITIALIZATION_DATA d; PORT_CONFIGURATION_INFORMATION c; ACCESS_RANGE r; SCSI_PHYSICAL_ADDRESS a;\n\
           (void)d; (void)c; (void)r; a = ScsiPortConvertUlongToPhysicalAddress(0x330); (void)a.LowPart;\n\
           d.HwStartIo = start; (void)d.HwStartIo; (void)&ScsiPortNotification; (void)&ScsiPortIoMapTransfer;\n\
           (void)&ScsiPortFlushDma; (void)&DriverEntry; return 0;\n\
         }\n",
    )
    .unwrap();
    let obj = dir.path().join("use.o");
    compile(&compiler("cc"), &["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-c"], &src, &obj);
    compile(&compiler("c++"), &["-x", "c++", "-std=c++11", "-Wall", "-Wextra", "-Werror", "-c"], &src, &obj);
}
