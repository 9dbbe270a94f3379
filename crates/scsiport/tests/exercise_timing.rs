//! `scsiport exercise --timing PRESET --json`: the modelled machine's DMA throughput next to the wall-clock run.

use std::process::Command;

fn exercise(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_scsiport"))
        .args(["exercise", "--size", "16MiB", "--block", "256KiB"])
        .args(args)
        .output()
        .expect("scsiport runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn pc_at_timing_reports_virtual_throughput_per_width_and_mode() {
    let (code, stdout, stderr) = exercise(&["--timing", "pc-at-8mhz", "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("one JSON object");
    assert_eq!(v["verified"], true);
    let t = &v["timing"];
    assert_eq!(t["preset"], "pc-at-8mhz");
    // The exercise ran on channel 5 in demand mode: 32 MiB of data (and the few bytes of the disk's INQUIRY and
    // READ CAPACITY) moved at the 16-bit demand rate.
    let rate = t["dma_virtual_kib_per_s"].as_f64().unwrap();
    let secs = t["dma_virtual_s"].as_f64().unwrap();
    let kib = rate * secs;
    assert!((32768.0..32769.0).contains(&kib), "{kib} KiB: {t}");
    let modes = t["modes"].as_array().unwrap();
    assert_eq!(modes.len(), 6);
    let demand16 = modes.iter().find(|m| m["width_bits"] == 16 && m["mode"] == "demand").unwrap();
    let table_rate = demand16["virtual_kib_per_s"].as_f64().unwrap();
    assert!((rate / table_rate - 1.0).abs() < 0.01, "exercise {rate} vs table {table_rate}");
    for m in modes {
        assert!(m["virtual_s"].as_f64().unwrap() > 0.0 && m["virtual_kib_per_s"].as_f64().unwrap() > 0.0);
    }
    // The SCSI bus (5 MB/s) outruns a 2 MB/s DMA channel: the data phase goes at the DMA's pace, and the
    // selection, command and status phases of every SRB add to it.
    let (scsi, scsi_data) = (t["scsi_virtual_s"].as_f64().unwrap(), t["scsi_data_virtual_s"].as_f64().unwrap());
    assert!(scsi_data > 0.0 && scsi > scsi_data && scsi_data < secs, "{t}");
    let total = t["virtual_s"].as_f64().unwrap();
    assert!((total - (secs + scsi - scsi_data)).abs() < 1e-9, "{t}");
    assert!(t["virtual_kib_per_s"].as_f64().unwrap() < rate);
}

#[test]
fn eisa_timing_runs_the_exercise_on_an_eisa_machine() {
    let (code, stdout, stderr) = exercise(&["--timing", "eisa-8mhz", "--json", "--placement", "above16m"]);
    assert_eq!(code, 0, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("one JSON object");
    assert_eq!(v["bounced_bytes"], 0, "EISA reaches buffers above 16 MiB");
    assert_eq!(v["timing"]["modes"].as_array().unwrap().len(), 36);
}

#[test]
fn without_timing_there_is_no_timing_object() {
    let (code, stdout, stderr) = exercise(&["--json"]);
    assert_eq!(code, 0, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert!(v.get("timing").is_none());
}

#[test]
fn an_unknown_preset_is_an_error() {
    let (code, _, stderr) = exercise(&["--timing", "pc-xt"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("no such machine"), "{stderr}");
}
