//! A Ceph RBD image through librbd (`docs/ceph.md`).
//!
//! Every request is one asynchronous librbd request (`rbd_aio_*`) with a completion; the calling thread waits for
//! the completion at most `op_timeout` plus a margin, so a cluster that goes away turns into an I/O error (a CHECK
//! CONDITION, an NBD error), never a stuck caller, and requests succeed again once the cluster is back (librados
//! reconnects by itself). Data crosses into librbd through buffers the request owns, never the caller's: a request
//! that outlives its wait (timed out) can still complete later without touching freed memory.
//!
//! The client runs with librbd's cache off (`rbd_cache = false`): an acknowledged write is in the cluster, and two
//! hosts that serve one image never read stale data from their own cache.

use super::{check_range, Backend};
use parking_lot::{Condvar, Mutex};
use rbd_sys as sys;
use std::cell::UnsafeCell;
use std::ffi::{c_void, CString};
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where the image is and how long the cluster may take.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RbdOptions {
    pub pool: String,
    pub image: String,
    /// ceph.conf to read; None reads Ceph's default search path (`$CEPH_CONF`, `/etc/ceph/ceph.conf`, ...).
    pub ceph_conf: Option<PathBuf>,
    /// The client id (`admin` for `client.admin`); None is librados' default.
    pub client: Option<String>,
    /// Create the image with this many bytes when it does not exist; 0 requires it to exist.
    pub create_size: u64,
    /// Bound on connecting (`client_mount_timeout`), monitor and OSD requests (`rados_mon_op_timeout`,
    /// `rados_osd_op_timeout`).
    pub op_timeout: Duration,
}

impl RbdOptions {
    pub fn new(pool: impl Into<String>, image: impl Into<String>) -> Self {
        RbdOptions {
            pool: pool.into(),
            image: image.into(),
            ceph_conf: None,
            client: None,
            create_size: 0,
            op_timeout: Duration::from_secs(10),
        }
    }
}

/// Why an image could not be opened. The librados/librbd error is part of the message (not a separate source), so a
/// chain of contexts prints it once.
#[derive(Debug, thiserror::Error)]
pub enum RbdError {
    #[error("invalid {what} {value:?}: it contains a NUL byte")]
    Nul { what: &'static str, value: String },
    #[error("ceph client setup ({step}): {error}")]
    Setup { step: String, error: io::Error },
    #[error("cannot reach the Ceph cluster within {timeout:?} (monitors in {conf}): {error}")]
    Connect { conf: String, timeout: Duration, error: io::Error },
    #[error("cannot open pool {pool:?}: {error}")]
    Pool { pool: String, error: io::Error },
    #[error("cannot create image {pool}/{image} of {size} bytes: {error}")]
    Create { pool: String, image: String, size: u64, error: io::Error },
    #[error("cannot open image {pool}/{image}: {error}")]
    Open { pool: String, image: String, error: io::Error },
}

fn errno(rc: i64) -> io::Error {
    io::Error::from_raw_os_error(i32::try_from(-rc).unwrap_or(libc::EIO))
}

fn cstr(what: &'static str, s: &str) -> Result<CString, RbdError> {
    CString::new(s).map_err(|_| RbdError::Nul { what, value: s.to_owned() })
}

/// The handles, closed in reverse order of opening.
struct Handles {
    cluster: sys::rados_t,
    io: sys::rados_ioctx_t,
    image: sys::rbd_image_t,
}

impl Drop for Handles {
    fn drop(&mut self) {
        // SAFETY: each handle was returned by its open call, is closed once, here, after every request through it
        // finished or was abandoned (librbd's close waits for requests in flight, and a completion owns its
        // buffer, see `Request`).
        unsafe {
            if !self.image.is_null() {
                sys::rbd_close(self.image);
            }
            if !self.io.is_null() {
                sys::rados_ioctx_destroy(self.io);
            }
            if !self.cluster.is_null() {
                sys::rados_shutdown(self.cluster);
            }
        }
    }
}

/// One asynchronous request: its buffer and its result. The completion callback holds a reference until it has
/// run, so neither outlives the other however long librbd takes.
struct Request {
    /// librbd reads (writes) this buffer between submission and completion; the waiter touches it only after
    /// `done` is set.
    buf: UnsafeCell<Vec<u8>>,
    done: Mutex<Option<isize>>,
    cv: Condvar,
}

// SAFETY: `buf` is written by librbd before the completion sets `done` (under the mutex) and read by the waiter only
// after it saw `done` set (under the same mutex), so accesses never overlap.
unsafe impl Sync for Request {}

unsafe extern "C" fn request_done(c: sys::rbd_completion_t, arg: *mut c_void) {
    // SAFETY: `arg` is the reference `submit` leaked with `Arc::into_raw` for this completion; it is taken back
    // exactly once, here. `c` is this completion, released once, here.
    let req = unsafe { Arc::from_raw(arg as *const Request) };
    let rc = unsafe { sys::rbd_aio_get_return_value(c) };
    unsafe { sys::rbd_aio_release(c) };
    *req.done.lock() = Some(rc);
    req.cv.notify_all();
}

/// An RBD image as a backend.
pub struct RbdBackend {
    h: Handles,
    size: u64,
    object_size: u64,
    wait: Duration,
    name: String,
}

// SAFETY: librbd's image handle is made for concurrent requests from many threads (its C API locks internally);
// the backend never hands out the raw handles and closes them only in Drop, when no call can be running.
unsafe impl Send for RbdBackend {}
// SAFETY: as above.
unsafe impl Sync for RbdBackend {}

impl std::fmt::Debug for RbdBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RbdBackend").field("image", &self.name).field("size", &self.size).finish()
    }
}

