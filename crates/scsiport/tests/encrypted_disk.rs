//! A self-encrypting disk through `scsiport serve` (`encryption = true`, `docs/scsi-features.md`): what an NBD client
//! writes is on the image only encrypted, reads back across a restart with the key file beside the image, and is gone
//! for good after SANITIZE CRYPTOGRAPHIC ERASE over iSCSI, which replaced the key file.

mod serve_common;

use serve_common::{pattern, run, tool, NbdClient, ServeOptions, Server, MIB};
use std::os::unix::fs::PermissionsExt;

fn start(dir: &std::path::Path, iscsi: bool) -> Server {
    let cfg = dir.join("enc.toml");
    std::fs::write(&cfg, "[[adapter]]\n[[adapter.disk]]\nencryption = true\n").expect("write config");
    let opts = ServeOptions {
        iscsi,
        extra: vec!["--config".into(), cfg.display().to_string()],
        ..ServeOptions::file(&dir.join("enc.img"), "64MiB")
    };
    Server::start(&opts)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn an_encrypted_disk_keeps_its_data_across_restarts_and_loses_it_to_a_crypto_erase() {
    let Some(iscsi_test) = tool("iscsi-test-cu") else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let img = dir.path().join("enc.img");
    let key = dir.path().join("enc.key");
    let data = pattern(MIB as usize, 0x5EC);

    let mut srv = start(dir.path(), false);
    {
        let mut c = NbdClient::connect(srv.nbd_port, "default").expect("connect");
        c.write(4 * MIB, &data, true).expect("write");
        c.flush().expect("flush");
        assert_eq!(c.read(4 * MIB, MIB as u32).expect("read"), data);
    }
    srv.signal(libc::SIGTERM);
    srv.wait_exit(30).expect("server exits on SIGTERM");
    assert_eq!(std::fs::metadata(&key).expect("key file").permissions().mode() & 0o777, 0o600);
    let raw = std::fs::read(&img).expect("read image");
    assert!(!contains(&raw, &data[..4096]), "the image holds the data in the clear");
    let first_key = std::fs::read(&key).expect("read key");

    // Restarted with the same key file: the data is there.
    let mut srv = start(dir.path(), true);
    {
        let mut c = NbdClient::connect(srv.nbd_port, "default").expect("connect");
        assert_eq!(c.read(4 * MIB, MIB as u32).expect("read"), data, "the data survived the restart");
    }
    // libiscsi's CRYPTO ERASE test over the full stack: it writes, erases and checks the blocks are wiped.
    let url = srv.iscsi_url();
    let out = run(300, &iscsi_test, &["-d", "-S", "-t", "SCSI.Sanitize.CryptoErase", &url]);
    assert!(out.ok && out.stdout.contains("passed"), "Sanitize.CryptoErase: {}\n{}", out.stdout, out.stderr);
    assert!(!out.stdout.contains("SKIPPED"), "CRYPTOGRAPHIC ERASE was not offered: {}", out.stdout);
    {
        let mut c = NbdClient::connect(srv.nbd_port, "default").expect("connect");
        let after = c.read(4 * MIB, MIB as u32).expect("read after the erase");
        assert!(
            after.chunks(512).zip(data.chunks(512)).all(|(a, d)| a != d),
            "a block written before the erase still reads back"
        );
    }
    srv.signal(libc::SIGTERM);
    srv.wait_exit(30).expect("server exits on SIGTERM");
    assert_ne!(std::fs::read(&key).expect("read key"), first_key, "the erase replaced the key file");
}
