//! Field-engineering actions that use production keys outside a job (`card perso`,
//! `card issue`): who ran what, on which card, and how it ended. Append-only, like the
//! transitions, so the key use an auditor asks about is always on record.

use rusqlite::params;
use serde::Serialize;

use super::{now, Journal, JournalError};

/// An engineer's command that opens cards with production keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EngineeringCommand {
    /// `card perso`: a DGI set written with a card product's transport keys.
    CardPerso,
    /// `card issue`: an order issued on the encoder only.
    CardIssue,
}

impl EngineeringCommand {
    /// The stored code.
    pub fn as_str(self) -> &'static str {
        match self {
            EngineeringCommand::CardPerso => "card_perso",
            EngineeringCommand::CardIssue => "card_issue",
        }
    }

    fn parse(s: &str) -> Result<Self, JournalError> {
        match s {
            "card_perso" => Ok(EngineeringCommand::CardPerso),
            "card_issue" => Ok(EngineeringCommand::CardIssue),
            other => Err(JournalError::Corrupt(format!(
                "unknown engineering command '{other}'"
            ))),
        }
    }
}

/// Where an engineering action stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EngineeringOutcome {
    /// Written before the keys are used: a crash leaves this as the last word.
    Started,
    /// The card was written (and, for `card issue`, verified).
    Done,
    /// It stopped with an error (the detail says which).
    Failed,
}

impl EngineeringOutcome {
    /// The stored code.
    pub fn as_str(self) -> &'static str {
        match self {
            EngineeringOutcome::Started => "started",
            EngineeringOutcome::Done => "done",
            EngineeringOutcome::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Result<Self, JournalError> {
        match s {
            "started" => Ok(EngineeringOutcome::Started),
            "done" => Ok(EngineeringOutcome::Done),
            "failed" => Ok(EngineeringOutcome::Failed),
            other => Err(JournalError::Corrupt(format!(
                "unknown engineering outcome '{other}'"
            ))),
        }
    }
}

/// One row of the engineering record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EngineeringEntry {
    /// When (RFC 3339; set by the journal on write).
    pub at: String,
    /// Who ran it (`--actor`, or the operating-system user).
    pub actor: String,
    /// What was run.
    pub command: EngineeringCommand,
    /// The card, when the command names one.
    pub card_id: Option<String>,
    /// The PAN written, masked, when known.
    pub masked_pan: Option<String>,
    /// The reader pattern used.
    pub reader: String,
    /// Which keys opened the card (transport key set or card product).
    pub keys: String,
    /// How it stands.
    pub outcome: EngineeringOutcome,
    /// The result or the error, in words (never card data).
    pub detail: Option<String>,
}

impl Journal {
    /// Appends an engineering action; a PAN that is not masked is refused.
    pub fn record_engineering(&self, e: &EngineeringEntry) -> Result<(), JournalError> {
        if let Some(m) = &e.masked_pan {
            if !station_emv::card_data::looks_masked(m) {
                return Err(JournalError::Refused("a PAN that is not masked"));
            }
        }
        self.lock().execute(
            "INSERT INTO engineering (at, actor, command, card_id, masked_pan, reader, keys, \
             outcome, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                now(),
                e.actor,
                e.command.as_str(),
                e.card_id,
                e.masked_pan,
                e.reader,
                e.keys,
                e.outcome.as_str(),
                e.detail
            ],
        )?;
        Ok(())
    }

    /// The latest engineering actions, newest first.
    pub fn engineering(&self, limit: u32) -> Result<Vec<EngineeringEntry>, JournalError> {
        self.engineering_where("1 = 1 ORDER BY id DESC LIMIT ?1", params![limit])
    }

    /// Engineering actions in `[from, until)` (RFC 3339 bounds), oldest first.
    pub fn engineering_between(
        &self,
        from: &str,
        until: &str,
    ) -> Result<Vec<EngineeringEntry>, JournalError> {
        self.engineering_where("at >= ?1 AND at < ?2 ORDER BY id", params![from, until])
    }

    fn engineering_where(
        &self,
        filter: &str,
        args: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<EngineeringEntry>, JournalError> {
        let conn = self.lock();
        let mut stmt = conn.prepare(&format!(
            "SELECT at, actor, command, card_id, masked_pan, reader, keys, outcome, detail \
             FROM engineering WHERE {filter}"
        ))?;
        let rows = stmt.query_map(args, |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Option<String>>(3)?,
                r.get::<_, Option<String>>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, String>(6)?,
                r.get::<_, String>(7)?,
                r.get::<_, Option<String>>(8)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (at, actor, command, card_id, masked_pan, reader, keys, outcome, detail) = row?;
            out.push(EngineeringEntry {
                at,
                actor,
                command: EngineeringCommand::parse(&command)?,
                card_id,
                masked_pan,
                reader,
                keys,
                outcome: EngineeringOutcome::parse(&outcome)?,
                detail,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(outcome: EngineeringOutcome) -> EngineeringEntry {
        EngineeringEntry {
            at: String::new(),
            actor: "fieldeng".into(),
            command: EngineeringCommand::CardIssue,
            card_id: Some("card-1".into()),
            masked_pan: Some("476173******0010".into()),
            reader: "vpcd".into(),
            keys: "DEV-VISA".into(),
            outcome,
            detail: None,
        }
    }

    #[test]
    fn an_action_is_read_back_newest_first_with_who_what_and_how_it_ended() {
        let j = Journal::open_in_memory().unwrap();
        j.record_engineering(&entry(EngineeringOutcome::Started))
            .unwrap();
        j.record_engineering(&entry(EngineeringOutcome::Done))
            .unwrap();
        let got = j.engineering(10).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].outcome, EngineeringOutcome::Done);
        assert_eq!(got[1].outcome, EngineeringOutcome::Started);
        assert_eq!(got[0].actor, "fieldeng");
        assert_eq!(got[0].card_id.as_deref(), Some("card-1"));
        assert!(!got[0].at.is_empty());
    }

    #[test]
    fn a_clear_pan_is_refused() {
        let j = Journal::open_in_memory().unwrap();
        let mut e = entry(EngineeringOutcome::Started);
        e.masked_pan = Some("4761739001010010".into());
        assert!(matches!(
            j.record_engineering(&e),
            Err(JournalError::Refused(_))
        ));
        assert!(j.engineering(10).unwrap().is_empty());
    }

    #[test]
    fn the_record_is_append_only() {
        let j = Journal::open_in_memory().unwrap();
        j.record_engineering(&entry(EngineeringOutcome::Started))
            .unwrap();
        let conn = j.lock();
        assert!(conn
            .execute("UPDATE engineering SET outcome = 'done'", [])
            .is_err());
        assert!(conn.execute("DELETE FROM engineering", []).is_err());
    }
}
