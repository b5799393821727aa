//! AMX (Intel Advanced Matrix Extensions, Xeon since Sapphire Rapids): eight tile registers of
//! up to 16 rows × 64 bytes and a tile multiply, `tdpbusd`, that adds a 16 × 64 u8 tile times a
//! 64 × 16 s8 tile into a 16 × 16 i32 tile (16,384 multiply-adds per instruction, about 1,024
//! per cycle: eight to sixteen times what zmm `vpdpbusd` does). Only the int8 layer runs on it ([`qgemm`]); its epilogue and
//! the activations' quantization are the AVX-512 ones.
//!
//! The tile instructions are written as inline assembly: Rust's AMX intrinsics are not
//! stable. A tile register is named in the instruction itself, so each operation is a macro
//! over the register number.
//!
//! **Using AMX takes three checks** ([`has_amx`]): the CPU has AMX-TILE and AMX-INT8 (CPUID
//! leaf 7), the OS saves tile state on a context switch (XCR0 bits 17 and 18), and on Linux the
//! process has asked for the 8 KiB tile-data state (`arch_prctl(ARCH_REQ_XCOMP_PERM)`), without
//! which the first tile instruction is killed with SIGILL. Elsewhere than Linux, AMX is not
//! used.

mod qgemm;

/// The AMX int8 kernels, as a kernel type (see `dispatch_int8!` in [`super::qgemm`]); code
/// runs on it only through an [`Int8Path`](super::qgemm::Int8Path) made where [`has_amx`] holds.
pub(crate) struct Amx;

/// True when this process may run the AMX int8 kernels: AMX-TILE and AMX-INT8, tile state
/// enabled by the OS, the tile-data permission granted (asked for once, on the first call),
/// and the AVX-512 VNNI features the AMX path leans on (its epilogue and quantization are the
/// AVX-512 ones).
pub(crate) fn has_amx() -> bool {
    static GRANTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *GRANTED.get_or_init(|| cpu_has_amx() && os_saves_tiles() && request_tile_data())
}

/// CPUID leaf 7: AMX-TILE (EDX bit 24) and AMX-INT8 (EDX bit 25), with the AVX-512 VNNI path.
fn cpu_has_amx() -> bool {
    use std::arch::x86_64::{__cpuid, __cpuid_count};
    if __cpuid(0).eax < 7 || !super::qgemm::has_vnni() {
        return false;
    }
    let edx = __cpuid_count(7, 0).edx;
    edx & (1 << 24) != 0 && edx & (1 << 25) != 0
}

/// XCR0 bits 17 (XTILECFG) and 18 (XTILEDATA): the OS saves tile state across context switches.
fn os_saves_tiles() -> bool {
    use std::arch::x86_64::__cpuid;
    // OSXSAVE (CPUID leaf 1, ECX bit 27): XGETBV may be executed.
    if __cpuid(1).ecx & (1 << 27) == 0 {
        return false;
    }
    // SAFETY: OSXSAVE is set (checked above), so XGETBV exists and XCR0 is readable.
    let xcr0 = unsafe { xgetbv0() };
    xcr0 & (0b11 << 17) == 0b11 << 17
}

/// XCR0, read with XGETBV.
///
/// # Safety
/// The CPU has XSAVE and the OS enabled it (CPUID leaf 1, ECX bit 27).
#[target_feature(enable = "xsave")]
unsafe fn xgetbv0() -> u64 {
    // SAFETY: the caller's contract.
    unsafe { std::arch::x86_64::_xgetbv(0) }
}

/// Asks Linux for the tile-data state for this process (`ARCH_REQ_XCOMP_PERM` with
/// `XFEATURE_XTILEDATA`); true when granted.
#[cfg(target_os = "linux")]
fn request_tile_data() -> bool {
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_long = 18;
    // SAFETY: arch_prctl with ARCH_REQ_XCOMP_PERM takes two integers and touches no memory of
    // ours; a kernel without AMX support returns an error, which is the answer.
    let granted = unsafe {
        libc::syscall(
            libc::SYS_arch_prctl,
            ARCH_REQ_XCOMP_PERM,
            XFEATURE_XTILEDATA,
        )
    };
    granted == 0
}

