//! The port side of a C miniport: its device extension, LU and SRB extensions and the `SCSI_REQUEST_BLOCK`s it sees
//! are real memory; the routines of its `HW_INITIALIZATION_DATA` run as the port's `Hw*` routines, and its
//! `ScsiPort*` calls reach the port through [`with_current`].
//!
//! Each SRB the port starts gets a C copy (a "mirror") that lives until the port takes the SRB back. After every
//! routine, and before every `ScsiPort*` call that acts on SRBs, the glue compares each mirror with what it last wrote:
//! a field the DDK lets a miniport write goes to the port through its checked setters; any other field the miniport
//! changed is reported as `srb-field-not-writable` and put back (docs/miniport-c.md).

use crate::ffi::{self, AccessRange, HwInitializationData as CInit, PhwTimer, ScsiRequestBlock};
use port::{
    FindAdapterStatus, LuAddress, PortConfigurationInformation, PortContext, Rule, SrbFlags, SrbFunction, SrbHandle,
    SrbStatus, SENSE_BUFFER_SIZE,
};
use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::ffi::c_void;
use std::ptr::NonNull;
use std::sync::Arc;

/// How many completed SRBs keep their C memory (and their pointer → SRB identity) after the port took them back, so
/// that a miniport that completes or maps one again is named by the verifier instead of reaching freed memory.
const QUARANTINE: usize = 1024;

/// Zeroed memory with 16-byte alignment that stays where it is (device, LU, SRB and uncached extensions).
pub(crate) struct ExtMem(Box<[u128]>);

impl ExtMem {
    pub(crate) fn new(bytes: usize) -> Self {
        ExtMem(vec![0u128; bytes.div_ceil(16).max(1)].into_boxed_slice())
    }
    pub(crate) fn ptr(&mut self) -> *mut c_void {
        self.0.as_mut_ptr().cast()
    }
}

/// A CPU-visible copy of an SRB's data buffer, 16-byte aligned like memory from the pool (a miniport reads an
/// `SRB_IO_CONTROL` header in place).
pub(crate) struct Shadow {
    mem: ExtMem,
    len: usize,
}

impl Shadow {
    fn new(len: usize) -> Self {
        Shadow { mem: ExtMem::new(len), len }
    }
    fn bytes(&self) -> &[u8] {
        // SAFETY: `mem` holds at least `len` initialized bytes (zeroed u128s), borrowed immutably with `self`.
        unsafe { std::slice::from_raw_parts(self.mem.0.as_ptr().cast::<u8>(), self.len) }
    }
    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: `mem` holds at least `len` initialized bytes, borrowed mutably with `self`; any byte value is valid.
        unsafe { std::slice::from_raw_parts_mut(self.mem.0.as_mut_ptr().cast::<u8>(), self.len) }
    }
}

/// The C view of one active SRB.
pub(crate) struct Mirror {
    pub(crate) c: ScsiRequestBlock,
    /// What the glue last wrote into `c`.
    snap: ScsiRequestBlock,
    sense: [u8; SENSE_BUFFER_SIZE],
    _ext: ExtMem,
    /// A CPU-visible copy of the data buffer (MapBuffers, or an IO_CONTROL request).
    shadow: Option<Shadow>,
    /// `DataBuffer` in the port's address space.
    model_data: u64,
    /// Whether CPU writes to the shadow go back to the caller's buffer (device → memory, IO_CONTROL).
    write_back: bool,
}

/// A C miniport as the port's device extension `E`.
pub struct CMiniport {
    pub(crate) init: CInit,
    pub(crate) hw_context: *mut c_void,
    pub(crate) dev_ext: ExtMem,
    lu_ext: HashMap<LuAddress, ExtMem>,
    srbs: HashMap<SrbHandle, Box<Mirror>>,
    by_ptr: HashMap<usize, SrbHandle>,
    retired: VecDeque<(usize, SrbHandle, Box<Mirror>)>,
    uncached: Vec<ExtMem>,
    access: Vec<AccessRange>,
    pub(crate) timer: Option<PhwTimer>,
    pending_callbacks: VecDeque<PhwTimer>,
    pub(crate) map_buffers: bool,
    pub(crate) argument_string: Vec<u8>,
    pub(crate) _library: Option<Arc<libloading::Library>>,
}

