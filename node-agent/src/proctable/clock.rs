//! The clocks the kernel's timestamps are read against: boot time to wall-clock time, and to
//! the clock ticks `/proc/<pid>/stat` counts a process's start time in.

use peregrine_event::Timestamp;

/// Converts kernel boot-time nanoseconds to wall-clock time and to `/proc` clock ticks.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// CLOCK_REALTIME - CLOCK_BOOTTIME, in ns.
    offset_ns: i64,
    ns_per_tick: u64,
}

fn clock_ns(id: libc::clockid_t) -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out-pointer.
    unsafe { libc::clock_gettime(id, &mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

impl Clock {
    pub fn now() -> Self {
        // SAFETY: sysconf has no memory effects.
        let tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        let tck = if tck > 0 { tck as u64 } else { 100 };
        Clock {
            offset_ns: clock_ns(libc::CLOCK_REALTIME) - clock_ns(libc::CLOCK_BOOTTIME),
            ns_per_tick: 1_000_000_000 / tck,
        }
    }

    /// Follows wall-clock adjustments (NTP steps).
    pub fn refresh(&mut self) {
        *self = Clock::now();
    }

    pub fn wall(&self, boot_ns: u64) -> Timestamp {
        Timestamp::from_unix_nanos(self.offset_ns.saturating_add(boot_ns as i64))
    }

    pub fn ticks(&self, boot_ns: u64) -> u64 {
        boot_ns / self.ns_per_tick
    }

    pub fn ticks_to_ns(&self, ticks: u64) -> u64 {
        ticks * self.ns_per_tick
    }
}
