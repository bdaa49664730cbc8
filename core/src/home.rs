//! The destination's home: the database `set_destination` was last called in, so that a copy
//! of it (a dump restored elsewhere, `CREATE DATABASE … TEMPLATE`, a cluster upgraded with
//! pg_upgrade) never pushes until a DBA says it should.
//!
//! A database is known by its cluster's system identifier (set by initdb, kept by physical
//! copies and standbys) and its OID in that cluster. A physical copy — a promoted standby, a
//! PITR clone, a file-system snapshot — has both, and cannot be told apart from the original.

use crate::error::{Error, SqlState};
use crate::names::{function::SET_DESTINATION, setting::API_KEY_FILE};
use std::fmt;

/// A database, as the destination's home records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Home {
    /// The cluster's system identifier (`pg_control_system()`), as text.
    pub system: String,
    /// The database's OID in that cluster.
    pub database: u32,
}

impl Home {
    /// Reads the stored form, `<system identifier>/<database OID>`.
    pub fn parse(text: &str) -> Option<Home> {
        let (system, database) = text.split_once('/')?;
        if system.is_empty() || !system.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
            return None;
        }
        Some(Home {
            system: system.to_owned(),
            database: database.parse().ok()?,
        })
    }

    /// Why pushes from `here` are refused when the destination was set in `self`, if they are.
    pub fn refuses(&self, here: &Home) -> Option<Error> {
        let how = if self.system != here.system {
            "This cluster is not the one set_destination() was called in: a dump restored into another cluster, or a cluster upgraded with pg_upgrade (which gives it a new system identifier)."
        } else if self.database != here.database {
            "This database is not the one set_destination() was called in: a dump restored into another database of this cluster, or a database created from it as a template."
        } else {
            return None;
        };
        Some(copy_error().detail(how))
    }
}

/// The error of a push from a copy of the destination's home, before it says how it is one.
fn copy_error() -> Error {
    Error::new(
        SqlState::ObjectNotInPrerequisiteState,
        "pushes are paused: this database is a copy of the one the destination was set in",
    )
    .hint(format!("If this database is to push to Qobra from now on, confirm it by calling SELECT {SET_DESTINATION}(); otherwise leave it, and unset {API_KEY_FILE} here."))
}

impl fmt::Display for Home {
    /// The stored form, read back by [`Home::parse`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.system, self.database)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn home(system: &str, database: u32) -> Home {
        Home {
            system: system.into(),
            database,
        }
    }

    #[test]
    fn the_stored_form_reads_back() {
        let h = home("7371234567890123456", 16384);
        assert_eq!(h.to_string(), "7371234567890123456/16384");
        assert_eq!(Home::parse(&h.to_string()), Some(h));
        for bad in [
            "", "/", "123", "123/", "/5", "12a/5", "1/x", "1/-5", "1/5/6",
        ] {
            assert_eq!(Home::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn only_the_same_database_of_the_same_cluster_pushes() {
        let set_in = home("1", 16384);
        assert!(set_in.refuses(&home("1", 16384)).is_none());
        let other_cluster = set_in.refuses(&home("2", 16384)).expect("refused");
        assert_eq!(other_cluster.state, SqlState::ObjectNotInPrerequisiteState);
        assert!(other_cluster.detail.unwrap().contains("pg_upgrade"));
        let other_database = set_in.refuses(&home("1", 16385)).expect("refused");
        assert!(other_database.detail.unwrap().contains("template"));
        assert!(other_database
            .hint
            .unwrap()
            .contains("qobra_sync.set_destination()"));
    }
}