// SAFETY: the raw pointers in a CMiniport point into memory it owns (extensions, mirrors) or into the loaded library,
// which it keeps alive. The port moves the extension to its engine thread once and calls every routine there; nothing
// else holds these pointers.
unsafe impl Send for CMiniport {}

impl CMiniport {
    pub(crate) fn new(init: CInit, hw_context: *mut c_void, library: Option<Arc<libloading::Library>>) -> Self {
        CMiniport {
            init,
            hw_context,
            dev_ext: ExtMem::new(init.device_extension_size as usize),
            lu_ext: HashMap::new(),
            srbs: HashMap::new(),
            by_ptr: HashMap::new(),
            retired: VecDeque::new(),
            uncached: Vec::new(),
            access: Vec::new(),
            timer: None,
            pending_callbacks: VecDeque::new(),
            map_buffers: init.map_buffers != 0,
            argument_string: b"\0".to_vec(),
            _library: library,
        }
    }

    pub(crate) fn dev_ext_ptr(&mut self) -> *mut c_void {
        self.dev_ext.ptr()
    }

    /// The SRB behind a pointer the miniport passed: live, or completed and still in quarantine.
    pub(crate) fn handle_of(&self, srb: *mut ScsiRequestBlock) -> Option<SrbHandle> {
        self.by_ptr.get(&(srb as usize)).copied()
    }

    pub(crate) fn mirror_ptr(&mut self, h: SrbHandle) -> *mut ScsiRequestBlock {
        self.srbs.get_mut(&h).map_or(std::ptr::null_mut(), |m| &mut m.c as *mut ScsiRequestBlock)
    }

    /// `DataBuffer + (address − C DataBuffer)` in the port's address space.
    pub(crate) fn model_address(&self, srb: *mut ScsiRequestBlock, address: *mut c_void) -> Option<u64> {
        let h = self.handle_of(srb)?;
        let m = self.srbs.get(&h).or_else(|| self.retired.iter().find(|r| r.1 == h).map(|r| &r.2))?;
        Some(m.model_data.wrapping_add((address as u64).wrapping_sub(m.c.data_buffer as u64)))
    }

    pub(crate) fn lu_extension(&mut self, address: LuAddress) -> *mut c_void {
        let size = self.init.specific_lu_extension_size as usize;
        self.lu_ext.entry(address).or_insert_with(|| ExtMem::new(size)).ptr()
    }

    pub(crate) fn uncached_extension(&mut self, bytes: usize) -> *mut c_void {
        self.uncached.push(ExtMem::new(bytes));
        self.uncached.last_mut().map_or(std::ptr::null_mut(), ExtMem::ptr)
    }

