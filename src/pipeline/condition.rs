//! A filter inside a pipeline (`drop`'s, `eval`'s): read lazily from the
//! bytes of an event no function has touched, as routes read it, and
//! straight from the value of one a function has parsed, instead of
//! writing it back to read it. The two agree (a property test in
//! `expr::compute` holds them to it).

use crate::expr::compute::{Ctx, Expr};
use crate::expr::{Filter, FilterError, Scratch};

use super::Work;

pub struct Condition {
    on_bytes: Filter,
    on_value: Expr,
}

impl Condition {
    pub fn new(src: &str) -> Result<Condition, FilterError> {
        Ok(Condition {
            on_bytes: Filter::new(src)?,
            on_value: Expr::compile(src)?,
        })
    }

    pub fn scratch(&self) -> Scratch {
        self.on_bytes.scratch()
    }

    pub fn matches(&self, w: &Work, scratch: &mut Scratch, now_ms: f64) -> bool {
        match w {
            Work::Raw(e) => self.on_bytes.matches(e, scratch),
            Work::Value(v) => self.on_value.truth(&Ctx::new(v, now_ms)),
        }
    }
}

/// Milliseconds since the epoch, as `Date.now()` gives them: read once per batch.
pub fn now_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_millis() as f64)
}
