//! Raw declarations of the librados and librbd C functions (Ceph 16 "Pacific", `rados/librados.h` and
//! `rbd/librbd.h`) that the RBD backend uses, and nothing else.
//!
//! They are written by hand because the bindings on crates.io are stale: `ceph-rbd` 0.3.2 no longer builds with a
//! current rustc and `librbd-sys` 0.1.0 has only the 2016 API (no `rbd_aio_write_zeroes`, no `rbd_diff_iterate2`).
//! Every function here has the signature of the C header; the safe wrapper lives with the backend
//! (`scsi::backend::rbd`).
#![allow(non_camel_case_types)]

use libc::{c_char, c_int, c_void, size_t, ssize_t};

/// A cluster handle (`rados_t`).
pub type rados_t = *mut c_void;
/// A pool's I/O context (`rados_ioctx_t`).
pub type rados_ioctx_t = *mut c_void;
/// An open image (`rbd_image_t`).
pub type rbd_image_t = *mut c_void;
/// An asynchronous request's completion (`rbd_completion_t`).
pub type rbd_completion_t = *mut c_void;
/// Called by librbd, on one of its own threads, when a request completes.
pub type rbd_callback_t = Option<unsafe extern "C" fn(cb: rbd_completion_t, arg: *mut c_void)>;
/// `rbd_diff_iterate2`'s callback: offset, length, whether the extent holds data, the caller's argument. A non-zero
/// return stops the iteration and becomes its return value.
pub type rbd_diff_cb = Option<unsafe extern "C" fn(off: u64, len: size_t, exists: c_int, arg: *mut c_void) -> c_int>;

/// `rados_watch2`'s notification callback: the caller's argument, the notification's id, the watch's cookie, the
/// notifier's client id and the payload. Runs on a librados thread; the watcher answers with `rados_notify_ack`.
pub type rados_watchcb2_t = Option<
    unsafe extern "C" fn(
        arg: *mut c_void,
        notify_id: u64,
        handle: u64,
        notifier_id: u64,
        data: *mut c_void,
        len: size_t,
    ),
>;
/// `rados_watch2`'s error callback: the caller's argument, the watch's cookie, a negative errno (the watch is lost
/// and must be registered again).
pub type rados_watcherrcb_t = Option<unsafe extern "C" fn(pre: *mut c_void, cookie: u64, err: c_int)>;

/// `RBD_MAX_BLOCK_NAME_SIZE`.
pub const RBD_MAX_BLOCK_NAME_SIZE: usize = 24;
/// `RBD_MAX_IMAGE_NAME_SIZE`.
pub const RBD_MAX_IMAGE_NAME_SIZE: usize = 96;

/// `RBD_FEATURE_LAYERING`: the only feature the backend asks for when it creates an image.
pub const RBD_FEATURE_LAYERING: u64 = 1 << 0;

/// `LIBRADOS_OP_FLAG_FADVISE_FUA`: the write is durable when it completes.
pub const LIBRADOS_OP_FLAG_FADVISE_FUA: c_int = 0x80;

/// `rbd_image_info_t`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct rbd_image_info_t {
    pub size: u64,
    pub obj_size: u64,
    pub num_objs: u64,
    pub order: c_int,
    pub block_name_prefix: [c_char; RBD_MAX_BLOCK_NAME_SIZE],
    pub parent_pool: i64,
    pub parent_name: [c_char; RBD_MAX_IMAGE_NAME_SIZE],
}

