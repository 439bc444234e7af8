//! Waiting longer after each failure: the one retry schedule of the worker,
//! the supervisor and the doorbells.

use std::time::Duration;

/// A delay that doubles after each use, from `first` up to `last`, and
/// starts over after [`Backoff::reset`].
///
/// ```
/// use resque_fork::backoff::Backoff;
/// use std::time::Duration;
/// let ms = Duration::from_millis;
/// let mut b = Backoff::new(ms(100), ms(300));
/// assert_eq!([b.delay(), b.delay(), b.delay()], [ms(100), ms(200), ms(300)]);
/// b.reset();
/// assert_eq!(b.delay(), ms(100));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    first: Duration,
    last: Duration,
    next: Duration,
}

impl Backoff {
    /// Starts at `first`, doubling up to `last`.
    pub const fn new(first: Duration, last: Duration) -> Backoff {
        Backoff {
            first,
            last,
            next: first,
        }
    }

    /// The delay to wait now; the one after is twice as long.
    pub fn delay(&mut self) -> Duration {
        let now = self.next;
        self.next = (self.next * 2).min(self.last);
        now
    }

    /// After a success: the next delay is the first again.
    pub fn reset(&mut self) {
        self.next = self.first;
    }
}
