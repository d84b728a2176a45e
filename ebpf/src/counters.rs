//! Per-CPU event counters (no atomics: each CPU increments its own slot).

use ambit_common::Counter;

#[inline(always)]
pub fn count(counter: Counter) {
    if let Some(slot) = crate::COUNTERS.get_ptr_mut(counter as u32) {
        // SAFETY: a per-CPU array slot is only touched by the current CPU, and programs do not
        // migrate CPUs while they run.
        unsafe { *slot += 1 };
    }
}
