//! Why a queued recipient has not been delivered yet, in a sentence: for
//! `GET /v1/messages/{id}` and `tern queue show`.

use tern_store::QueuedRcpt;

/// The reason `r` waits at `now` (Unix seconds), from its queue state and
/// the last error the delivery engine recorded.
pub fn reason(r: &QueuedRcpt, now: i64) -> String {
    let err = r.last_error.as_deref().unwrap_or("");
    if r.leased_until > now {
        return if r.attempts == 0 {
            "being delivered now".into()
        } else {
            "being delivered now (a new attempt)".into()
        };
    }
    if r.attempts == 0 {
        return if r.next_attempt > now {
            "scheduled: held until its send time".into()
        } else {
            "due for its first attempt".into()
        };
    }
    let limit = if err.contains("MTA-STS") {
        "the destination's MTA-STS policy: no MX host could be used over verified TLS"
    } else if err.contains("DANE") {
        "DANE: no MX host presented a certificate its TLSA records match"
    } else if err.contains("TLS is required") || err.contains("TLS handshake") {
        "TLS is required and could not be established"
    } else if err.contains("no MX") || err.contains("resolv") || err.contains("DNS") {
        "the destination's DNS did not answer usably"
    } else if err.contains("connect") || err.contains("refused") || err.contains("timed out") {
        "no MX host of the destination accepted a connection"
    } else {
        "the destination refused temporarily"
    };
    format!(
        "{limit} ({} attempt{}); retrying on the schedule",
        r.attempts,
        if r.attempts == 1 { "" } else { "s" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rcpt(attempts: u32, next: i64, lease: i64, err: Option<&str>) -> QueuedRcpt {
        QueuedRcpt {
            id: 1,
            message_id: 1,
            queue_id: "Q".into(),
            blob: 1,
            mail_from: "a@b".into(),
            message_params: "{}".into(),
            size: 1,
            address: "x@y".into(),
            domain: "y".into(),
            params: "{}".into(),
            attempts,
            created_at: 0,
            expires_at: 1000,
            next_attempt: next,
            last_error: err.map(str::to_string),
            delay_noticed: false,
            leased_until: lease,
        }
    }

    #[test]
    fn reasons() {
        assert_eq!(
            reason(&rcpt(0, 50, 0, None), 10),
            "scheduled: held until its send time"
        );
        assert_eq!(reason(&rcpt(0, 5, 20, None), 10), "being delivered now");
        let r = reason(
            &rcpt(
                2,
                50,
                0,
                Some("MTA-STS: the policy of y (enforce) allows none"),
            ),
            10,
        );
        assert!(
            r.starts_with("the destination's MTA-STS policy") && r.contains("2 attempts"),
            "{r}"
        );
        let r = reason(
            &rcpt(1, 50, 0, Some("mx.y[1.2.3.4]: 451 4.7.1 greylisted")),
            10,
        );
        assert!(
            r.starts_with("the destination refused temporarily (1 attempt)"),
            "{r}"
        );
    }
}
