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
