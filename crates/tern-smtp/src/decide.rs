//! The MX's decision for one message, as a value: from what the session
//! found — DMARC's disposition, each recipient's spam verdict under its own
//! thresholds, which recipients are forwarding aliases — where each
//! recipient's copy goes, or why the message is refused. No I/O, so every
//! combination is tested without sockets; the session only turns the
//! decision into a reply, stored copies and events.

use tern_auth::Disposition;
use tern_filter::Action;

/// What a recipient of the message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A local account.
    Local,
    /// A forwarding alias (or an SRS bounce going back).
    Forward,
}

/// The spam filter's findings.
#[derive(Debug, Clone)]
pub struct Spam {
    /// The score.
    pub score: f64,
    /// The rules that fired, for the refusal text.
    pub tests: String,
    /// Each recipient's action under its thresholds, in recipient order.
    pub actions: Vec<Action>,
}

/// What the session found.
#[derive(Debug, Clone)]
pub struct Facts<'a> {
    /// DMARC's disposition, when DMARC is enforced.
    pub dmarc: Option<&'a Disposition>,
    /// The spam filter's findings, when it ran.
    pub spam: Option<Spam>,
    /// The recipients, in order.
    pub rcpts: &'a [Kind],
}

/// Where one recipient's copy goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Copy {
    /// The account's inbox.
    Inbox,
    /// The account's Junk folder.
    Junk,
    /// Forwarded to the alias's target.
    Forward,
    /// Not forwarded: junk would be spam from our addresses.
    NotForwarded,
}

/// The decision.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Refuse before `250`.
    Refuse {
        /// Reply code.
        code: u16,
        /// RFC 3463 status.
        status: &'static str,
        /// Reply text.
        text: String,
        /// The metric label and log reason.
        reason: &'static str,
    },
    /// Accept: each recipient's copy, in recipient order.
    Accept(Vec<Copy>),
}

/// Decides (RFC 7489 §6.6.2 for DMARC; the spam thresholds of each
/// recipient): refused if DMARC says reject, or if every recipient's
/// thresholds refuse; Junk for everyone under DMARC quarantine or when no
/// recipient would take it in its inbox, else per recipient; junk is never
/// forwarded, and a message only for forwards that would all be junk is
/// refused rather than accepted and dropped.
pub fn decide(f: &Facts) -> Decision {
    if let Some(Disposition::Reject(why)) = f.dmarc {
        return Decision::Refuse {
            code: 550,
            status: "5.7.1",
            text: why.clone(),
            reason: "dmarc",
        };
    }
    let actions: Vec<Action> = match &f.spam {
        Some(s) => s.actions.clone(),
        None => vec![Action::Inbox; f.rcpts.len()],
    };
    if let Some(s) = &f.spam
        && !actions.is_empty()
        && actions.iter().all(|a| *a == Action::Reject)
    {
        return Decision::Refuse {
            code: 550,
            status: "5.7.1",
            text: format!(
                "Message refused as spam (score {:.1}: {})",
                s.score, s.tests
            ),
            reason: "spam",
        };
    }
    let all_junk = matches!(f.dmarc, Some(Disposition::Junk(_)))
        || (f.spam.is_some() && actions.iter().all(|a| *a != Action::Inbox));
    let junk = |a: &Action| all_junk || *a != Action::Inbox;
    // One forward target calling it junk stops every forwarded copy.
    let forward_junk = f
        .rcpts
        .iter()
        .zip(&actions)
        .any(|(k, a)| *k == Kind::Forward && junk(a));
    let copies: Vec<Copy> = f
        .rcpts
        .iter()
        .zip(&actions)
        .map(|(k, a)| match k {
            Kind::Local if junk(a) => Copy::Junk,
            Kind::Local => Copy::Inbox,
            Kind::Forward if forward_junk => Copy::NotForwarded,
            Kind::Forward => Copy::Forward,
        })
        .collect();
    if !copies.is_empty() && copies.iter().all(|c| *c == Copy::NotForwarded) {
        return Decision::Refuse {
            code: 550,
            status: "5.7.1",
            text: "Message looks like spam and is not forwarded".into(),
            reason: "spam_forward",
        };
    }
    Decision::Accept(copies)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Action::{Inbox, Junk, Reject};
    use Kind::{Forward, Local};

    fn spam(actions: &[Action]) -> Option<Spam> {
        Some(Spam {
            score: 7.5,
            tests: "GTUBE=7.5".into(),
            actions: actions.to_vec(),
        })
    }

    fn run(dmarc: Option<&Disposition>, s: Option<Spam>, rcpts: &[Kind]) -> Decision {
        decide(&Facts {
            dmarc,
            spam: s,
            rcpts,
        })
    }

    #[test]
    fn dmarc_reject_and_quarantine() {
        let reject = Disposition::Reject("DMARC policy of x.test is reject".into());
        assert!(matches!(
            run(Some(&reject), None, &[Local]),
            Decision::Refuse {
                reason: "dmarc",
                ..
            }
        ));
        let q = Disposition::Junk("quarantine".into());
        assert_eq!(
            run(Some(&q), None, &[Local, Local]),
            Decision::Accept(vec![Copy::Junk, Copy::Junk])
        );
        assert_eq!(
            run(Some(&Disposition::Accept), None, &[Local]),
            Decision::Accept(vec![Copy::Inbox])
        );
    }

    #[test]
    fn spam_per_recipient() {
        // Refused only when every recipient refuses.
        let d = run(None, spam(&[Reject, Reject]), &[Local, Local]);
        assert!(
            matches!(&d, Decision::Refuse { reason: "spam", text, .. } if text.contains("7.5"))
        );
        assert_eq!(
            run(None, spam(&[Reject, Inbox]), &[Local, Local]),
            Decision::Accept(vec![Copy::Junk, Copy::Inbox])
        );
        // Nobody's inbox: Junk for all (a rejecting recipient included).
        assert_eq!(
            run(None, spam(&[Reject, Junk]), &[Local, Local]),
            Decision::Accept(vec![Copy::Junk, Copy::Junk])
        );
    }

    #[test]
    fn junk_is_not_forwarded() {
        assert_eq!(
            run(None, spam(&[Inbox, Inbox]), &[Local, Forward]),
            Decision::Accept(vec![Copy::Inbox, Copy::Forward])
        );
        assert_eq!(
            run(None, spam(&[Inbox, Junk]), &[Local, Forward]),
            Decision::Accept(vec![Copy::Inbox, Copy::NotForwarded])
        );
        assert!(matches!(
            run(None, spam(&[Junk]), &[Forward]),
            Decision::Refuse {
                reason: "spam_forward",
                ..
            }
        ));
        let q = Disposition::Junk("quarantine".into());
        assert!(matches!(
            run(Some(&q), None, &[Forward, Forward]),
            Decision::Refuse {
                reason: "spam_forward",
                ..
            }
        ));
        assert_eq!(
            run(None, None, &[Forward]),
            Decision::Accept(vec![Copy::Forward])
        );
    }
}
