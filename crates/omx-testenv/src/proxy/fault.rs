//! Which requests get which fault: the faults, the rules that select requests, and the seeded
//! schedule that decides.

use std::time::Duration;

use crate::layer::splitmix64;

use super::RequestRecord;

/// What the proxy does to a request that a [`FaultRule`] selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The request is not forwarded; the client connection is reset (TCP RST) at once.
    Reset,
    /// The request is forwarded; the client gets the response head and half the body, then
    /// the connection is reset (TCP RST).
    ResetMidBody,
    /// The request is not forwarded (its body is read and discarded); the client gets this
    /// status with a registry-style JSON error, and `Retry-After: <secs>` when given.
    Status(u16, Option<u64>),
    /// The request is not forwarded (its body is read and discarded); the client gets this
    /// status with a registry-style JSON error carrying this error code (e.g. `400` with
    /// `MANIFEST_BLOB_UNKNOWN`).
    RegistryError(u16, &'static str),
    /// The request is forwarded; the response is held back this long before its head is sent.
    Stall(Duration),
    /// The request is forwarded; the response head and half the body are sent, then the
    /// proxy pauses this long before sending the rest.
    StallMidBody(Duration),
    /// The request is forwarded; the client gets the head (with the real `Content-Length`) and
    /// half the body, then a clean close (FIN): an unexpected end of body.
    TruncateBody,
    /// The request is forwarded; one byte in the middle of the response body is inverted, the
    /// length unchanged: a digest mismatch for the client to catch.
    CorruptByte,
}

impl Fault {
    /// A plain error status, e.g. `Fault::status(503)`.
    pub fn status(code: u16) -> Fault {
        Fault::Status(code, None)
    }

    /// `429 Too Many Requests` with `Retry-After: <retry_after_secs>`.
    pub fn too_many_requests(retry_after_secs: u64) -> Fault {
        Fault::Status(429, Some(retry_after_secs))
    }

    /// For the faults answered by the proxy itself: the status, error code (when not the
    /// usual one for the status) and `Retry-After`.
    pub(super) fn answer_instead(self) -> Option<(u16, Option<&'static str>, Option<u64>)> {
        match self {
            Fault::Status(status, retry_after) => Some((status, None, retry_after)),
            Fault::RegistryError(status, code) => Some((status, Some(code), None)),
            _ => None,
        }
    }
}

/// Selects requests for a fault: method and path filters, which matches to skip, how many
/// times to fire, and with what (seeded) probability.
#[derive(Debug, Clone)]
pub struct FaultRule {
    method: Option<String>,
    path_contains: String,
    fault: Fault,
    skip: u32,
    times: Option<u32>,
    probability: f64,
}

impl FaultRule {
    /// A rule that applies `fault` to every request (narrow it with the other methods).
    pub fn new(fault: Fault) -> FaultRule {
        FaultRule {
            method: None,
            path_contains: String::new(),
            fault,
            skip: 0,
            times: None,
            probability: 1.0,
        }
    }

    /// Only requests with this method (case-insensitive).
    pub fn method(mut self, method: &str) -> FaultRule {
        self.method = Some(method.to_ascii_uppercase());
        self
    }

    /// Only requests whose path+query contains `fragment` (e.g. `"/blobs/"`).
    pub fn path_contains(mut self, fragment: &str) -> FaultRule {
        self.path_contains = fragment.to_string();
        self
    }

    /// Lets the first `count` matching requests through untouched.
    pub fn skip(mut self, count: u32) -> FaultRule {
        self.skip = count;
        self
    }

    /// Fires at most `count` times (default: unlimited).
    pub fn times(mut self, count: u32) -> FaultRule {
        self.times = Some(count);
        self
    }

    /// Fires on each eligible request with this probability, drawn from the proxy's seed.
    pub fn probability(mut self, probability: f64) -> FaultRule {
        self.probability = probability.clamp(0.0, 1.0);
        self
    }

    fn matches(&self, method: &str, target: &str) -> bool {
        self.method
            .as_deref()
            .is_none_or(|wanted| wanted.eq_ignore_ascii_case(method))
            && target.contains(&self.path_contains)
    }
}

pub(super) struct RuleState {
    pub(super) rule: FaultRule,
    pub(super) matched: u32,
    pub(super) fired: u32,
}

pub(super) struct ProxyState {
    pub(super) rules: Vec<RuleState>,
    pub(super) rng_state: u64,
    pub(super) records: Vec<RequestRecord>,
}

impl ProxyState {
    /// The fault for this request: the first rule that matches and fires.
    pub(super) fn decide(&mut self, method: &str, target: &str) -> Option<Fault> {
        for index in 0..self.rules.len() {
            let state = &mut self.rules[index];
            if !state.rule.matches(method, target) {
                continue;
            }
            state.matched += 1;
            let eligible = state.matched > state.rule.skip
                && state.rule.times.is_none_or(|times| state.fired < times);
            if !eligible {
                continue;
            }
            let probability = state.rule.probability;
            if probability < 1.0 && self.next_unit() >= probability {
                continue;
            }
            let state = &mut self.rules[index];
            state.fired += 1;
            return Some(state.rule.fault);
        }
        None
    }

    /// A uniform draw in [0, 1) from the seeded sequence.
    fn next_unit(&mut self) -> f64 {
        self.rng_state = self.rng_state.wrapping_add(1);
        (splitmix64(self.rng_state) >> 11) as f64 / (1u64 << 53) as f64
    }
}
