//! The C ABI of the port driver: miniports written in C against `include/scsiport/miniport.h` run on the port driver
//! of the `port` crate, verifier and trace included.
//!
//! A miniport's `DriverEntry` fills a `HW_INITIALIZATION_DATA` and calls `ScsiPortInitialize`, which finds and starts
//! the adapter (`HwFindAdapter`, `HwInitialize`) on the card the machine wired for it, exactly as
//! [`port::AdapterHandle::start`] does for a Rust miniport. [`load`] opens an out-of-tree miniport (`.so`), [`start`]
//! runs a `DriverEntry` against a card. See `docs/miniport-c.md`.

pub mod ffi;

mod exports;
mod glue;

pub use glue::CMiniport;

use ffi::HwInitializationData as CInit;
use hal::Hal;
use port::{AdapterHandle, AdapterOptions, AdapterResources, HbaHardware, HwInitializationData, PortError};
use std::cell::RefCell;
use std::ffi::c_void;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why a C miniport could not be loaded or started.
#[derive(thiserror::Error, Debug)]
pub enum MiniportError {
    #[error("miniport {path}: no such file")]
    NotFound { path: PathBuf },
    #[error("miniport {path}: cannot load it: {reason}")]
    Load { path: PathBuf, reason: String },
    #[error("miniport {path}: it exports no DriverEntry routine (a miniport's entry point is `ULONG DriverEntry(PVOID DriverObject, PVOID Argument2)`)")]
    NoDriverEntry { path: PathBuf },
    #[error(
        "miniport {name}: ScsiPortInitialize got a HW_INITIALIZATION_DATA of {got} bytes (HwInitializationDataSize), \
         but the structure is {expected} bytes: build the miniport against include/scsiport/miniport.h and set \
         HwInitializationDataSize = sizeof(HW_INITIALIZATION_DATA)"
    )]
    WrongInitDataSize { name: String, got: u32, expected: u32 },
    #[error("miniport {name}: HW_INITIALIZATION_DATA has no {routine} routine, which every miniport must provide")]
    MissingRoutine { name: String, routine: &'static str },
    #[error("miniport {name}: DriverEntry returned {status:#010x} without calling ScsiPortInitialize")]
    NoInitialize { name: String, status: u32 },
    #[error("miniport {name}: no ScsiPortInitialize call found an adapter (DriverEntry returned {status:#010x})")]
    NoAdapter { name: String, status: u32 },
    #[error(transparent)]
    Port(#[from] PortError),
}

/// A miniport's entry point, from a loaded library or linked in.
#[derive(Clone)]
pub struct Miniport {
    name: String,
    entry: ffi::DriverEntry,
    library: Option<Arc<libloading::Library>>,
}

impl std::fmt::Debug for Miniport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Miniport").field("name", &self.name).finish()
    }
}

