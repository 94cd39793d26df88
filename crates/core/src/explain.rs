//! Verdicts with their reasons: every semantic function returns a [`Decision`], the value plus
//! the ordered [`Step`]s that led to it and the objects that made each step.

use std::fmt;

use serde::Serialize;

/// `format!` for text made per flow, step or finding: written into room kept per thread and
/// copied out at its exact size. (`format!` grows its string as it writes, reallocating it: a
/// large cluster's flows word millions of steps, and the growing was a tenth of the check's
/// work.) One-off messages (usage errors) use `format!`.
#[macro_export]
macro_rules! text {
    ($($arg:tt)*) => {
        $crate::explain::text(::std::format_args!($($arg)*))
    };
}

/// A [`Step`] of rule `rule` whose message is worded as by [`words!`]: `step!("B3", "...", ..)`.
/// Inside [`quietly`] the message is left unwritten (empty), so only a step's message may be
/// made this way, and no verdict's outcome or transport may depend on it. A text that
/// anything reads (a name, a host, a principal, a message a fix is chosen by) is made with
/// [`text!`].
#[macro_export]
macro_rules! step {
    ($rule:expr, $($arg:tt)*) => {
        $crate::explain::Step::new($rule, $crate::words!($($arg)*))
    };
}

/// A step's message, or a piece of one, worded as by [`text!`] and left unwritten (empty)
/// inside [`quietly`], where its arguments are not even evaluated (so they must have no
/// effect but their text): for the messages of steps and the clauses (why a rule matched or
/// missed) they are assembled from.
#[macro_export]
macro_rules! words {
    ($($arg:tt)*) => {
        if $crate::explain::is_quiet() {
            ::std::string::String::new()
        } else {
            $crate::explain::text(::std::format_args!($($arg)*))
        }
    };
}

thread_local! {
    static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// `f` with its explanations left unmade: the messages made by [`step!`] and [`words!`] are
/// left unwritten, steps cite no objects ([`Step::by`]) and the steps of nested decisions are
/// not copied in ([`extend`]). For a caller that drops the explanations of most of what it
/// evaluates (a table of a large cluster explains no connection that succeeds): outcomes and
/// transports are the same as with words. A failing verdict's symptom and fix are chosen
/// partly by its steps, so they are not to be read: evaluate a verdict that fails again with
/// words. Values kept for later (the inventory's `Memo`) are computed with words
/// ([`worded`]).
pub fn quietly<R>(f: impl FnOnce() -> R) -> R {
    with_quiet(true, f)
}

/// `f` with every message written, also inside [`quietly`].
pub fn worded<R>(f: impl FnOnce() -> R) -> R {
    with_quiet(false, f)
}

fn with_quiet<R>(quiet: bool, f: impl FnOnce() -> R) -> R {
    /// Puts the setting back as it was, also when `f` panics.
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            QUIET.set(self.0);
        }
    }
    let _restore = Restore(QUIET.replace(quiet));
    f()
}

/// The steps of a nested decision appended to `steps` (nothing inside [`quietly`], where no
/// explanation is read).
pub fn extend(steps: &mut Vec<Step>, nested: &[Step]) {
    if !QUIET.get() {
        steps.extend(nested.iter().cloned());
    }
}

/// Whether messages are being left unwritten ([`quietly`]), as [`words!`] asks.
pub fn is_quiet() -> bool {
    QUIET.get()
}

/// What [`text!`] writes.
pub fn text(args: fmt::Arguments<'_>) -> String {
    use std::fmt::Write;
    if let Some(literal) = args.as_str() {
        return literal.to_string();
    }
    thread_local! {
        static ROOM: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
    }
    ROOM.with(|room| match room.try_borrow_mut() {
        Ok(mut room) => {
            room.clear();
            // Writing to a `String` fails only when a `Display` implementation does.
            let _ = room.write_fmt(args);
            let out = String::from(room.as_str());
            // A thread that lives on (the webhook's) keeps no more than 64 KiB here.
            if room.capacity() > 64 * 1024 {
                *room = String::new();
            }
            out
        }
        // Asked for while an argument of an outer `text!` is being written.
        Err(_) => fmt::format(args),
    })
}

use crate::object::Cited;

/// One decision on the way to a verdict.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Step {
    /// The rule of `istio-semantics.md` (or of kfp-mesh) that was applied, e.g. `"B3"`.
    pub rule: &'static str,
    pub message: String,
    /// The objects that made this decision (empty when a default decided).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub objects: Vec<Cited>,
}

impl Step {
    pub fn new(rule: &'static str, message: impl Into<String>) -> Self {
        Step {
            rule,
            message: message.into(),
            objects: Vec::new(),
        }
    }
    /// `object` made this decision (not recorded inside [`quietly`]).
    pub fn by(mut self, object: Cited) -> Self {
        if !QUIET.get() {
            self.objects.push(object);
        }
        self
    }
    /// `objects` made this decision (not recorded inside [`quietly`]).
    pub fn by_all(mut self, objects: impl IntoIterator<Item = Cited>) -> Self {
        if !QUIET.get() {
            self.objects.extend(objects);
        }
        self
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}", self.rule, self.message)?;
        for o in &self.objects {
            write!(f, "\n      by {o}")?;
        }
        Ok(())
    }
}

/// A value and the reasons for it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Decision<T> {
    pub value: T,
    pub steps: Vec<Step>,
}

impl<T> Decision<T> {
    pub fn new(value: T, steps: Vec<Step>) -> Self {
        Decision { value, steps }
    }
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Decision<U> {
        Decision {
            value: f(self.value),
            steps: self.steps,
        }
    }
}
