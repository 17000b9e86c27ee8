//! The slot grid of `--every`: slot k starts at start + k·every (wall clock). Runs never
//! overlap (they are sequential), and never pile up: when slots pass while a run goes on (a
//! run longer than the interval) or while the process waits (the machine slept), at most one
//! catch-up run starts at once, then the schedule is back on the grid. Pure arithmetic on
//! times given to it, so it is tested with a fake clock.

use std::time::{Duration, SystemTime};

/// The grid of slot times.
#[derive(Debug, Clone, Copy)]
pub struct Grid {
    pub start: SystemTime,
    pub every: Duration,
}

/// The next run to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Next {
    /// Its slot on the grid (a catch-up takes the latest slot whose time has passed).
    pub slot: u64,
    /// When it starts: its slot's time, or now for a catch-up.
    pub at: SystemTime,
    /// It starts late, at once, for slots whose time passed.
    pub catch_up: bool,
    /// Slots whose time passed with no run of their own (the catch-up stands for them).
    pub skipped: u64,
}

impl Grid {
    /// The time of slot `k` (saturating far in the future).
    pub fn slot_at(&self, k: u64) -> SystemTime {
        let offset = self
            .every
            .checked_mul(u32::try_from(k).unwrap_or(u32::MAX))
            .unwrap_or(Duration::from_secs(u64::from(u32::MAX)));
        self.start + offset
    }

    /// The latest slot whose time is at or before `now` (0 before the start).
    pub fn due_at(&self, now: SystemTime) -> u64 {
        let since = now.duration_since(self.start).unwrap_or(Duration::ZERO);
        let every = self.every.as_nanos().max(1);
        u64::try_from(since.as_nanos() / every).unwrap_or(u64::MAX)
    }

    /// The first run: slot 0, now.
    pub fn first(&self) -> Next {
        Next {
            slot: 0,
            at: self.start,
            catch_up: false,
            skipped: 0,
        }
    }

    /// What runs after the run of `done` ended at `now`. If the next slot's time has not come,
    /// it waits for it. If it has (the run took longer than the interval), one catch-up starts
    /// at once for the latest passed slot, the others are skipped; a catch-up run that overran
    /// too gets none of its own: the schedule waits for the next slot on the grid.
    pub fn after_run(&self, done: Next, now: SystemTime) -> Next {
        let due = self.due_at(now);
        if due <= done.slot {
            return self.on_grid(done.slot + 1);
        }
        let passed = due - done.slot;
        if done.catch_up {
            Next {
                skipped: passed,
                ..self.on_grid(due + 1)
            }
        } else {
            Next {
                slot: due,
                at: now,
                catch_up: true,
                skipped: passed - 1,
            }
        }
    }

    /// The wait for `next` ended at `now`: on time, or, when later slots passed meanwhile (the
    /// machine slept, the clock jumped), one catch-up for the latest of them.
    pub fn on_wake(&self, next: Next, now: SystemTime) -> Next {
        let due = self.due_at(now);
        if due <= next.slot {
            return next;
        }
        Next {
            slot: due,
            at: now,
            catch_up: true,
            skipped: next.skipped + (due - next.slot),
        }
    }

    fn on_grid(&self, slot: u64) -> Next {
        Next {
            slot,
            at: self.slot_at(slot),
            catch_up: false,
            skipped: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid() -> (Grid, impl Fn(u64) -> SystemTime) {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let g = Grid {
            start,
            every: Duration::from_secs(60),
        };
        (g, move |secs| start + Duration::from_secs(secs))
    }

    #[test]
    fn a_short_run_waits_for_the_next_slot_on_the_grid() {
        let (g, t) = grid();
        let first = g.first();
        assert_eq!(first.at, t(0));
        let next = g.after_run(first, t(12));
        assert_eq!((next.slot, next.at, next.catch_up), (1, t(60), false));
        // Aligned to the start, not to the end of the run.
        let next = g.after_run(next, t(60 + 59));
        assert_eq!((next.slot, next.at, next.skipped), (2, t(120), 0));
    }

    #[test]
    fn a_run_longer_than_the_interval_gives_exactly_one_catch_up() {
        let (g, t) = grid();
        // Slot 0 ran 3.5 intervals: slots 1, 2 and 3 passed meanwhile.
        let after = g.after_run(g.first(), t(210));
        assert_eq!(
            after,
            Next {
                slot: 3,
                at: t(210),
                catch_up: true,
                skipped: 2
            }
        );
        // The catch-up is short: back on the grid at slot 4.
        let back = g.after_run(after, t(215));
        assert_eq!((back.slot, back.at, back.catch_up), (4, t(240), false));
    }

    #[test]
    fn a_catch_up_that_overruns_gets_no_catch_up_of_its_own() {
        let (g, t) = grid();
        let catch_up = g.after_run(g.first(), t(70));
        assert_eq!((catch_up.slot, catch_up.catch_up), (1, true));
        assert_eq!(catch_up.skipped, 0, "slot 1 itself is the catch-up");
        // The catch-up ran until 200: slots 2 and 3 passed; the next run is slot 4, on time.
        let next = g.after_run(catch_up, t(200));
        assert_eq!(
            next,
            Next {
                slot: 4,
                at: t(240),
                catch_up: false,
                skipped: 2
            }
        );
        // Runs that always take ~1.6 intervals alternate grid run and catch-up, never more.
        let mut n = g.first();
        let mut started = Vec::new();
        let mut now = 0;
        for _ in 0..6 {
            let at = n.at.duration_since(t(0)).expect("after start").as_secs();
            now = now.max(at);
            started.push((n.slot, now, n.catch_up));
            now += 95;
            n = g.after_run(n, t(now));
        }
        assert_eq!(
            started,
            [
                (0, 0, false),
                (1, 95, true),
                (4, 240, false),
                (5, 335, true),
                (8, 480, false),
                (9, 575, true)
            ]
        );
    }

    #[test]
    fn a_machine_that_slept_through_slots_catches_up_once() {
        let (g, t) = grid();
        let next = g.after_run(g.first(), t(5));
        // The wait for slot 1 (t 60) ended at t 1000: slots 1 to 16 passed while asleep.
        let woke = g.on_wake(next, t(1000));
        assert_eq!(
            woke,
            Next {
                slot: 16,
                at: t(1000),
                catch_up: true,
                skipped: 15
            }
        );
        let back = g.after_run(woke, t(1010));
        assert_eq!((back.slot, back.at, back.catch_up), (17, t(1020), false));
        // Woken on time: nothing changes.
        assert_eq!(g.on_wake(back, t(1020)), back);
    }

    #[test]
    fn a_run_ending_exactly_on_a_slot_starts_it_at_once() {
        let (g, t) = grid();
        let next = g.after_run(g.first(), t(60));
        assert_eq!(
            (next.slot, next.at, next.catch_up, next.skipped),
            (1, t(60), true, 0)
        );
    }

    #[test]
    fn a_clock_set_back_does_not_move_the_schedule_backwards() {
        let (g, t) = grid();
        let first = g.first();
        // The wall clock now reads before the start.
        let next = g.after_run(first, t(0) - Duration::from_secs(500));
        assert_eq!((next.slot, next.at), (1, t(60)));
        assert_eq!(g.due_at(t(0) - Duration::from_secs(1)), 0);
    }
}
