//! The Linux kernel PPS API (`<linux/pps.h>`): structures and ioctls.
//!
//! The request codes of these ioctls encode the size of a *pointer*
//! (the header declares them with `struct pps_kparams *`), not of the
//! structure, so they are declared with nix's `_bad` macros and codes
//! computed from `size_of::<*mut T>()`.

use std::mem::size_of;

pub const PPS_API_VERS_1: i32 = 1;
pub const PPS_CAPTUREASSERT: i32 = 0x01;
pub const PPS_CAPTURECLEAR: i32 = 0x02;
pub const PPS_OFFSETASSERT: i32 = 0x10;
pub const PPS_OFFSETCLEAR: i32 = 0x20;
pub const PPS_CANWAIT: i32 = 0x100;
pub const PPS_TSFMT_TSPEC: i32 = 0x1000;
/// `PPS_TIME_INVALID` in a timeout: wait without limit.
pub const PPS_TIME_INVALID: u32 = 1;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PpsKtime {
    pub sec: i64,
    pub nsec: i32,
    pub flags: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PpsKinfo {
    pub assert_sequence: u32,
    pub clear_sequence: u32,
    pub assert_tu: PpsKtime,
    pub clear_tu: PpsKtime,
    pub current_mode: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PpsKparams {
    pub api_version: i32,
    pub mode: i32,
    pub assert_off_tu: PpsKtime,
    pub clear_off_tu: PpsKtime,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PpsFdata {
    pub info: PpsKinfo,
    pub timeout: PpsKtime,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PpsBindArgs {
    pub tsformat: i32,
    pub edge: i32,
    pub consumer: i32,
}

nix::ioctl_read_bad!(
    pps_getparams,
    nix::request_code_read!(b'p', 0xa1, size_of::<*mut PpsKparams>()),
    PpsKparams
);
nix::ioctl_write_ptr_bad!(
    pps_setparams,
    nix::request_code_write!(b'p', 0xa2, size_of::<*mut PpsKparams>()),
    PpsKparams
);
nix::ioctl_read_bad!(
    pps_getcap,
    nix::request_code_read!(b'p', 0xa3, size_of::<*mut i32>()),
    i32
);
nix::ioctl_readwrite_bad!(
    pps_fetch,
    nix::request_code_readwrite!(b'p', 0xa4, size_of::<*mut PpsFdata>()),
    PpsFdata
);
nix::ioctl_write_ptr_bad!(
    pps_kc_bind,
    nix::request_code_write!(b'p', 0xa5, size_of::<*mut PpsBindArgs>()),
    PpsBindArgs
);

/// The request codes, for tests and diagnostics.
pub fn request_codes() -> [(&'static str, u64); 5] {
    [
        (
            "PPS_GETPARAMS",
            nix::request_code_read!(b'p', 0xa1, size_of::<*mut PpsKparams>()) as u64,
        ),
        (
            "PPS_SETPARAMS",
            nix::request_code_write!(b'p', 0xa2, size_of::<*mut PpsKparams>()) as u64,
        ),
        (
            "PPS_GETCAP",
            nix::request_code_read!(b'p', 0xa3, size_of::<*mut i32>()) as u64,
        ),
        (
            "PPS_FETCH",
            nix::request_code_readwrite!(b'p', 0xa4, size_of::<*mut PpsFdata>()) as u64,
        ),
        (
            "PPS_KC_BIND",
            nix::request_code_write!(b'p', 0xa5, size_of::<*mut PpsBindArgs>()) as u64,
        ),
    ]
}

/// Which edge of the pulse marks the second.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PpsEdge {
    Assert,
    Clear,
}

impl PpsEdge {
    pub fn capture_mode(self) -> i32 {
        match self {
            Self::Assert => PPS_CAPTUREASSERT,
            Self::Clear => PPS_CAPTURECLEAR,
        }
    }

    /// The (sequence, time) of this edge in a fetch result.
    pub fn pick(self, info: &PpsKinfo) -> (u32, PpsKtime) {
        match self {
            Self::Assert => (info.assert_sequence, info.assert_tu),
            Self::Clear => (info.clear_sequence, info.clear_tu),
        }
    }
}

/// Pulses missed between two sequence numbers (the counter wraps).
pub fn missed_between(previous: u32, current: u32) -> u32 {
    current.wrapping_sub(previous).saturating_sub(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn struct_sizes_match_the_kernel_uapi() {
        // Values from /usr/include/linux/pps.h (linux-libc-dev), x86_64 and aarch64.
        assert_eq!(size_of::<PpsKtime>(), 16);
        assert_eq!(size_of::<PpsKinfo>(), 48);
        assert_eq!(size_of::<PpsKparams>(), 40);
        assert_eq!(size_of::<PpsFdata>(), 64);
        assert_eq!(size_of::<PpsBindArgs>(), 12);
        assert_eq!(std::mem::offset_of!(PpsKinfo, assert_tu), 8);
        assert_eq!(std::mem::offset_of!(PpsKinfo, current_mode), 40);
        assert_eq!(std::mem::offset_of!(PpsFdata, timeout), 48);
    }

    #[cfg(target_pointer_width = "64")]
    #[test]
    fn request_codes_match_the_kernel_uapi() {
        // As printed by a C program including <linux/pps.h> on a 64-bit host.
        let want = [
            0x8008_70a1u64,
            0x4008_70a2,
            0x8008_70a3,
            0xc008_70a4,
            0x4008_70a5,
        ];
        for ((name, code), want) in request_codes().into_iter().zip(want) {
            assert_eq!(code, want, "{name}");
        }
    }

    #[test]
    fn sequence_gaps_count_missed_pulses() {
        assert_eq!(missed_between(5, 6), 0);
        assert_eq!(missed_between(5, 9), 3);
        assert_eq!(missed_between(u32::MAX, 1), 1);
        assert_eq!(missed_between(7, 7), 0);
    }

    #[test]
    fn fetching_from_a_non_pps_file_fails_cleanly() {
        use std::os::fd::AsRawFd;
        let f = std::fs::File::open("/dev/null").unwrap();
        let mut data = PpsFdata::default();
        // SAFETY: data is a valid PpsFdata for the duration of the call.
        let r = unsafe { pps_fetch(f.as_raw_fd(), &mut data) };
        assert!(r.is_err());
    }
}
