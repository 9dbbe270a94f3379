use super::*;
use crate::option::OptionHeader;

fn caps(block_status: bool, read_only: bool) -> Capabilities {
    Capabilities {
        read_only,
        flush: true,
        fua: true,
        trim: true,
        write_zeroes: true,
        fast_zero: true,
        block_status,
        multi_conn: false,
        min_block: 512,
        preferred_block: 4096,
        max_block: 1 << 20,
    }
}

fn exports() -> Vec<ExportInfo> {
    let mk = |name: &str, bs: bool, ro: bool| {
        let c = caps(bs, ro);
        ExportInfo {
            name: name.into(),
            description: format!("{name} disk"),
            size: 1 << 30,
            block: BlockSizes::new(&c, 32 << 20),
            caps: c,
        }
    };
    vec![mk("default", true, false), mk("ro", false, true)]
}

fn fixed() -> ClientFlags {
    ClientFlags { fixed_newstyle: true, no_zeroes: true }
}

/// Splits option replies into (option, type, data).
fn replies(mut b: &[u8]) -> Vec<(u32, u32, Vec<u8>)> {
    let mut v = Vec::new();
    while !b.is_empty() {
        assert_eq!(&b[..8], &proto::OPTION_REPLY_MAGIC.to_be_bytes());
        let o = u32::from_be_bytes(b[8..12].try_into().unwrap());
        let t = u32::from_be_bytes(b[12..16].try_into().unwrap());
        let l = u32::from_be_bytes(b[16..20].try_into().unwrap()) as usize;
        v.push((o, t, b[20..20 + l].to_vec()));
        b = &b[20 + l..];
    }
    v
}

fn send(n: &mut Negotiation<'_>, option: u32, data: &[u8]) -> (Step, Vec<(u32, u32, Vec<u8>)>) {
    let mut out = Vec::new();
    let step = n.handle(OptionHeader { option, length: data.len() as u32 }, data, &mut out);
    (step, replies(&out))
}

fn name_and_u16s(name: &str, items: &[u16]) -> Vec<u8> {
    let mut d = (name.len() as u32).to_be_bytes().to_vec();
    d.extend_from_slice(name.as_bytes());
    d.extend_from_slice(&(items.len() as u16).to_be_bytes());
    for i in items {
        d.extend_from_slice(&i.to_be_bytes());
    }
    d
}

fn meta(name: &str, queries: &[&str]) -> Vec<u8> {
    let mut d = (name.len() as u32).to_be_bytes().to_vec();
    d.extend_from_slice(name.as_bytes());
    d.extend_from_slice(&(queries.len() as u32).to_be_bytes());
    for q in queries {
        d.extend_from_slice(&(q.len() as u32).to_be_bytes());
        d.extend_from_slice(q.as_bytes());
    }
    d
}

#[test]
fn greeting_advertises_fixed_newstyle_and_no_zeroes() {
    let g = greeting();
    assert_eq!(&g[..8], b"NBDMAGIC");
    assert_eq!(&g[8..16], b"IHAVEOPT");
    assert_eq!(u16::from_be_bytes([g[16], g[17]]), 3);
}

#[test]
fn unknown_option_gets_err_unsup_and_haggling_continues() {
    let ex = exports();
    let mut n = Negotiation::new(&ex, fixed(), HandshakeLimits::default());
    let (step, r) = send(&mut n, 0x1234, b"whatever");
    assert_eq!(step, Step::Continue);
    assert_eq!(r.len(), 1);
    assert_eq!((r[0].0, r[0].1), (0x1234, rep::ERR_UNSUP));
}

#[test]
fn list_names_every_export_then_acks() {
    let ex = exports();
    let mut n = Negotiation::new(&ex, fixed(), HandshakeLimits::default());
    let (_, r) = send(&mut n, opt::LIST, &[]);
    assert_eq!(r.len(), 3);
    assert_eq!(r[0].1, rep::SERVER);
    assert_eq!(&r[0].2[..4], &7u32.to_be_bytes());
    assert_eq!(&r[0].2[4..11], b"default");
    assert_eq!(&r[0].2[11..], b"default disk");
    assert_eq!(r[2].1, rep::ACK);
}