    /// Make the C SRB for an SRB the port hands to `HwStartIo`.
    fn start_mirror(&mut self, ctx: &mut PortContext<'_, CMiniport>, h: SrbHandle) -> *mut ScsiRequestBlock {
        let map_buffers = self.map_buffers;
        let next = {
            let Some(a) = ctx.srb(h) else { return std::ptr::null_mut() };
            a.next_srb()
        };
        let next_ptr = next.map_or(std::ptr::null_mut(), |n| self.mirror_ptr(n));
        let Some(mut a) = ctx.srb(h) else { return std::ptr::null_mut() };
        let function = a.function();
        let address = a.address();
        let flags = a.srb_flags();
        let length = a.data_transfer_length();
        let model_data = a.data_buffer().0;
        let cpu_access = length > 0 && (map_buffers || function == SrbFunction::IO_CONTROL);
        let shadow = cpu_access.then(|| {
            let mut v = Shadow::new(length as usize);
            if !a.read_data(0, v.bytes_mut()) {
                v.bytes_mut().fill(0);
            }
            v
        });
        let write_back = cpu_access && (function == SrbFunction::IO_CONTROL || flags.contains(SrbFlags::DATA_IN));
        let mut cdb = [0u8; 16];
        let bytes = a.cdb();
        cdb[..bytes.len().min(16)].copy_from_slice(&bytes[..bytes.len().min(16)]);
        let c = ScsiRequestBlock {
            length: std::mem::size_of::<ScsiRequestBlock>() as u16,
            function: function.0,
            srb_status: a.srb_status().0,
            scsi_status: 0,
            path_id: address.path_id,
            target_id: address.target_id,
            lun: address.lun,
            queue_tag: a.queue_tag(),
            queue_action: a.queue_action(),
            cdb_length: a.cdb_length(),
            sense_info_buffer_length: a.sense_info_buffer_length(),
            srb_flags: flags.bits(),
            data_transfer_length: length,
            time_out_value: a.time_out_value(),
            data_buffer: model_data as *mut c_void,
            sense_info_buffer: std::ptr::null_mut(),
            next_srb: next_ptr,
            original_request: std::ptr::null_mut(),
            srb_extension: std::ptr::null_mut(),
            internal_status: 0,
            reserved: 0,
            cdb,
        };
        let mut m = Box::new(Mirror {
            c,
            snap: c,
            sense: [0; SENSE_BUFFER_SIZE],
            _ext: ExtMem::new(self.init.srb_extension_size as usize),
            shadow,
            model_data,
            write_back,
        });
        m.c.sense_info_buffer = m.sense.as_mut_ptr().cast();
        m.c.srb_extension = if self.init.srb_extension_size > 0 { m._ext.ptr() } else { std::ptr::null_mut() };
        if let Some(s) = m.shadow.as_mut() {
            m.c.data_buffer = s.mem.ptr();
        }
        m.snap = m.c;
        let ptr = &mut m.c as *mut ScsiRequestBlock;
        self.by_ptr.insert(ptr as usize, h);
        self.srbs.insert(h, m);
        ptr
    }

    /// Before a routine: CPU copies of data buffers see what the DMA moved meanwhile.
    fn refresh_shadows(&mut self, ctx: &mut PortContext<'_, CMiniport>) {
        for (h, m) in self.srbs.iter_mut() {
            if let Some(s) = m.shadow.as_mut() {
                if let Some(mut a) = ctx.srb(*h) {
                    let _ = a.read_data(0, s.bytes_mut());
                }
            }
        }
    }

    /// Hand the SRB fields the miniport wrote to the port (checked), report and undo the ones it may not write.
    pub(crate) fn sync(&mut self, ctx: &mut PortContext<'_, CMiniport>, h: SrbHandle) {
        let Some(m) = self.srbs.get_mut(&h) else { return };
        if !ctx.is_active(h) {
            return;
        }
        let (c, s) = (m.c, m.snap);
        let mut bad: Vec<String> = Vec::new();
        macro_rules! fixed {
            ($($name:literal => $f:ident),*) => {
                $( if c.$f != s.$f {
                    bad.push(format!("{} (from {:?} to {:?})", $name, s.$f, c.$f));
                    m.c.$f = s.$f;
                } )*
            };
        }
        fixed!("Length" => length, "Function" => function, "PathId" => path_id, "TargetId" => target_id,
            "Lun" => lun, "QueueTag" => queue_tag, "QueueAction" => queue_action, "CdbLength" => cdb_length,
            "TimeOutValue" => time_out_value, "DataBuffer" => data_buffer, "SenseInfoBuffer" => sense_info_buffer,
            "NextSrb" => next_srb, "OriginalRequest" => original_request, "SrbExtension" => srb_extension,
            "InternalStatus" => internal_status, "Reserved" => reserved, "Cdb" => cdb);
        let flag_change = c.srb_flags ^ s.srb_flags;
        let direction = SrbFlags::UNSPECIFIED_DIRECTION.bits();
        if flag_change & !direction != 0 {
            bad.push(format!("SrbFlags (from {:#x} to {:#x})", s.srb_flags, c.srb_flags));
            m.c.srb_flags = (s.srb_flags & !direction) | (c.srb_flags & direction);
        }
        for field in bad {
            ctx.report_violation(
                Rule::SrbFieldNotWritable,
                Some(h),
                format!("the C miniport wrote {field} of its SCSI_REQUEST_BLOCK; the port put it back"),
            );
        }
        let Some(m) = self.srbs.get_mut(&h) else { return };
        let Some(mut a) = ctx.srb(h) else { return };
        if flag_change & direction != 0 {
            a.set_direction(SrbFlags::from_bits_retain(m.c.srb_flags & direction));
        }
        if m.c.srb_status != s.srb_status {
            a.set_srb_status(SrbStatus(m.c.srb_status));
        }
        if m.c.scsi_status != s.scsi_status {
            a.set_scsi_status(m.c.scsi_status);
        }
        if m.c.data_transfer_length != s.data_transfer_length {
            a.set_data_transfer_length(m.c.data_transfer_length);
        }
        let autosense = SrbStatus(m.c.srb_status).autosense_valid();
        if m.c.sense_info_buffer_length != s.sense_info_buffer_length
            || (autosense && m.sense != [0; SENSE_BUFFER_SIZE])
        {
            let n = (m.c.sense_info_buffer_length as usize).min(SENSE_BUFFER_SIZE);
            a.set_sense(&m.sense[..n]);
        }
        if m.write_back {
            if let Some(s) = m.shadow.as_ref() {
                let _ = a.write_data(0, s.bytes());
            }
        }
        // What the port holds now (a refused write is undone in the C copy too).
        m.c.srb_status = a.srb_status().0;
        m.c.data_transfer_length = a.data_transfer_length();
        m.c.srb_flags = a.srb_flags().bits();
        m.c.sense_info_buffer_length = a.sense_info_buffer_length();
        m.snap = m.c;
    }