extern "C" {
    // librados: the cluster and a pool.
    pub fn rados_create2(cluster: *mut rados_t, clustername: *const c_char, name: *const c_char, flags: u64) -> c_int;
    pub fn rados_conf_read_file(cluster: rados_t, path: *const c_char) -> c_int;
    pub fn rados_conf_parse_env(cluster: rados_t, var: *const c_char) -> c_int;
    pub fn rados_conf_set(cluster: rados_t, option: *const c_char, value: *const c_char) -> c_int;
    pub fn rados_connect(cluster: rados_t) -> c_int;
    pub fn rados_shutdown(cluster: rados_t);
    pub fn rados_ioctx_create(cluster: rados_t, pool_name: *const c_char, ioctx: *mut rados_ioctx_t) -> c_int;
    pub fn rados_ioctx_destroy(io: rados_ioctx_t);
    pub fn rados_write_full(io: rados_ioctx_t, oid: *const c_char, buf: *const c_char, len: size_t) -> c_int;
    pub fn rados_read(io: rados_ioctx_t, oid: *const c_char, buf: *mut c_char, len: size_t, off: u64) -> c_int;

    // librados: watch and notify on an object.
    pub fn rados_watch3(
        io: rados_ioctx_t,
        o: *const c_char,
        cookie: *mut u64,
        watchcb: rados_watchcb2_t,
        watcherrcb: rados_watcherrcb_t,
        timeout: u32,
        arg: *mut c_void,
    ) -> c_int;
    pub fn rados_unwatch2(io: rados_ioctx_t, cookie: u64) -> c_int;
    pub fn rados_watch_flush(cluster: rados_t) -> c_int;
    pub fn rados_notify2(
        io: rados_ioctx_t,
        o: *const c_char,
        buf: *const c_char,
        buf_len: c_int,
        timeout_ms: u64,
        reply_buffer: *mut *mut c_char,
        reply_buffer_len: *mut size_t,
    ) -> c_int;
    pub fn rados_notify_ack(
        io: rados_ioctx_t,
        o: *const c_char,
        notify_id: u64,
        cookie: u64,
        buf: *const c_char,
        buf_len: c_int,
    ) -> c_int;
    pub fn rados_buffer_free(buf: *mut c_char);

    // librbd: images.
    pub fn rbd_create2(io: rados_ioctx_t, name: *const c_char, size: u64, features: u64, order: *mut c_int) -> c_int;
    pub fn rbd_open(io: rados_ioctx_t, name: *const c_char, image: *mut rbd_image_t, snap_name: *const c_char)
        -> c_int;
    pub fn rbd_close(image: rbd_image_t) -> c_int;
    pub fn rbd_stat(image: rbd_image_t, info: *mut rbd_image_info_t, infosize: size_t) -> c_int;
    pub fn rbd_resize(image: rbd_image_t, size: u64) -> c_int;
    pub fn rbd_diff_iterate2(
        image: rbd_image_t,
        fromsnapname: *const c_char,
        ofs: u64,
        len: u64,
        include_parent: u8,
        whole_object: u8,
        cb: rbd_diff_cb,
        arg: *mut c_void,
    ) -> c_int;

    // librbd: asynchronous I/O.
    pub fn rbd_aio_create_completion(
        cb_arg: *mut c_void,
        complete_cb: rbd_callback_t,
        c: *mut rbd_completion_t,
    ) -> c_int;
    pub fn rbd_aio_get_return_value(c: rbd_completion_t) -> ssize_t;
    pub fn rbd_aio_release(c: rbd_completion_t);
    pub fn rbd_aio_read2(
        image: rbd_image_t,
        off: u64,
        len: size_t,
        buf: *mut c_char,
        c: rbd_completion_t,
        op_flags: c_int,
    ) -> c_int;
    pub fn rbd_aio_write2(
        image: rbd_image_t,
        off: u64,
        len: size_t,
        buf: *const c_char,
        c: rbd_completion_t,
        op_flags: c_int,
    ) -> c_int;
    pub fn rbd_aio_discard(image: rbd_image_t, off: u64, len: u64, c: rbd_completion_t) -> c_int;
    pub fn rbd_aio_write_zeroes(
        image: rbd_image_t,
        off: u64,
        len: size_t,
        c: rbd_completion_t,
        zero_flags: c_int,
        op_flags: c_int,
    ) -> c_int;
    pub fn rbd_aio_flush(image: rbd_image_t, c: rbd_completion_t) -> c_int;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_info_has_the_c_layout() {
        // 3 × u64, an int, 24 chars, padding to the i64 at 56, 96 chars: 160 bytes on LP64 (as sizeof says).
        assert_eq!(std::mem::size_of::<rbd_image_info_t>(), 160);
        assert_eq!(std::mem::offset_of!(rbd_image_info_t, parent_pool), 56);
    }
}