impl RbdBackend {
    /// Connect, open (creating when asked) and size the image. Takes at most about `op_timeout` per step when the
    /// cluster does not answer.
    pub fn open(opts: &RbdOptions) -> Result<Self, RbdError> {
        let pool_c = cstr("pool", &opts.pool)?;
        let image_c = cstr("image", &opts.image)?;
        let client = opts.client.as_deref().map(|c| format!("client.{c}")).unwrap_or_else(|| "client.admin".into());
        let client_c = cstr("client", &client)?;
        let cluster_c = cstr("cluster", "ceph")?;
        let mut h = Handles { cluster: std::ptr::null_mut(), io: std::ptr::null_mut(), image: std::ptr::null_mut() };
        let setup = |step: &str, rc: i32| {
            if rc < 0 {
                Err(RbdError::Setup { step: step.to_owned(), error: errno(rc.into()) })
            } else {
                Ok(())
            }
        };
        // SAFETY: out-pointer to a handle we own; the strings live across the call.
        let rc = unsafe { sys::rados_create2(&mut h.cluster, cluster_c.as_ptr(), client_c.as_ptr(), 0) };
        setup("rados_create2", rc)?;
        let conf_name = match &opts.ceph_conf {
            Some(p) => {
                let pc = cstr("ceph_conf", &p.to_string_lossy())?;
                // SAFETY: valid cluster handle and C string.
                let rc = unsafe { sys::rados_conf_read_file(h.cluster, pc.as_ptr()) };
                setup(&format!("reading {}", p.display()), rc)?;
                p.display().to_string()
            }
            None => {
                // SAFETY: valid cluster handle; NULL means Ceph's default search path.
                let rc = unsafe { sys::rados_conf_read_file(h.cluster, std::ptr::null()) };
                setup("reading the default ceph.conf ($CEPH_CONF, /etc/ceph/ceph.conf)", rc)?;
                "the default ceph.conf".into()
            }
        };
        let secs = opts.op_timeout.as_secs().max(1).to_string();
        let settings: [(&str, &str, bool); 6] = [
            ("client_mount_timeout", &secs, true),
            ("rados_mon_op_timeout", &secs, true),
            ("rados_osd_op_timeout", &secs, true),
            ("rbd_cache", "false", true),
            // A discard inside an object zeroes the range instead of being skipped: it must read back as zeros.
            ("rbd_skip_partial_discard", "false", true),
            ("rbd_discard_granularity_bytes", "4096", false),
        ];
        for (k, v, required) in settings {
            let (kc, vc) = (cstr("option", k)?, cstr("value", v)?);
            // SAFETY: valid cluster handle and C strings.
            let rc = unsafe { sys::rados_conf_set(h.cluster, kc.as_ptr(), vc.as_ptr()) };
            if required {
                setup(&format!("{k} = {v}"), rc)?;
            }
        }
        // SAFETY: valid, configured cluster handle.
        let rc = unsafe { sys::rados_connect(h.cluster) };
        if rc < 0 {
            return Err(RbdError::Connect { conf: conf_name, timeout: opts.op_timeout, error: errno(rc.into()) });
        }
        // SAFETY: connected cluster; out-pointer we own.
        let rc = unsafe { sys::rados_ioctx_create(h.cluster, pool_c.as_ptr(), &mut h.io) };
        if rc < 0 {
            return Err(RbdError::Pool { pool: opts.pool.clone(), error: errno(rc.into()) });
        }
        let open = |h: &mut Handles| {
            // SAFETY: valid I/O context, C string, out-pointer we own; NULL snapshot = the head.
            unsafe { sys::rbd_open(h.io, image_c.as_ptr(), &mut h.image, std::ptr::null()) }
        };
        let mut rc = open(&mut h);
        if rc == -libc::ENOENT && opts.create_size > 0 {
            let mut order: libc::c_int = 0;
            // SAFETY: valid I/O context, C string, out-pointer we own. Layering only: no exclusive lock, so
            // several hosts can write the image at once (docs/ceph.md).
            let c = unsafe {
                sys::rbd_create2(h.io, image_c.as_ptr(), opts.create_size, sys::RBD_FEATURE_LAYERING, &mut order)
            };
            // Another host may have created it at the same moment.
            if c < 0 && c != -libc::EEXIST {
                return Err(RbdError::Create {
                    pool: opts.pool.clone(),
                    image: opts.image.clone(),
                    size: opts.create_size,
                    error: errno(c.into()),
                });
            }
            rc = open(&mut h);
        }
        let open_err =
            |rc: i64| RbdError::Open { pool: opts.pool.clone(), image: opts.image.clone(), error: errno(rc) };
        if rc < 0 {
            h.image = std::ptr::null_mut();
            return Err(open_err(rc.into()));
        }
        // SAFETY: all-zero is a valid value of this plain C struct.
        let mut info: sys::rbd_image_info_t = unsafe { std::mem::zeroed() };
        // SAFETY: open image, out-pointer to a struct of the size we pass.
        let rc = unsafe { sys::rbd_stat(h.image, &mut info, std::mem::size_of::<sys::rbd_image_info_t>()) };
        if rc < 0 {
            return Err(open_err(rc.into()));
        }
        Ok(RbdBackend {
            h,
            size: info.size,
            object_size: info.obj_size.max(4096),
            wait: opts.op_timeout + Duration::from_secs(5),
            name: format!("{}/{}", opts.pool, opts.image),
        })
    }