    /// Sync every live SRB.
    pub(crate) fn sync_all(&mut self, ctx: &mut PortContext<'_, CMiniport>) {
        let live: Vec<SrbHandle> = self.srbs.keys().copied().collect();
        for h in live {
            self.sync(ctx, h);
        }
    }

    /// Retire the C copies of SRBs the port took back.
    pub(crate) fn retire_finished(&mut self, ctx: &PortContext<'_, CMiniport>) {
        let done: Vec<SrbHandle> = self.srbs.keys().copied().filter(|h| !ctx.is_active(*h)).collect();
        for h in done {
            if let Some(mut m) = self.srbs.remove(&h) {
                let ptr = &mut m.c as *mut ScsiRequestBlock as usize;
                self.retired.push_back((ptr, h, m));
                if self.retired.len() > QUARANTINE {
                    if let Some((old, _, _)) = self.retired.pop_front() {
                        self.by_ptr.remove(&old);
                    }
                }
            }
        }
    }

    pub(crate) fn queue_callback(&mut self, routine: PhwTimer) {
        self.pending_callbacks.push_back(routine);
    }
}

type Ctx = PortContext<'static, CMiniport>;

thread_local! {
    /// The miniport and port context of the routine running on this thread (the engine thread), while C code runs.
    static CURRENT: Cell<Option<(NonNull<CMiniport>, NonNull<Ctx>)>> = const { Cell::new(None) };
}

