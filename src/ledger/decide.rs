//! The ledger's decision for one unit record — pure, so the ledger stage and `replay` make
//! it the same way: the first source of a key pays it, the same source seen again was
//! already decided, any other source is a `duplicate` of the first.

use crate::dedup::Seen;
use crate::domain::{Reason, Rejection};
use crate::route::UnitRecord;

/// What becomes of one unit record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// A unit of the ledger: it pays `amount_fen`.
    Unit,
    /// This source's record was decided before (routed twice): nothing to write.
    AlreadyDecided,
    /// Another source paid the key first.
    Duplicate(Rejection),
}

/// Decides a record given what the state says of its key.
pub fn decide(record: &UnitRecord<'_>, seen: Seen) -> Decision {
    match seen {
        Seen::New => Decision::Unit,
        Seen::SameMessage => Decision::AlreadyDecided,
        Seen::DuplicateOf(first) => Decision::Duplicate(Rejection::new(
            Reason::Duplicate,
            format!(
                "unit {} {} already paid: first recorded at {first}",
                record.program(),
                record.unit_key
            ),
        )),
    }
}

/// Decides `record` given `seen` and appends its `unit_decisions` row at the given
/// units-topic coordinates; returns the decision (nothing is appended when the record was
/// decided already). For callers that keep no dead letters: `replay`, `bench --core`.
pub fn decide_into(
    record: UnitRecord<'_>,
    seen: Seen,
    ledger_partition: u32,
    ledger_offset: u64,
    ledger_index: u32,
    decided_at_unix_s: u32,
    out: &mut crate::store::rowbinary::RowBinaryWriter,
) -> Decision {
    let decision = decide(&record, seen);
    let (reason, detail) = match &decision {
        Decision::Unit => ("", ""),
        Decision::AlreadyDecided => return decision,
        Decision::Duplicate(rejection) => (rejection.reason.as_str(), rejection.detail.as_str()),
    };
    crate::store::decisions::DecisionRow {
        ledger_partition,
        ledger_offset,
        ledger_index,
        record,
        decided_at_unix_s,
        reason,
        detail,
        // Replay and the core bench judge messages, not voids' links to their records.
        voided: false,
        voids_position: 0,
    }
    .encode(out);
    decision
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Program;

    #[test]
    fn first_pays_same_is_skipped_other_is_a_duplicate_naming_the_first() {
        let record = UnitRecord {
            program: Some(Program::ImportParcel),
            unit_key: "SF1",
            ..UnitRecord::default()
        };
        assert_eq!(decide(&record, Seen::New), Decision::Unit);
        assert_eq!(decide(&record, Seen::SameMessage), Decision::AlreadyDecided);
        let Decision::Duplicate(rejection) = decide(&record, Seen::DuplicateOf("t/0/5".into()))
        else {
            panic!("a duplicate");
        };
        assert_eq!(rejection.reason, Reason::Duplicate);
        assert!(
            rejection.detail.contains("first recorded at t/0/5"),
            "{}",
            rejection.detail
        );
    }
}