    /// The pool and image, as `pool/image`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Replace a small RADOS object of the image's pool (hosts that share the image publish their state in such
    /// objects, `docs/ceph.md`). Bounded by the OSD timeout.
    pub fn put_object(&self, oid: &str, data: &[u8]) -> io::Result<()> {
        let oid = CString::new(oid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: open I/O context; the name and the buffer live across the synchronous call.
        let rc = unsafe { sys::rados_write_full(self.h.io, oid.as_ptr(), data.as_ptr().cast(), data.len()) };
        if rc < 0 {
            return Err(errno(rc.into()));
        }
        Ok(())
    }

    /// Read up to `max` bytes of a RADOS object of the image's pool; None when it does not exist.
    pub fn get_object(&self, oid: &str, max: usize) -> io::Result<Option<Vec<u8>>> {
        let oid = CString::new(oid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let mut buf = vec![0u8; max];
        // SAFETY: open I/O context; librados writes at most `max` bytes into the buffer during the synchronous call.
        let rc = unsafe { sys::rados_read(self.h.io, oid.as_ptr(), buf.as_mut_ptr().cast(), max, 0) };
        if rc == -libc::ENOENT {
            return Ok(None);
        }
        if rc < 0 {
            return Err(errno(rc.into()));
        }
        buf.truncate(rc as usize);
        Ok(Some(buf))
    }

    /// Watch a RADOS object of the image's pool (creating it empty when it does not exist): `on_notify` runs, on a
    /// librados thread, for every notification sent to it — this host's own included — with its payload, and the
    /// notification is acknowledged when it returns, so a notifier that waits for the acknowledgements knows every
    /// watcher has acted. The cluster drops the watch of a host that stops answering after `timeout`.
    pub fn watch(
        self: &Arc<Self>,
        oid: &str,
        timeout: Duration,
        on_notify: impl Fn(&[u8]) + Send + Sync + 'static,
    ) -> io::Result<ObjectWatch> {
        let oid_c = CString::new(oid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        if self.get_object(oid, 0)?.is_none() {
            self.put_object(oid, b"")?;
        }
        let ctx = Box::new(WatchCtx {
            io: self.h.io,
            oid: oid_c,
            lost: std::sync::atomic::AtomicBool::new(false),
            on_notify: Box::new(on_notify),
        });
        let mut cookie = 0u64;
        let secs = u32::try_from(timeout.as_secs().max(1)).unwrap_or(u32::MAX);
        // SAFETY: open I/O context; the name and the context live in the box, which `ObjectWatch` keeps until the
        // watch is unregistered and its callbacks flushed (its Drop).
        let rc = unsafe {
            sys::rados_watch3(
                self.h.io,
                ctx.oid.as_ptr(),
                &mut cookie,
                Some(watch_notified),
                Some(watch_lost),
                secs,
                (&*ctx as *const WatchCtx).cast_mut().cast(),
            )
        };
        if rc < 0 {
            return Err(errno(rc.into()));
        }
        Ok(ObjectWatch { backend: self.clone(), cookie, ctx })
    }

    /// Notify the watchers of a RADOS object and wait, at most `timeout`, until each has acknowledged (run its
    /// `on_notify`). `TimedOut` when one did not answer in time (a host that died and whose watch the cluster has
    /// not dropped yet).
    pub fn notify(&self, oid: &str, payload: &[u8], timeout: Duration) -> io::Result<()> {
        let oid = CString::new(oid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let len = libc::c_int::try_from(payload.len()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let mut reply: *mut libc::c_char = std::ptr::null_mut();
        let mut reply_len: libc::size_t = 0;
        let ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX).max(1);
        // SAFETY: open I/O context; name and payload live across the synchronous call; the reply buffer librados
        // allocates is freed once, below.
        let rc = unsafe {
            sys::rados_notify2(self.h.io, oid.as_ptr(), payload.as_ptr().cast(), len, ms, &mut reply, &mut reply_len)
        };
        if !reply.is_null() {
            // SAFETY: the buffer rados_notify2 returned, not used after this.
            unsafe { sys::rados_buffer_free(reply) };
        }
        if rc < 0 {
            return Err(errno(rc.into()));
        }
        Ok(())
    }

    /// The image's object size (allocation is tracked per object).
    pub fn object_size(&self) -> u64 {
        self.object_size
    }

    /// Submit one request over a buffer it owns and wait for its completion. `start` gets the buffer's pointer
    /// and length and the completion, and calls the `rbd_aio_*` function. Returns the completion's value
    /// (a read's byte count, 0 for the others) and the buffer.
    fn submit<F>(&self, what: &str, off: u64, buf: Vec<u8>, start: F) -> io::Result<(isize, Vec<u8>)>
    where
        F: FnOnce(*mut u8, usize, sys::rbd_completion_t) -> libc::c_int,
    {
        let req = Arc::new(Request { buf: UnsafeCell::new(buf), done: Mutex::new(None), cv: Condvar::new() });
        // SAFETY: nothing else references the buffer yet; librbd gets its pointer and length below.
        let (ptr, len) = unsafe {
            let b = &mut *req.buf.get();
            (b.as_mut_ptr(), b.len())
        };
        let arg = Arc::into_raw(req.clone()) as *mut c_void;
        let mut c: sys::rbd_completion_t = std::ptr::null_mut();
        // SAFETY: `arg` stays valid until `request_done` takes it back; out-pointer we own.
        let rc = unsafe { sys::rbd_aio_create_completion(arg, Some(request_done), &mut c) };
        if rc < 0 {
            // SAFETY: the completion was not created, so the callback will never take `arg` back.
            drop(unsafe { Arc::from_raw(arg as *const Request) });
            return Err(errno(rc.into()));
        }
        let rc = start(ptr, len, c);
        if rc < 0 {
            // SAFETY: the request was refused, so the completion never fires: release it and take `arg` back.
            unsafe {
                sys::rbd_aio_release(c);
                drop(Arc::from_raw(arg as *const Request));
            }
            return Err(errno(rc.into()));
        }
        let deadline = Instant::now() + self.wait;
        let mut done = req.done.lock();
        while done.is_none() {
            if req.cv.wait_until(&mut done, deadline).timed_out() && done.is_none() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("{what} at {off} on {} did not complete within {:?}", self.name, self.wait),
                ));
            }
        }
        let rc = done.expect("set");
        drop(done);
        if rc < 0 {
            return Err(errno(rc as i64));
        }
        // SAFETY: the completion has run: librbd no longer touches the buffer, and the callback's reference only
        // drops the Arc; the buffer is taken out under exclusive use.
        let buf = unsafe { std::mem::take(&mut *req.buf.get()) };
        Ok((rc, buf))
    }

    fn io_len(len: u64) -> io::Result<usize> {
        usize::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
    }

    /// Write with FUA: durable when it returns.
    pub fn write_fua(&self, off: u64, data: &[u8]) -> io::Result<()> {
        self.write_flags(off, data, sys::LIBRADOS_OP_FLAG_FADVISE_FUA)
    }

    fn write_flags(&self, off: u64, data: &[u8], flags: libc::c_int) -> io::Result<()> {
        check_range(self.size, off, data.len() as u64)?;
        if data.is_empty() {
            return Ok(());
        }
        let image = self.h.image;
        // SAFETY (closure): open image; the buffer and completion come from `submit` and outlive the request.
        let (rc, _) = self.submit("write", off, data.to_vec(), |p, n, c| unsafe {
            sys::rbd_aio_write2(image, off, n, p as *const libc::c_char, c, flags)
        })?;
        // A write's completion is 0 on success (the byte count on some older releases).
        if rc != 0 && rc as usize != data.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("write of {} bytes returned {rc}", data.len()),
            ));
        }
        Ok(())
    }
}