#[test]
fn go_sends_export_info_block_size_and_enters_transmission() {
    let ex = exports();
    let mut n = Negotiation::new(&ex, fixed(), HandshakeLimits::default());
    send(&mut n, opt::STRUCTURED_REPLY, &[]);
    let (step, r) = send(&mut n, opt::GO, &name_and_u16s("", &[info::NAME, info::BLOCK_SIZE]));
    let Step::Transmit(s) = step else { panic!("no transmission: {step:?}") };
    assert_eq!(s.export, 0);
    assert!(s.structured);
    assert!(!s.base_allocation);
    let infos: Vec<u16> = r.iter().filter(|x| x.1 == rep::INFO).map(|x| u16::from_be_bytes([x.2[0], x.2[1]])).collect();
    assert_eq!(infos, vec![info::EXPORT, info::NAME, info::BLOCK_SIZE]);
    let export = &r[0].2;
    assert_eq!(u64::from_be_bytes(export[2..10].try_into().unwrap()), 1 << 30);
    let flags = u16::from_be_bytes([export[10], export[11]]);
    assert_eq!(flags, s.flags);
    assert!(flags & tf::SEND_DF != 0 && flags & tf::READ_ONLY == 0);
    let bs = &r[2].2;
    assert_eq!(&bs[2..6], &512u32.to_be_bytes());
    assert_eq!(&bs[6..10], &4096u32.to_be_bytes());
    assert_eq!(&bs[10..14], &(1u32 << 20).to_be_bytes());
    assert_eq!(r.last().unwrap().1, rep::ACK);
}

#[test]
fn info_for_unknown_export_is_err_unknown_and_does_not_transmit() {
    let ex = exports();
    let mut n = Negotiation::new(&ex, fixed(), HandshakeLimits::default());
    let (step, r) = send(&mut n, opt::INFO, &name_and_u16s("nope", &[]));
    assert_eq!(step, Step::Continue);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].1, rep::ERR_UNKNOWN);
    let (step, _) = send(&mut n, opt::GO, &name_and_u16s("nope", &[]));
    assert_eq!(step, Step::Continue);
}

#[test]
fn read_only_export_advertises_read_only_and_no_write_features() {
    let ex = exports();
    let mut n = Negotiation::new(&ex, fixed(), HandshakeLimits::default());
    let (step, _) = send(&mut n, opt::GO, &name_and_u16s("ro", &[]));
    let Step::Transmit(s) = step else { panic!() };
    assert!(s.flags & tf::READ_ONLY != 0);
    assert_eq!(s.flags & (tf::SEND_TRIM | tf::SEND_WRITE_ZEROES | tf::SEND_FUA), 0);
    assert!(s.flags & tf::SEND_DF == 0, "DF needs structured replies");
}

#[test]
fn export_name_replies_size_flags_and_zeroes_unless_no_zeroes() {
    let ex = exports();
    for (no_zeroes, len) in [(true, 10), (false, 134)] {
        let client = ClientFlags { fixed_newstyle: true, no_zeroes };
        let mut n = Negotiation::new(&ex, client, HandshakeLimits::default());
        let mut out = Vec::new();
        let step = n.handle(OptionHeader { option: opt::EXPORT_NAME, length: 7 }, b"default", &mut out);
        assert!(matches!(step, Step::Transmit(_)));
        assert_eq!(out.len(), len);
        assert_eq!(&out[..8], &(1u64 << 30).to_be_bytes());
    }
}

#[test]
fn export_name_for_unknown_export_closes() {
    let ex = exports();
    let mut n = Negotiation::new(&ex, fixed(), HandshakeLimits::default());
    let mut out = Vec::new();
    let step = n.handle(OptionHeader { option: opt::EXPORT_NAME, length: 3 }, b"zzz", &mut out);
    assert_eq!(step, Step::Close);
    assert!(out.is_empty());
}

#[test]
fn set_meta_context_selects_base_allocation_for_that_export() {
    let ex = exports();
    let mut n = Negotiation::new(&ex, fixed(), HandshakeLimits::default());
    // Before structured replies: invalid.
    let (_, r) = send(&mut n, opt::SET_META_CONTEXT, &meta("default", &["base:allocation"]));
    assert_eq!(r[0].1, rep::ERR_INVALID);
    send(&mut n, opt::STRUCTURED_REPLY, &[]);
    let (_, r) = send(&mut n, opt::SET_META_CONTEXT, &meta("default", &["base:allocation", "x-y:z"]));
    assert_eq!(r.len(), 2);
    assert_eq!(r[0].1, rep::META_CONTEXT);
    assert_eq!(&r[0].2[..4], &BASE_ALLOCATION_ID.to_be_bytes());
    assert_eq!(&r[0].2[4..], b"base:allocation");
    assert_eq!(r[1].1, rep::ACK);
    let (step, _) = send(&mut n, opt::GO, &name_and_u16s("default", &[]));
    let Step::Transmit(s) = step else { panic!() };
    assert!(s.base_allocation);
}

