//! A deterministic population of generated events for search benchmarks.
//!
//! Event number `n` of a seeding run has a subject, an actor and an action
//! that depend on `n` alone (and on the population's parameters), so a
//! benchmark that knows how many events were seeded knows, without asking
//! the log, how many carry each subject, actor or action: that is how
//! `veritrail bench search` checks that every answer is complete.
//!
//! Subjects are either uniform or Zipf-like (subject `k` of `K` has
//! probability `ln((k+2)/(k+1)) / ln(K+1)`, about `1/((k+1)·ln K)`: a few
//! subjects have many events, most have few), the way real records
//! systems look. Invariant: the mapping from `n` to fields is a pure
//! function, identical on every run and platform of one build.

use std::fmt::Write as _;

/// How subjects are spread over the events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Distribution {
    /// Every subject equally likely.
    Uniform,
    /// Subject `k` about `1/(k+1)` as likely as subject 0.
    Zipf,
}

impl std::str::FromStr for Distribution {
    type Err = String;
    fn from_str(s: &str) -> Result<Distribution, String> {
        match s {
            "uniform" => Ok(Distribution::Uniform),
            "zipf" => Ok(Distribution::Zipf),
            other => Err(format!(
                "unknown distribution {other:?}: use uniform or zipf"
            )),
        }
    }
}

impl Distribution {
    /// The name the command line uses.
    pub fn name(self) -> &'static str {
        match self {
            Distribution::Uniform => "uniform",
            Distribution::Zipf => "zipf",
        }
    }
}

/// Actions of generated events, most common first (picked with weights
/// 8:4:2:1:1:1:1:1, so reads dominate as they do in practice).
pub const ACTIONS: [&str; 8] = [
    "record.read",
    "record.update",
    "record.create",
    "record.export",
    "record.print",
    "record.share",
    "consent.check",
    "record.delete",
];
const ACTION_WEIGHTS: [u64; 8] = [8, 4, 2, 1, 1, 1, 1, 1];
const ACTION_WEIGHT_TOTAL: u64 = 19;

/// The shape of a seeded log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Population {
    /// Distinct data subjects (at least 1).
    pub subjects: u64,
    /// Distinct actors (at least 1).
    pub actors: u64,
    /// How subjects are spread.
    pub distribution: Distribution,
}

/// SplitMix64: a well-mixed 64-bit function of `n` and a stream number.
fn mix(n: u64, stream: u64) -> u64 {
    let mut z = n
        .wrapping_add(stream.wrapping_mul(0xD1B5_4A32_D192_ED03))
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Population {
    /// The subject number of event `n`, in `0..subjects`.
    pub fn subject_of(&self, n: u64) -> u64 {
        let k = self.subjects.max(1);
        let r = mix(n, 1);
        match self.distribution {
            Distribution::Uniform => r % k,
            Distribution::Zipf => {
                // (K+1)^u for u uniform in [0, 1) is log-uniform in [1, K+1).
                let u = (r >> 11) as f64 / (1u64 << 53) as f64;
                let x = ((k as f64 + 1.0).ln() * u).exp();
                (x as u64).saturating_sub(1).min(k - 1)
            }
        }
    }

    /// The actor number of event `n`, in `0..actors`.
    pub fn actor_of(&self, n: u64) -> u64 {
        mix(n, 2) % self.actors.max(1)
    }

    /// The action of event `n`.
    pub fn action_of(&self, n: u64) -> &'static str {
        let mut r = mix(n, 3) % ACTION_WEIGHT_TOTAL;
        for (action, w) in ACTIONS.iter().zip(ACTION_WEIGHTS) {
            if r < w {
                return action;
            }
            r -= w;
        }
        ACTIONS[0]
    }

    /// The name of subject number `k`.
    #[cfg(test)]
    pub fn subject_name(k: u64) -> String {
        format!("person-{k}")
    }

    /// The name of actor number `k`.
    #[cfg(test)]
    pub fn actor_name(k: u64) -> String {
        format!("staff-{k}")
    }

    /// Writes event `n` of run `run` as JSON (≈ 340 bytes, like
    /// [`super::write_event`]); with `with_id` it carries an idempotency key.
    pub fn write_event(&self, out: &mut String, run: &str, n: u64, with_id: bool) {
        let _ = write!(
            out,
            concat!(
                r#"{{"actor":{{"id":"staff-{actor}","type":"user","ip":"192.0.2.{ip}"}},"#,
                r#""action":"{action}","resource":{{"type":"patient_record","id":"rec-{res}"}},"#,
                r#""subject":"person-{subject}","purpose":"treatment","outcome":"success","#,
                r#""occurred_at":"2026-11-25T10:00:00.123Z","#,
                r#""context":{{"request_id":"req-{run}-{n}","n":{n}}}"#,
            ),
            actor = self.actor_of(n),
            ip = n % 250 + 1,
            action = self.action_of(n),
            res = mix(n, 4) % 1_000_000,
            subject = self.subject_of(n),
            run = run,
            n = n,
        );
        if with_id {
            let _ = write!(out, r#","id":"{run}-{n}""#);
        }
        out.push('}');
    }

    /// How many of events `0..events` satisfy `pred`.
    pub fn count(&self, events: u64, pred: impl Fn(&Population, u64) -> bool) -> u64 {
        (0..events).filter(|&n| pred(self, n)).count() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pop(distribution: Distribution) -> Population {
        Population {
            subjects: 1000,
            actors: 50,
            distribution,
        }
    }

    #[test]
    fn fields_are_deterministic_and_in_range() {
        for d in [Distribution::Uniform, Distribution::Zipf] {
            let p = pop(d);
            for n in 0..5000 {
                assert_eq!(p.subject_of(n), p.subject_of(n));
                assert!(p.subject_of(n) < 1000);
                assert!(p.actor_of(n) < 50);
                assert!(ACTIONS.contains(&p.action_of(n)));
            }
        }
    }

    #[test]
    fn zipf_is_skewed_and_uniform_is_not() {
        let events = 50_000;
        let z = pop(Distribution::Zipf);
        let u = pop(Distribution::Uniform);
        let z0 = z.count(events, |p, n| p.subject_of(n) == 0);
        let z500 = z.count(events, |p, n| p.subject_of(n) == 500);
        // ln 2 / ln 1001 ≈ 10 % of the events for subject 0, ≈ 0.03 % for 500.
        assert!(z0 > events / 12 && z0 < events / 8, "{z0}");
        assert!(z500 < z0 / 50, "{z500} vs {z0}");
        let u0 = u.count(events, |p, n| p.subject_of(n) == 0);
        assert!(u0 > 20 && u0 < 90, "{u0}");
        let reads = u.count(events, |p, n| p.action_of(n) == "record.read");
        assert!(reads > events / 3 && reads < events / 2, "{reads}");
    }

    #[test]
    fn generated_events_are_valid_and_carry_their_fields() {
        let p = pop(Distribution::Zipf);
        for n in [0u64, 1, 77, 4096] {
            let mut json = String::new();
            p.write_event(&mut json, "abcd0123", n, true);
            let v: serde_json::Value = serde_json::from_str(&json).unwrap();
            let ev = veritrail::event::parse_event(&v, &veritrail::event::EventLimits::default())
                .unwrap();
            assert_eq!(
                ev.subject.as_deref(),
                Some(Population::subject_name(p.subject_of(n)).as_str())
            );
            assert_eq!(ev.actor.id, Population::actor_name(p.actor_of(n)));
            assert_eq!(ev.action, p.action_of(n));
            assert_eq!(ev.id.as_deref(), Some(format!("abcd0123-{n}").as_str()));
        }
    }
}