/// What `rbd_diff_iterate2` found from `off`: the first extent's kind and where it ends.
struct Walk {
    off: u64,
    /// (allocated, end) once the first extent is known.
    run: Option<(bool, u64)>,
}

/// Returned by the callback to stop the walk once the run from `off` is known.
const STOP: libc::c_int = -libc::ECANCELED;

unsafe extern "C" fn walk_extent(off: u64, len: libc::size_t, exists: libc::c_int, arg: *mut c_void) -> libc::c_int {
    // SAFETY: `arg` is the `Walk` that `allocation_run` passes and keeps alive across the synchronous call.
    let w = unsafe { &mut *(arg as *mut Walk) };
    if exists == 0 || len == 0 {
        return 0;
    }
    let (start, end) = (off.max(w.off), off + len as u64);
    if end <= start {
        return 0;
    }
    match w.run {
        None if start > w.off => {
            w.run = Some((false, start));
            STOP
        }
        None => {
            w.run = Some((true, end));
            0
        }
        Some((true, e)) if start <= e => {
            w.run = Some((true, e.max(end)));
            0
        }
        Some(_) => STOP,
    }
}

impl Backend for RbdBackend {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, off: u64, buf: &mut [u8]) -> io::Result<()> {
        check_range(self.size, off, buf.len() as u64)?;
        if buf.is_empty() {
            return Ok(());
        }
        let image = self.h.image;
        // SAFETY (closure): open image; the buffer and completion come from `submit` and outlive the request.
        let (rc, data) = self.submit("read", off, vec![0u8; buf.len()], |p, n, c| unsafe {
            sys::rbd_aio_read2(image, off, n, p as *mut libc::c_char, c, 0)
        })?;
        // A read's completion is its byte count; inside the image it is always the whole length.
        if rc as usize != buf.len() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("read of {} bytes at {off} returned {rc}", buf.len()),
            ));
        }
        buf.copy_from_slice(&data);
        Ok(())
    }

    fn write_at(&self, off: u64, data: &[u8]) -> io::Result<()> {
        self.write_flags(off, data, 0)
    }

    fn flush(&self) -> io::Result<()> {
        let image = self.h.image;
        // SAFETY (closure): open image and a completion from `submit`.
        self.submit("flush", 0, Vec::new(), |_, _, c| unsafe { sys::rbd_aio_flush(image, c) }).map(drop)
    }

    fn discard(&self, off: u64, len: u64) -> io::Result<()> {
        check_range(self.size, off, len)?;
        if len == 0 {
            return Ok(());
        }
        let image = self.h.image;
        // SAFETY (closure): open image and a completion from `submit`.
        self.submit("discard", off, Vec::new(), |_, _, c| unsafe { sys::rbd_aio_discard(image, off, len, c) }).map(drop)
    }

    fn write_zeroes(&self, off: u64, len: u64) -> io::Result<()> {
        check_range(self.size, off, len)?;
        if len == 0 {
            return Ok(());
        }
        let n = Self::io_len(len)?;
        let image = self.h.image;
        // SAFETY (closure): open image and a completion from `submit`.
        self.submit("write zeroes", off, Vec::new(), |_, _, c| unsafe {
            sys::rbd_aio_write_zeroes(image, off, n, c, 0, 0)
        })
        .map(drop)
    }

    fn is_allocated(&self, off: u64, len: u64) -> io::Result<bool> {
        check_range(self.size, off, len)?;
        if len == 0 {
            return Ok(false);
        }
        let (allocated, run) = self.allocation_run(off, len)?;
        Ok(allocated || run < len)
    }

    /// From the image's allocation (`rbd_diff_iterate2` against no snapshot: the extents that hold data).
    fn allocation_run(&self, off: u64, max: u64) -> io::Result<(bool, u64)> {
        let max = max.min(self.size.saturating_sub(off));
        if max == 0 {
            return Ok((false, 0));
        }
        let mut walk = Walk { off, run: None };
        // SAFETY: open image; `walk` outlives the synchronous call and is only touched by the callback during it.
        let rc = unsafe {
            sys::rbd_diff_iterate2(
                self.h.image,
                std::ptr::null(),
                off,
                max,
                1,
                0,
                Some(walk_extent),
                &mut walk as *mut Walk as *mut c_void,
            )
        };
        if rc < 0 && rc != STOP {
            return Err(errno(rc.into()));
        }
        Ok(match walk.run {
            None => (false, max),
            Some((allocated, end)) => (allocated, end.saturating_sub(off).clamp(1, max)),
        })
    }
}