#[cfg(not(target_os = "linux"))]
fn request_tile_data() -> bool {
    false
}

/// The 64-byte operand of `ldtilecfg`: palette 1, and each tile's rows and bytes per row (a
/// tile left at 0 × 0 is unconfigured and must not be used).
#[repr(C, align(64))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct TileConfig {
    palette: u8,
    start_row: u8,
    reserved: [u8; 14],
    bytes_per_row: [u16; 16],
    rows: [u8; 16],
}

impl TileConfig {
    /// Palette 1 with every tile unconfigured.
    fn empty() -> TileConfig {
        TileConfig {
            palette: 1,
            start_row: 0,
            reserved: [0; 14],
            bytes_per_row: [0; 16],
            rows: [0; 16],
        }
    }

    /// Sets tile `t` to `rows` rows of `bytes` bytes (at most 16 × 64).
    fn set(&mut self, t: usize, rows: usize, bytes: usize) {
        assert!(
            rows <= 16 && bytes <= 64 && t < 8,
            "tile {t}: {rows} × {bytes}"
        );
        if rows == 0 || bytes == 0 {
            return;
        }
        self.rows[t] = rows as u8;
        self.bytes_per_row[t] = bytes as u16;
    }
}

/// Loads `config` into the tile unit (every tile is zeroed).
///
/// # Safety
/// [`has_amx`] holds, and `config` is valid for palette 1 (each tile at most 16 × 64).
#[inline(always)]
unsafe fn load_config(config: &TileConfig) {
    // SAFETY: the caller's contract; `ldtilecfg` reads the 64 bytes of `config`.
    unsafe {
        std::arch::asm!("ldtilecfg [{}]", in(reg) config, options(nostack, readonly, preserves_flags));
    }
}

/// Returns the tile unit to its initial state, so that the OS need not save tile data for
/// this thread until it configures tiles again.
///
/// # Safety
/// [`has_amx`] holds.
#[inline(always)]
unsafe fn release() {
    // SAFETY: the caller's contract.
    unsafe { std::arch::asm!("tilerelease", options(nostack, nomem, preserves_flags)) };
}

/// `tilezero tmm$t`.
macro_rules! tile_zero {
    ($t:literal) => {
        std::arch::asm!(
            concat!("tilezero tmm", $t),
            options(nostack, nomem, preserves_flags)
        )
    };
}

/// `tileloadd tmm$t, [$base + $stride]`: the tile's rows from `$base`, `$stride` bytes apart.
macro_rules! tile_load {
    ($t:literal, $base:expr, $stride:expr) => {
        std::arch::asm!(
            concat!("tileloadd tmm", $t, ", [{base} + {stride}*1]"),
            base = in(reg) $base,
            stride = in(reg) $stride,
            options(nostack, readonly, preserves_flags)
        )
    };
}

/// `tilestored [$base + $stride], tmm$t`: the tile's rows to `$base`, `$stride` bytes apart.
macro_rules! tile_store {
    ($t:literal, $base:expr, $stride:expr) => {
        std::arch::asm!(
            concat!("tilestored [{base} + {stride}*1], tmm", $t),
            base = in(reg) $base,
            stride = in(reg) $stride,
            options(nostack, preserves_flags)
        )
    };
}

/// `tdpbusd tmm$c, tmm$a, tmm$b`: `C[m][n] += Σ_i A[m][i]·B[i/4][4n + i%4]`, A's bytes
/// unsigned, B's signed, sums in i32 without saturation.
macro_rules! tile_dot {
    ($c:literal, $a:literal, $b:literal) => {
        std::arch::asm!(
            concat!("tdpbusd tmm", $c, ", tmm", $a, ", tmm", $b),
            options(nostack, nomem, preserves_flags)
        )
    };
}

use {tile_dot, tile_load, tile_store, tile_zero};
