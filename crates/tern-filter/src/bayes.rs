//! The classifier: Robinson's token probabilities combined with Fisher's
//! chi-square method (the scheme SpamBayes and SpamAssassin's Bayes use),
//! over the tokens that say the most.

/// Token probabilities closer to 0.5 than this say nothing.
const MIN_INTEREST: f64 = 0.1;
/// Most tokens combined per message.
const MAX_CLUES: usize = 150;
/// Robinson's s (strength of the 0.5 prior) and x (the prior).
const S: f64 = 1.0;
const X: f64 = 0.5;

/// Learnt counts for one token.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counts {
    /// Spam messages that had it.
    pub spam: u32,
    /// Ham messages that had it.
    pub ham: u32,
}

/// The spam probability of a message from its tokens' counts and the
/// totals of messages learnt: 0 (ham) … 1 (spam).
pub fn spam_probability(token_counts: &[Counts], total_spam: u32, total_ham: u32) -> f64 {
    if total_spam == 0 || total_ham == 0 {
        return 0.5;
    }
    let (ns, nh) = (f64::from(total_spam), f64::from(total_ham));
    let mut probs: Vec<f64> = token_counts
        .iter()
        .filter(|c| c.spam + c.ham > 0)
        .map(|c| {
            let s = (f64::from(c.spam) / ns).min(1.0);
            let h = (f64::from(c.ham) / nh).min(1.0);
            let p = s / (s + h);
            let n = f64::from(c.spam + c.ham);
            (S * X + n * p) / (S + n)
        })
        .filter(|p| (p - 0.5).abs() >= MIN_INTEREST)
        .collect();
    if probs.is_empty() {
        return 0.5;
    }
    probs.sort_by(|a, b| {
        (b - 0.5)
            .abs()
            .partial_cmp(&(a - 0.5).abs())
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    probs.truncate(MAX_CLUES);
    let n = probs.len();
    let ln_spam: f64 = probs.iter().map(|p| (1.0 - p).max(1e-200).ln()).sum();
    let ln_ham: f64 = probs.iter().map(|p| p.max(1e-200).ln()).sum();
    let s = 1.0 - chi2_q(-2.0 * ln_spam, 2 * n);
    let h = 1.0 - chi2_q(-2.0 * ln_ham, 2 * n);
    ((1.0 + s - h) / 2.0).clamp(0.0, 1.0)
}

/// P(chi² ≥ x2) with `df` (even) degrees of freedom.
fn chi2_q(x2: f64, df: usize) -> f64 {
    let m = x2 / 2.0;
    let mut term = (-m).exp();
    let mut sum = term;
    for i in 1..df / 2 {
        term *= m / i as f64;
        sum += term;
    }
    sum.min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separates() {
        let spammy = vec![Counts { spam: 50, ham: 1 }; 20];
        let hammy = vec![Counts { spam: 1, ham: 50 }; 20];
        assert!(spam_probability(&spammy, 100, 100) > 0.95);
        assert!(spam_probability(&hammy, 100, 100) < 0.05);
        assert_eq!(spam_probability(&[], 100, 100), 0.5);
        assert_eq!(spam_probability(&spammy, 0, 100), 0.5, "untrained");
    }
}