/// What a watch's callbacks need: the I/O context and object name to acknowledge with, and the caller's function.
struct WatchCtx {
    io: sys::rados_ioctx_t,
    oid: CString,
    lost: std::sync::atomic::AtomicBool,
    on_notify: OnNotify,
}

/// What a watcher does with a notification's payload.
type OnNotify = Box<dyn Fn(&[u8]) + Send + Sync>;

unsafe extern "C" fn watch_notified(
    arg: *mut c_void,
    notify_id: u64,
    handle: u64,
    _notifier: u64,
    data: *mut c_void,
    len: libc::size_t,
) {
    // SAFETY: `arg` is the `WatchCtx` its `ObjectWatch` keeps alive until the watch is unregistered and flushed.
    let ctx = unsafe { &*(arg as *const WatchCtx) };
    let payload: &[u8] = if data.is_null() || len == 0 {
        &[]
    } else {
        // SAFETY: librados passes the payload's bytes, valid for the duration of the callback.
        unsafe { std::slice::from_raw_parts(data as *const u8, len) }
    };
    // A panic must not unwind into librados; the notification is acknowledged either way.
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (ctx.on_notify)(payload)));
    // SAFETY: the watch's open I/O context and object name; no payload in the acknowledgement.
    unsafe { sys::rados_notify_ack(ctx.io, ctx.oid.as_ptr(), notify_id, handle, std::ptr::null(), 0) };
}