#[test]
fn meta_context_set_for_another_export_does_not_carry_over() {
    let mut ex = exports();
    ex[1].caps.block_status = true;
    let mut n = Negotiation::new(&ex, fixed(), HandshakeLimits::default());
    send(&mut n, opt::STRUCTURED_REPLY, &[]);
    send(&mut n, opt::SET_META_CONTEXT, &meta("ro", &["base:allocation"]));
    let (step, _) = send(&mut n, opt::GO, &name_and_u16s("default", &[]));
    let Step::Transmit(s) = step else { panic!() };
    assert!(!s.base_allocation);
}

#[test]
fn list_meta_context_wildcard_lists_and_set_wildcard_selects_nothing() {
    let ex = exports();
    let mut n = Negotiation::new(&ex, fixed(), HandshakeLimits::default());
    send(&mut n, opt::STRUCTURED_REPLY, &[]);
    for q in [&[][..], &["base:"][..]] {
        let (_, r) = send(&mut n, opt::LIST_META_CONTEXT, &meta("default", q));
        assert_eq!(r.len(), 2, "{q:?}");
        assert_eq!(&r[0].2[..4], &0u32.to_be_bytes());
    }
    let (_, r) = send(&mut n, opt::SET_META_CONTEXT, &meta("default", &["base:"]));
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].1, rep::ACK);
    // A device without block status offers no context.
    let (_, r) = send(&mut n, opt::LIST_META_CONTEXT, &meta("ro", &[]));
    assert_eq!(r.len(), 1);
    let (_, r) = send(&mut n, opt::LIST_META_CONTEXT, &meta("default", &["nocolon"]));
    assert_eq!(r[0].1, rep::ERR_INVALID);
}

#[test]
fn abort_is_acked_then_closed() {
    let ex = exports();
    let mut n = Negotiation::new(&ex, fixed(), HandshakeLimits::default());
    let (step, r) = send(&mut n, opt::ABORT, &[]);
    assert_eq!(step, Step::Close);
    assert_eq!(r[0].1, rep::ACK);
}

#[test]
fn starttls_is_unsupported() {
    let ex = exports();
    let mut n = Negotiation::new(&ex, fixed(), HandshakeLimits::default());
    let (_, r) = send(&mut n, opt::STARTTLS, &[]);
    assert_eq!(r[0].1, rep::ERR_UNSUP);
}

#[test]
fn shutting_down_answers_err_shutdown_except_abort() {
    let ex = exports();
    let mut n = Negotiation::new(&ex, fixed(), HandshakeLimits::default());
    n.set_shutting_down();
    let (step, r) = send(&mut n, opt::GO, &name_and_u16s("", &[]));
    assert_eq!(step, Step::Continue);
    assert_eq!(r[0].1, rep::ERR_SHUTDOWN);
    let (step, r) = send(&mut n, opt::ABORT, &[]);
    assert_eq!((step, r[0].1), (Step::Close, rep::ACK));
}

#[test]
fn oversized_option_is_discarded_with_too_big_or_closes() {
    let ex = exports();
    let limits = HandshakeLimits { max_option_len: 100, max_discard_len: 1000, max_options: 10 };
    let mut n = Negotiation::new(&ex, fixed(), limits);
    assert_eq!(n.data_policy(100), DataPolicy::Read);
    assert_eq!(n.data_policy(101), DataPolicy::DiscardTooBig);
    assert_eq!(n.data_policy(1001), DataPolicy::Close);
    let mut out = Vec::new();
    assert_eq!(n.too_big(OptionHeader { option: opt::INFO, length: 500 }, &mut out), Step::Continue);
    assert_eq!(replies(&out)[0].1, rep::ERR_TOO_BIG);
}

#[test]
fn too_many_options_close_the_session() {
    let ex = exports();
    let limits = HandshakeLimits { max_options: 3, ..HandshakeLimits::default() };
    let mut n = Negotiation::new(&ex, fixed(), limits);
    for _ in 0..3 {
        assert_eq!(send(&mut n, 99, &[]).0, Step::Continue);
    }
    assert_eq!(send(&mut n, 99, &[]).0, Step::Close);
}

#[test]
fn non_fixed_client_may_only_send_export_name() {
    let ex = exports();
    let client = ClientFlags { fixed_newstyle: false, no_zeroes: false };
    let mut n = Negotiation::new(&ex, client, HandshakeLimits::default());
    assert_eq!(send(&mut n, opt::LIST, &[]).0, Step::Close);
}

#[test]
fn block_sizes_are_made_valid() {
    let mut c = Capabilities { min_block: 3, preferred_block: 100, max_block: 5000, ..Capabilities::default() };
    let b = BlockSizes::new(&c, 32 << 20);
    assert_eq!((b.min, b.preferred, b.max), (4, 512, 5000));
    c.max_block = u32::MAX;
    c.min_block = 512;
    let b = BlockSizes::new(&c, (1 << 20) + 100);
    assert_eq!(b.max, 1 << 20);
}
