//! The system clock behind the `Clock` trait: CLOCK_REALTIME and
//! adjtimex(2).
//!
//! A measure-only clock (`steer = false`) refuses every write in this
//! layer too, so that no bug above can steer a shared machine: only
//! `adjtimex` with `modes = 0` (a pure read) is ever issued.

use skytime_discipline::{Clock, KernelLeap, KernelStatus};
use skytime_proto::{NtpDuration, NtpTimestamp};

/// adjtimex's frequency unit: ppm with a 16-bit binary fraction.
const FREQ_SCALE: f64 = 65_536.0;

#[derive(Debug, thiserror::Error)]
pub enum KernelClockError {
    #[error("{call} failed: {source} (steering the clock needs CAP_SYS_TIME)")]
    Sys {
        call: &'static str,
        source: std::io::Error,
    },
    #[error("measure-only mode: refusing to {0} the system clock")]
    ReadOnly(&'static str),
}

/// The kernel's clock.
#[derive(Debug)]
pub struct KernelClock {
    steer: bool,
}

impl KernelClock {
    pub fn new(steer: bool) -> Self {
        Self { steer }
    }

    /// A read-only adjtimex (modes = 0).
    pub fn query() -> Result<(libc::timex, i32), KernelClockError> {
        // SAFETY: timex is plain old data; all-zero is a valid value.
        let mut tx: libc::timex = unsafe { std::mem::zeroed() };
        tx.modes = 0;
        // SAFETY: tx is a valid, exclusively borrowed timex; modes=0 reads only.
        let state = unsafe { libc::adjtimex(&mut tx) };
        if state < 0 {
            return Err(KernelClockError::Sys {
                call: "adjtimex(read)",
                source: std::io::Error::last_os_error(),
            });
        }
        Ok((tx, state))
    }

    /// Whether the kernel is in or just after a leap second (TIME_OOP or
    /// TIME_WAIT): the system clock has taken it.
    pub fn leap_in_progress() -> bool {
        Self::query().is_ok_and(|(_, state)| state == libc::TIME_OOP || state == libc::TIME_WAIT)
    }

    fn write(&self, what: &'static str, tx: &mut libc::timex) -> Result<(), KernelClockError> {
        if !self.steer || tx.modes == 0 {
            return Err(KernelClockError::ReadOnly(what));
        }
        // SAFETY: tx is a valid, exclusively borrowed timex.
        let r = unsafe { libc::adjtimex(tx) };
        if r < 0 {
            return Err(KernelClockError::Sys {
                call: "adjtimex",
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(())
    }
}

/// Kernel status bits for a discipline status, keeping unrelated bits.
pub fn status_bits(current: i32, st: &KernelStatus) -> i32 {
    let mut bits = current
        & !(libc::STA_UNSYNC | libc::STA_INS | libc::STA_DEL | libc::STA_PLL | libc::STA_FLL);
    if !st.synchronized {
        bits |= libc::STA_UNSYNC;
    }
    match st.leap {
        KernelLeap::Insert => bits |= libc::STA_INS,
        KernelLeap::Delete => bits |= libc::STA_DEL,
        KernelLeap::None => {}
    }
    bits
}

/// adjtimex `freq` field for a frequency in ppm.
pub fn freq_field(ppm: f64) -> libc::c_long {
    (ppm.clamp(-500.0, 500.0) * FREQ_SCALE).round() as libc::c_long
}

impl Clock for KernelClock {
    type Error = KernelClockError;

    fn now(&self) -> Result<NtpTimestamp, KernelClockError> {
        super::realtime::read().map_err(|e| KernelClockError::Sys {
            call: "clock_gettime",
            source: std::io::Error::from(e),
        })
    }

    fn frequency_ppm(&self) -> Result<f64, KernelClockError> {
        Ok(Self::query()?.0.freq as f64 / FREQ_SCALE)
    }

    fn set_frequency_ppm(&mut self, ppm: f64) -> Result<(), KernelClockError> {
        // SAFETY: all-zero timex is valid.
        let mut tx: libc::timex = unsafe { std::mem::zeroed() };
        tx.modes = libc::ADJ_FREQUENCY as _;
        tx.freq = freq_field(ppm);
        self.write("set the frequency of", &mut tx)
    }

    fn step(&mut self, offset: NtpDuration) -> Result<(), KernelClockError> {
        // SAFETY: all-zero timex is valid.
        let mut tx: libc::timex = unsafe { std::mem::zeroed() };
        tx.modes = (libc::ADJ_SETOFFSET | libc::ADJ_NANO) as _;
        let nanos = offset.to_nanos();
        tx.time.tv_sec = nanos.div_euclid(1_000_000_000) as _;
        tx.time.tv_usec = nanos.rem_euclid(1_000_000_000) as _;
        self.write("step", &mut tx)
    }

    fn set_status(&mut self, st: &KernelStatus) -> Result<(), KernelClockError> {
        if !self.steer {
            return Err(KernelClockError::ReadOnly("set the status of"));
        }
        let (cur, _) = Self::query()?;
        // SAFETY: all-zero timex is valid.
        let mut tx: libc::timex = unsafe { std::mem::zeroed() };
        tx.modes = (libc::ADJ_STATUS | libc::ADJ_MAXERROR | libc::ADJ_ESTERROR) as _;
        tx.status = status_bits(cur.status, st);
        tx.maxerror = st.maxerror_us.clamp(0, 16_000_000) as _;
        tx.esterror = st.esterror_us.clamp(0, 16_000_000) as _;
        self.write("set the status of", &mut tx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measure_only_refuses_every_write_and_reads_work() {
        let mut c = KernelClock::new(false);
        assert!(matches!(
            c.set_frequency_ppm(1.0),
            Err(KernelClockError::ReadOnly(_))
        ));
        assert!(matches!(
            c.step(NtpDuration::from_nanos(1)),
            Err(KernelClockError::ReadOnly(_))
        ));
        assert!(matches!(
            c.set_status(&KernelStatus::UNSYNCHRONIZED),
            Err(KernelClockError::ReadOnly(_))
        ));
        let f = c
            .frequency_ppm()
            .expect("read-only adjtimex works unprivileged");
        assert!(f.abs() <= 500.0);
        let now = c.now().unwrap();
        assert!(
            now.seconds() > 3_900_000_000,
            "clock reads a plausible date"
        );
    }

    #[test]
    fn status_bits_keep_others_and_set_ours() {
        let st = KernelStatus {
            synchronized: true,
            maxerror_us: 5,
            esterror_us: 1,
            leap: KernelLeap::Insert,
        };
        let bits = status_bits(libc::STA_UNSYNC | libc::STA_PPSFREQ | libc::STA_PLL, &st);
        assert_eq!(bits, libc::STA_INS | libc::STA_PPSFREQ);
        assert_eq!(
            status_bits(0, &KernelStatus::UNSYNCHRONIZED),
            libc::STA_UNSYNC
        );
        assert_eq!(freq_field(1.0), 65_536);
        assert_eq!(freq_field(-900.0), -500 * 65_536);
    }
}