unsafe extern "C" fn watch_lost(arg: *mut c_void, _cookie: u64, _err: libc::c_int) {
    // SAFETY: as in `watch_notified`.
    let ctx = unsafe { &*(arg as *const WatchCtx) };
    ctx.lost.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// A registered watch (`RbdBackend::watch`); unregistered when dropped.
pub struct ObjectWatch {
    backend: Arc<RbdBackend>,
    cookie: u64,
    ctx: Box<WatchCtx>,
}

// SAFETY: the raw I/O context inside is used only through librados calls, which are thread-safe; the callback
// function is Send + Sync.
unsafe impl Send for ObjectWatch {}
// SAFETY: as above.
unsafe impl Sync for ObjectWatch {}

impl ObjectWatch {
    /// The cluster dropped the watch (the connection was lost for longer than its timeout): notifications may have
    /// been missed, and a new watch must be registered.
    pub fn is_lost(&self) -> bool {
        self.ctx.lost.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for ObjectWatch {
    fn drop(&mut self) {
        // SAFETY: the cookie of this watch on the backend's open I/O context; after unwatch and flush no callback
        // runs or will run with `ctx`, which is freed after this.
        unsafe {
            sys::rados_unwatch2(self.backend.h.io, self.cookie);
            sys::rados_watch_flush(self.backend.h.cluster);
        }
    }
}
