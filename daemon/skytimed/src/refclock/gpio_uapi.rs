//! The GPIO character device, v2 line ABI (`<linux/gpio.h>`): enough to
//! request one input line with edge events stamped by CLOCK_REALTIME, for
//! kernels without the pps-gpio driver.

pub const GPIO_MAX_NAME_SIZE: usize = 32;
pub const GPIO_V2_LINES_MAX: usize = 64;
pub const GPIO_V2_LINE_NUM_ATTRS_MAX: usize = 10;

pub const GPIO_V2_LINE_FLAG_ACTIVE_LOW: u64 = 1 << 1;
pub const GPIO_V2_LINE_FLAG_INPUT: u64 = 1 << 2;
pub const GPIO_V2_LINE_FLAG_EDGE_RISING: u64 = 1 << 4;
pub const GPIO_V2_LINE_FLAG_EDGE_FALLING: u64 = 1 << 5;
pub const GPIO_V2_LINE_FLAG_BIAS_DISABLED: u64 = 1 << 10;
pub const GPIO_V2_LINE_FLAG_EVENT_CLOCK_REALTIME: u64 = 1 << 11;

pub const GPIO_V2_LINE_EVENT_RISING_EDGE: u32 = 1;
pub const GPIO_V2_LINE_EVENT_FALLING_EDGE: u32 = 2;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct GpioV2LineAttribute {
    pub id: u32,
    pub padding: u32,
    /// The union of flags / values / debounce_period_us.
    pub value: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct GpioV2LineConfigAttribute {
    pub attr: GpioV2LineAttribute,
    pub mask: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct GpioV2LineConfig {
    pub flags: u64,
    pub num_attrs: u32,
    pub padding: [u32; 5],
    pub attrs: [GpioV2LineConfigAttribute; GPIO_V2_LINE_NUM_ATTRS_MAX],
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct GpioV2LineRequest {
    pub offsets: [u32; GPIO_V2_LINES_MAX],
    pub consumer: [u8; GPIO_MAX_NAME_SIZE],
    pub config: GpioV2LineConfig,
    pub num_lines: u32,
    pub event_buffer_size: u32,
    pub padding: [u32; 5],
    /// Filled by the kernel: the line's file descriptor.
    pub fd: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GpioV2LineEvent {
    pub timestamp_ns: u64,
    pub id: u32,
    pub offset: u32,
    pub seqno: u32,
    pub line_seqno: u32,
    pub padding: [u32; 6],
}

impl GpioV2LineEvent {
    /// Decodes one event as read from the line file descriptor.
    pub fn from_bytes(b: &[u8; 48]) -> Self {
        let u32_at = |i: usize| u32::from_ne_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        Self {
            timestamp_ns: u64::from_ne_bytes(b[0..8].try_into().expect("8 bytes")),
            id: u32_at(8),
            offset: u32_at(12),
            seqno: u32_at(16),
            line_seqno: u32_at(20),
            padding: [0; 6],
        }
    }
}

impl GpioV2LineRequest {
    /// An input request for `line`, events on `rising` or falling edges,
    /// timestamps from CLOCK_REALTIME.
    pub fn pps_input(line: u32, rising: bool, consumer: &str) -> Self {
        let mut consumer_buf = [0u8; GPIO_MAX_NAME_SIZE];
        for (d, s) in consumer_buf
            .iter_mut()
            .zip(consumer.bytes().take(GPIO_MAX_NAME_SIZE - 1))
        {
            *d = s;
        }
        let edge = if rising {
            GPIO_V2_LINE_FLAG_EDGE_RISING
        } else {
            GPIO_V2_LINE_FLAG_EDGE_FALLING
        };
        let mut offsets = [0u32; GPIO_V2_LINES_MAX];
        offsets[0] = line;
        Self {
            offsets,
            consumer: consumer_buf,
            config: GpioV2LineConfig {
                flags: GPIO_V2_LINE_FLAG_INPUT | edge | GPIO_V2_LINE_FLAG_EVENT_CLOCK_REALTIME,
                ..Default::default()
            },
            num_lines: 1,
            event_buffer_size: 16,
            padding: [0; 5],
            fd: -1,
        }
    }
}

nix::ioctl_readwrite!(gpio_v2_get_line, 0xB4, 0x07, GpioV2LineRequest);

/// GPIO_V2_GET_LINE_IOCTL, for tests and diagnostics.
pub fn get_line_request_code() -> u64 {
    nix::request_code_readwrite!(0xB4, 0x07, std::mem::size_of::<GpioV2LineRequest>()) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::size_of;

    #[test]
    fn struct_sizes_match_the_kernel_uapi() {
        // Values from /usr/include/linux/gpio.h (linux-libc-dev).
        assert_eq!(size_of::<GpioV2LineAttribute>(), 16);
        assert_eq!(size_of::<GpioV2LineConfigAttribute>(), 24);
        assert_eq!(size_of::<GpioV2LineConfig>(), 272);
        assert_eq!(size_of::<GpioV2LineRequest>(), 592);
        assert_eq!(size_of::<GpioV2LineEvent>(), 48);
        assert_eq!(std::mem::offset_of!(GpioV2LineRequest, config), 288);
        assert_eq!(std::mem::offset_of!(GpioV2LineRequest, fd), 588);
    }

    #[test]
    fn request_code_matches_the_kernel_uapi() {
        // _IOWR(0xB4, 0x07, struct gpio_v2_line_request) as printed by C.
        assert_eq!(get_line_request_code(), 0xc250_b407);
    }

    #[test]
    fn pps_request_asks_for_realtime_edges() {
        let r = GpioV2LineRequest::pps_input(4, true, "skytime-pps");
        assert_eq!(r.offsets[0], 4);
        assert_eq!(r.num_lines, 1);
        assert_ne!(r.config.flags & GPIO_V2_LINE_FLAG_EVENT_CLOCK_REALTIME, 0);
        assert_ne!(r.config.flags & GPIO_V2_LINE_FLAG_EDGE_RISING, 0);
        assert_eq!(r.config.flags & GPIO_V2_LINE_FLAG_EDGE_FALLING, 0);
        assert_eq!(&r.consumer[..11], b"skytime-pps");
        let mut raw = [0u8; 48];
        raw[0..8].copy_from_slice(&1_800_000_000_123_456_789u64.to_ne_bytes());
        raw[8..12].copy_from_slice(&GPIO_V2_LINE_EVENT_RISING_EDGE.to_ne_bytes());
        raw[12..16].copy_from_slice(&4u32.to_ne_bytes());
        raw[20..24].copy_from_slice(&77u32.to_ne_bytes());
        let e = GpioV2LineEvent::from_bytes(&raw);
        assert_eq!(
            (e.timestamp_ns, e.id, e.offset, e.line_seqno),
            (1_800_000_000_123_456_789, 1, 4, 77)
        );
    }
}
