//! Verdicts with their reasons: every semantic function returns a [`Decision`], the value plus
//! the ordered [`Step`]s that led to it and the objects that made each step.

use std::fmt;

use serde::Serialize;

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
    pub fn by(mut self, object: Cited) -> Self {
        self.objects.push(object);
        self
    }
    pub fn by_all(mut self, objects: impl IntoIterator<Item = Cited>) -> Self {
        self.objects.extend(objects);
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