/// Run `f` with the miniport and port of the routine that is calling into the port. `None` when no C routine runs on
/// this thread (a `ScsiPort*` call from elsewhere), or while another `ScsiPort*` call of the same routine is inside.
pub(crate) fn with_current<R>(f: impl FnOnce(&mut CMiniport, &mut PortContext<'_, CMiniport>) -> R) -> Option<R> {
    let (mut mp, mut ctx) = CURRENT.with(|c| c.take())?;
    // SAFETY: `call` stored these pointers from live `&mut` borrows that it does not use until the C routine returns;
    // taking them out of CURRENT makes this the only user until they are put back below.
    let r = unsafe { f(mp.as_mut(), ctx.as_mut()) };
    CURRENT.with(|c| c.set(Some((mp, ctx))));
    Some(r)
}

/// Call into the C miniport with `mp` and `ctx` reachable from its `ScsiPort*` calls, then reconcile its SRBs.
fn call<R>(mp: &mut CMiniport, ctx: &mut PortContext<'_, CMiniport>, f: impl FnOnce(*mut c_void) -> R) -> R {
    mp.refresh_shadows(ctx);
    let r = enter(mp, ctx, f);
    mp.sync_all(ctx);
    mp.retire_finished(ctx);
    // Deferred CallEnableInterrupts / CallDisableInterrupts routines run now, still serialized with HwInterrupt.
    while let Some(cb) = mp.pending_callbacks.pop_front() {
        // SAFETY: a routine the miniport registered, called with its own device extension.
        enter(mp, ctx, |ext| unsafe { cb(ext) });
        mp.sync_all(ctx);
        mp.retire_finished(ctx);
    }
    r
}

fn enter<R>(mp: &mut CMiniport, ctx: &mut PortContext<'_, CMiniport>, f: impl FnOnce(*mut c_void) -> R) -> R {
    let ext = mp.dev_ext_ptr();
    // While `f` runs the C code reaches `mp` and `ctx` only through these pointers (see `with_current`); neither
    // borrow is used again until `f` has returned and CURRENT is restored.
    let mp_ptr = NonNull::from(&mut *mp);
    let ctx_ptr = NonNull::from(&mut *ctx).cast::<Ctx>();
    let saved = CURRENT.with(|c| c.replace(Some((mp_ptr, ctx_ptr))));
    let r = f(ext);
    CURRENT.with(|c| c.set(saved));
    r
}

// ---- the Hw* routines the port calls ----------------------------------------------------------------------------

pub(crate) fn find_adapter(
    mp: &mut CMiniport,
    ctx: &mut PortContext<'_, CMiniport>,
    cfg: &mut PortConfigurationInformation,
) -> FindAdapterStatus {
    let Some(find) = mp.init.hw_find_adapter else { return FindAdapterStatus::NotFound };
    let ranges = mp.init.number_of_access_ranges.max(cfg.access_ranges.len() as u32) as usize;
    mp.access = vec![AccessRange::default(); ranges.max(1)];
    for (i, r) in cfg.access_ranges.iter().enumerate() {
        mp.access[i] = AccessRange {
            range_start: ffi::ScsiPhysicalAddress::from_u64(r.start as u64),
            range_length: r.length as u32,
            range_in_memory: 0,
        };
    }
    let mut c = to_c_config(cfg, mp);
    let mut again: u8 = 0;
    let hw_context = mp.hw_context;
    let arg = mp.argument_string.as_mut_ptr().cast();
    let status = call(mp, ctx, |ext| {
        // SAFETY: the miniport's routine with its device extension and a configuration that lives across the call.
        unsafe { find(ext, hw_context, std::ptr::null_mut(), arg, &mut c, &mut again) }
    });
    from_c_config(&c, mp, cfg);
    match status {
        1 => FindAdapterStatus::Found,
        0 => FindAdapterStatus::NotFound,
        3 => FindAdapterStatus::BadConfig,
        _ => FindAdapterStatus::Error,
    }
}

fn to_c_config(cfg: &PortConfigurationInformation, mp: &mut CMiniport) -> ffi::PortConfigurationInformation {
    ffi::PortConfigurationInformation {
        length: std::mem::size_of::<ffi::PortConfigurationInformation>() as u32,
        system_io_bus_number: cfg.system_io_bus_number,
        adapter_interface_type: interface_to_c(cfg.adapter_interface_type),
        bus_interrupt_level: cfg.bus_interrupt_level,
        bus_interrupt_vector: 0,
        interrupt_mode: 0,
        maximum_transfer_length: cfg.maximum_transfer_length,
        number_of_physical_breaks: cfg.number_of_physical_breaks,
        dma_channel: cfg.dma_channel,
        dma_port: cfg.dma_port,
        dma_width: match cfg.dma_width {
            hal::DmaWidth::Bits8 => 0,
            hal::DmaWidth::Bits16 => 1,
            hal::DmaWidth::Bits32 => 2,
        },
        dma_speed: match cfg.dma_speed {
            hal::DmaSpeed::Compatible => 0,
            hal::DmaSpeed::TypeA => 1,
            hal::DmaSpeed::TypeB => 2,
            hal::DmaSpeed::TypeC => 3,
            hal::DmaSpeed::TypeF => 4,
        },
        alignment_mask: cfg.alignment_mask,
        number_of_access_ranges: mp.access.len() as u32,
        access_ranges: mp.access.as_mut_ptr(),
        reserved: std::ptr::null_mut(),
        number_of_buses: cfg.number_of_buses,
        initiator_bus_id: cfg.initiator_bus_id,
        scatter_gather: cfg.scatter_gather as u8,
        master: cfg.master as u8,
        caches_data: cfg.caches_data as u8,
        adapter_scans_down: 0,
        atdisk_primary_claimed: 0,
        atdisk_secondary_claimed: 0,
        dma32_bit_addresses: cfg.dma_32bit_addresses as u8,
        demand_mode: cfg.demand_mode as u8,
        map_buffers: cfg.map_buffers as u8,
        need_physical_addresses: cfg.need_physical_addresses as u8,
        tagged_queuing: cfg.tagged_queuing as u8,
        auto_request_sense: cfg.auto_request_sense as u8,
        multiple_request_per_lu: cfg.multiple_request_per_lu as u8,
        receive_event: 0,
        real_mode_initialized: 0,
        buffer_access_scsi_port_controlled: 0,
        maximum_number_of_targets: cfg.maximum_number_of_targets,
        reserved_uchars: [0; 2],
        slot_number: 0,
        bus_interrupt_level2: 0,
        bus_interrupt_vector2: 0,
        interrupt_mode2: 0,
        dma_channel2: port::SP_UNINITIALIZED_VALUE,
        dma_port2: port::SP_UNINITIALIZED_VALUE,
        dma_width2: 0,
        dma_speed2: 0,
        device_extension_size: mp.init.device_extension_size,
        specific_lu_extension_size: mp.init.specific_lu_extension_size,
        srb_extension_size: mp.init.srb_extension_size,
        dma64_bit_addresses: 0,
        reset_target_supported: 0,
        maximum_number_of_logical_units: cfg.maximum_number_of_logical_units,
        wmi_data_provider: 0,
    }
}

fn from_c_config(c: &ffi::PortConfigurationInformation, mp: &mut CMiniport, cfg: &mut PortConfigurationInformation) {
    cfg.maximum_transfer_length = c.maximum_transfer_length;
    cfg.number_of_physical_breaks = c.number_of_physical_breaks;
    cfg.dma_channel = c.dma_channel;
    cfg.dma_port = c.dma_port;
    cfg.dma_width = match c.dma_width {
        1 => hal::DmaWidth::Bits16,
        2 => hal::DmaWidth::Bits32,
        _ => hal::DmaWidth::Bits8,
    };
    cfg.dma_speed = match c.dma_speed {
        1 => hal::DmaSpeed::TypeA,
        2 => hal::DmaSpeed::TypeB,
        3 => hal::DmaSpeed::TypeC,
        4 => hal::DmaSpeed::TypeF,
        _ => hal::DmaSpeed::Compatible,
    };
    cfg.alignment_mask = c.alignment_mask;
    let n = (c.number_of_access_ranges as usize).min(mp.access.len());
    cfg.access_ranges = mp.access[..n]
        .iter()
        .filter(|r| r.range_length > 0 && r.range_in_memory == 0)
        .map(|r| port::AccessRange {
            start: r.range_start.quad_part() as u16,
            length: r.range_length.min(u16::MAX as u32) as u16,
        })
        .collect();
    cfg.number_of_buses = c.number_of_buses;
    cfg.initiator_bus_id = c.initiator_bus_id;
    cfg.scatter_gather = c.scatter_gather != 0;
    cfg.master = c.master != 0;
    cfg.caches_data = c.caches_data != 0;
    cfg.dma_32bit_addresses = c.dma32_bit_addresses != 0;
    cfg.demand_mode = c.demand_mode != 0;
    cfg.map_buffers = c.map_buffers != 0;
    cfg.need_physical_addresses = c.need_physical_addresses != 0;
    cfg.tagged_queuing = c.tagged_queuing != 0;
    cfg.auto_request_sense = c.auto_request_sense != 0;
    cfg.multiple_request_per_lu = c.multiple_request_per_lu != 0;
    cfg.maximum_number_of_targets = c.maximum_number_of_targets;
    cfg.maximum_number_of_logical_units = c.maximum_number_of_logical_units;
    // The port takes pass-through requests for any miniport, as SCSI Port does with IOCTL_SCSI_PASS_THROUGH: a C
    // miniport walks one that is larger than its MaximumTransferLength in sub-ranges.
    cfg.application_dedicated = true;
    mp.map_buffers = cfg.map_buffers;
}

fn interface_to_c(t: port::InterfaceType) -> i32 {
    match t {
        port::InterfaceType::Internal => ffi::interface::INTERNAL,
        port::InterfaceType::Isa => ffi::interface::ISA,
        port::InterfaceType::Eisa => ffi::interface::EISA,
        port::InterfaceType::MicroChannel => ffi::interface::MICRO_CHANNEL,
        port::InterfaceType::PciBus => ffi::interface::PCI_BUS,
    }
}

pub(crate) fn interface_from_c(t: i32) -> Option<port::InterfaceType> {
    Some(match t {
        ffi::interface::INTERNAL => port::InterfaceType::Internal,
        ffi::interface::ISA => port::InterfaceType::Isa,
        ffi::interface::EISA => port::InterfaceType::Eisa,
        ffi::interface::MICRO_CHANNEL => port::InterfaceType::MicroChannel,
        ffi::interface::PCI_BUS => port::InterfaceType::PciBus,
        _ => return None,
    })
}

pub(crate) fn initialize(mp: &mut CMiniport, ctx: &mut PortContext<'_, CMiniport>) -> bool {
    let Some(init) = mp.init.hw_initialize else { return false };
    // SAFETY: the miniport's routine with its device extension.
    call(mp, ctx, |ext| unsafe { init(ext) }) != 0
}

pub(crate) fn start_io(mp: &mut CMiniport, ctx: &mut PortContext<'_, CMiniport>, h: SrbHandle) -> bool {
    let Some(start) = mp.init.hw_start_io else { return true };
    let srb = mp.start_mirror(ctx, h);
    if srb.is_null() {
        return true;
    }
    // SAFETY: the miniport's routine with its device extension and an SRB that lives until the port takes it back.
    call(mp, ctx, |ext| unsafe { start(ext, srb) });
    true
}

pub(crate) fn interrupt(mp: &mut CMiniport, ctx: &mut PortContext<'_, CMiniport>) -> bool {
    let Some(isr) = mp.init.hw_interrupt else { return false };
    // SAFETY: the miniport's routine with its device extension.
    call(mp, ctx, |ext| unsafe { isr(ext) }) != 0
}

pub(crate) fn dma_started(mp: &mut CMiniport, ctx: &mut PortContext<'_, CMiniport>) {
    if let Some(started) = mp.init.hw_dma_started {
        // SAFETY: the miniport's routine with its device extension.
        call(mp, ctx, |ext| unsafe { started(ext) });
    }
}

pub(crate) fn reset_bus(mp: &mut CMiniport, ctx: &mut PortContext<'_, CMiniport>, path_id: u8) -> bool {
    let Some(reset) = mp.init.hw_reset_bus else { return false };
    // SAFETY: the miniport's routine with its device extension.
    call(mp, ctx, |ext| unsafe { reset(ext, path_id as u32) }) != 0
}

pub(crate) fn timer(mp: &mut CMiniport, ctx: &mut PortContext<'_, CMiniport>) {
    if let Some(t) = mp.timer.take() {
        // SAFETY: the timer routine the miniport asked for, with its device extension.
        call(mp, ctx, |ext| unsafe { t(ext) });
    }
}

pub(crate) fn adapter_control(
    mp: &mut CMiniport,
    ctx: &mut PortContext<'_, CMiniport>,
    t: port::AdapterControlType,
) -> port::AdapterControlStatus {
    let Some(control) = mp.init.hw_adapter_control else { return port::AdapterControlStatus::Unsuccessful };
    let code = match t {
        port::AdapterControlType::QuerySupportedControlTypes => 0,
        port::AdapterControlType::StopAdapter => 1,
        port::AdapterControlType::RestartAdapter => 2,
    };
    // The query's SCSI_SUPPORTED_CONTROL_TYPE_LIST: MaxControlType, then one BOOLEAN per type.
    let mut list = [0u8; 16];
    list[..4].copy_from_slice(&5u32.to_le_bytes());
    let params: *mut c_void = if code == 0 { list.as_mut_ptr().cast() } else { std::ptr::null_mut() };
    // SAFETY: the miniport's routine with its device extension and a parameter block that outlives the call.
    let r = call(mp, ctx, |ext| unsafe { control(ext, code, params) });
    if r == 0 {
        port::AdapterControlStatus::Success
    } else {
        port::AdapterControlStatus::Unsuccessful
    }
}