impl Miniport {
    /// A miniport linked into this program.
    ///
    /// # Safety
    /// `entry` must be a miniport's `DriverEntry` built against `include/scsiport/miniport.h`: it may call the
    /// `ScsiPort*` routines with the arguments the header describes, and must keep to the pointers it is given.
    pub unsafe fn linked(name: &str, entry: ffi::DriverEntry) -> Self {
        Miniport { name: name.to_string(), entry, library: None }
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Load an out-of-tree miniport (`cc -shared -fPIC -I include miniport.c -o libminiport.so`). The `ScsiPort*`
/// routines it leaves undefined resolve against this program (which exports them).
///
/// # Safety
/// Loading a library runs its initialisers and, later, its code, in this process: the library must be a miniport
/// built against `include/scsiport/miniport.h` that keeps to the pointers it is given. Nothing can check that.
pub unsafe fn load(path: &Path) -> Result<Miniport, MiniportError> {
    exports_linked();
    if !path.exists() {
        return Err(MiniportError::NotFound { path: path.to_path_buf() });
    }
    // A bare file name would be looked up in the library search path, not the current directory.
    let full = if path.components().count() == 1 { Path::new(".").join(path) } else { path.to_path_buf() };
    // SAFETY: loading a library runs its initialisers; the user named this file as a miniport to run.
    let lib = unsafe { libloading::Library::new(&full) }
        .map_err(|e| MiniportError::Load { path: path.to_path_buf(), reason: e.to_string() })?;
    // SAFETY: DriverEntry's type is the header's; the symbol is checked to exist, its type is the miniport's promise.
    let entry: ffi::DriverEntry = unsafe { lib.get::<ffi::DriverEntry>(b"DriverEntry\0") }
        .map(|s| *s)
        .map_err(|_| MiniportError::NoDriverEntry { path: path.to_path_buf() })?;
    Ok(Miniport { name: path.display().to_string(), entry, library: Some(Arc::new(lib)) })
}

/// What a `DriverEntry` runs against: the card and how the port should run it.
struct Pending {
    miniport: Miniport,
    hal: Arc<Hal>,
    hw: Option<Box<dyn HbaHardware>>,
    resources: AdapterResources,
    options: AdapterOptions,
    started: Option<AdapterHandle>,
    error: Option<MiniportError>,
    initialize_calls: u32,
}

thread_local! {
    static PENDING: RefCell<Option<Pending>> = const { RefCell::new(None) };
}

/// The `DriverObject` a `DriverEntry` gets: its address identifies the call in progress.
static DRIVER_OBJECT: u8 = 0;

/// Run the miniport's `DriverEntry` against the card `hw`: its `ScsiPortInitialize` finds and initializes the adapter
/// and starts the port driver on it.
pub fn start(
    miniport: &Miniport,
    hal: Arc<Hal>,
    hw: Box<dyn HbaHardware>,
    resources: AdapterResources,
    options: AdapterOptions,
) -> Result<AdapterHandle, MiniportError> {
    exports_linked();
    let name = options.name.clone();
    PENDING.with(|p| {
        *p.borrow_mut() = Some(Pending {
            miniport: miniport.clone(),
            hal,
            hw: Some(hw),
            resources,
            options,
            started: None,
            error: None,
            initialize_calls: 0,
        })
    });
    let driver_object = &DRIVER_OBJECT as *const u8 as *mut c_void;
    // SAFETY: `entry` is the miniport's DriverEntry (see `Miniport::linked` and `load`).
    let status = unsafe { (miniport.entry)(driver_object, std::ptr::null_mut()) };
    let p = PENDING.with(|p| p.borrow_mut().take()).expect("set above, taken only here");
    if let Some(h) = p.started {
        return Ok(h);
    }
    if let Some(e) = p.error {
        return Err(e);
    }
    if p.initialize_calls == 0 {
        return Err(MiniportError::NoInitialize { name, status });
    }
    Err(MiniportError::NoAdapter { name, status })
}

/// `ScsiPortInitialize`: register the miniport and find its adapter on the machine's card.
///
/// # Safety
/// `init` must point to a readable `HW_INITIALIZATION_DATA` of the size it states.
#[no_mangle]
pub unsafe extern "C" fn ScsiPortInitialize(
    argument1: *mut c_void,
    _argument2: *mut c_void,
    init: *mut CInit,
    hw_context: *mut c_void,
) -> u32 {
    if argument1 != &DRIVER_OBJECT as *const u8 as *mut c_void || init.is_null() {
        return ffi::status::INVALID_PARAMETER;
    }
    PENDING.with(|cell| {
        let mut guard = cell.borrow_mut();
        let Some(p) = guard.as_mut() else { return ffi::status::INVALID_PARAMETER };
        p.initialize_calls += 1;
        let name = p.options.name.clone();
        // SAFETY: the caller passes a HW_INITIALIZATION_DATA; its first ULONG is its size, read before the rest.
        let size = unsafe { std::ptr::read_unaligned(init.cast::<u32>()) };
        let expected = std::mem::size_of::<CInit>() as u32;
        if size != expected {
            p.error = Some(MiniportError::WrongInitDataSize { name, got: size, expected });
            return ffi::status::REVISION_MISMATCH;
        }
        // SAFETY: the size matches the structure, so the whole of it is readable.
        let data = unsafe { std::ptr::read_unaligned(init) };
        for (missing, routine) in [
            (data.hw_initialize.is_none(), "HwInitialize"),
            (data.hw_start_io.is_none(), "HwStartIo"),
            (data.hw_find_adapter.is_none(), "HwFindAdapter"),
            (data.hw_reset_bus.is_none(), "HwResetBus"),
        ] {
            if missing {
                p.error = Some(MiniportError::MissingRoutine { name, routine });
                return ffi::status::INVALID_PARAMETER;
            }
        }
        // The modelled machine has one ISA bus: a call for any other bus finds nothing on it.
        let Some(interface) = glue::interface_from_c(data.adapter_interface_type) else {
            return ffi::status::INVALID_PARAMETER;
        };
        if interface != port::InterfaceType::Isa {
            return ffi::status::NO_SUCH_DEVICE;
        }
        let Some(hw) = p.hw.take() else { return ffi::status::NO_SUCH_DEVICE };
        let mp = CMiniport::new(data, hw_context, p.miniport.library.clone());
        let rust_init = HwInitializationData::<CMiniport> {
            adapter_interface_type: interface,
            hw_initialize: glue::initialize,
            hw_start_io: glue::start_io,
            hw_interrupt: data.hw_interrupt.map(|_| glue::interrupt as _),
            hw_find_adapter: glue::find_adapter,
            hw_reset_bus: glue::reset_bus,
            hw_dma_started: data.hw_dma_started.map(|_| glue::dma_started as _),
            hw_adapter_control: data.hw_adapter_control.map(|_| glue::adapter_control as _),
            map_buffers: data.map_buffers != 0,
            need_physical_addresses: data.need_physical_addresses != 0,
            tagged_queuing: data.tagged_queuing != 0,
            auto_request_sense: data.auto_request_sense != 0,
            multiple_request_per_lu: data.multiple_request_per_lu != 0,
        };
        match AdapterHandle::start(p.hal.clone(), rust_init, mp, hw, p.resources.clone(), p.options.clone()) {
            Ok(h) => {
                p.started = Some(h);
                ffi::status::SUCCESS
            }
            Err(e) => {
                let status = match e {
                    PortError::NotFound { .. } => ffi::status::NO_SUCH_DEVICE,
                    _ => ffi::status::DEVICE_DOES_NOT_EXIST,
                };
                p.error = Some(e.into());
                status
            }
        }
    })
}

extern "C" {
    /// `c/notification.c`: the variadic `ScsiPortNotification`, and the table that keeps every `ScsiPort*` routine in
    /// the program so that a loaded miniport finds them.
    static scsiport_exported_routines: [*const c_void; 0];
}

/// Make sure the linker keeps the exported routines in any program that starts a C miniport.
fn exports_linked() {
    std::hint::black_box(std::ptr::addr_of!(scsiport_exported_routines));
}
