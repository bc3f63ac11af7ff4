-- Version 8: the spam filter's Bayesian token counts, per account and
-- global (scope 0), and how many messages each scope learnt.
CREATE TABLE IF NOT EXISTS bayes_tokens (
    scope  INTEGER NOT NULL,
    token  INTEGER NOT NULL,
    spam   INTEGER NOT NULL DEFAULT 0,
    ham    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (scope, token)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS bayes_totals (
    scope  INTEGER PRIMARY KEY,
    spam   INTEGER NOT NULL DEFAULT 0,
    ham    INTEGER NOT NULL DEFAULT 0
);
