//! The history database's schema and its migrations, numbered by SQLite's `user_version`.

use rusqlite::{Connection, TransactionBehavior};

use super::HistoryError;

/// Schema version this build writes.
pub const SCHEMA_VERSION: i64 = 3;

/// Each step takes the schema from version `index` to `index + 1`.
const STEPS: &[&str] = &[
    // 0 → 1: one row per migration instance.
    "CREATE TABLE moves (
         id            INTEGER PRIMARY KEY,
         job           TEXT NOT NULL UNIQUE,
         lpar          TEXT NOT NULL,
         src_hvm       TEXT NOT NULL,
         src_number    INTEGER NOT NULL,
         dst_hvm       TEXT NOT NULL,
         dst_number    INTEGER,
         mode          TEXT NOT NULL,
         result        TEXT NOT NULL,
         started_at    TEXT NOT NULL,
         finished_at   TEXT,
         suspension_us INTEGER,
         detail        TEXT
     );
     CREATE INDEX moves_by_lpar ON moves (lpar, started_at);",
    // 1 → 2: rehearsals and connectivity tests, which prove a move without making it (kept out
    // of `moves` so they never count as a placement or as a move to return from).
    "CREATE TABLE trials (
         id          INTEGER PRIMARY KEY,
         job         TEXT NOT NULL UNIQUE,
         kind        TEXT NOT NULL,
         lpar        TEXT,
         src_hvm     TEXT NOT NULL,
         src_number  INTEGER,
         dst_hvm     TEXT NOT NULL,
         result      TEXT NOT NULL,
         started_at  TEXT NOT NULL,
         finished_at TEXT,
         detail      TEXT
     );
     CREATE INDEX trials_by_lpar ON trials (lpar, started_at);
     CREATE INDEX trials_by_time ON trials (started_at);",
    // 2 → 3: who asked (OS user, host, front end, policy name). Rows written before stay NULL
    // there: nobody recorded it then, and the history says so rather than guessing.
    "ALTER TABLE moves ADD COLUMN actor_user TEXT;
     ALTER TABLE moves ADD COLUMN actor_host TEXT;
     ALTER TABLE moves ADD COLUMN actor_via TEXT;
     ALTER TABLE moves ADD COLUMN actor_policy TEXT;
     ALTER TABLE trials ADD COLUMN actor_user TEXT;
     ALTER TABLE trials ADD COLUMN actor_host TEXT;
     ALTER TABLE trials ADD COLUMN actor_via TEXT;
     ALTER TABLE trials ADD COLUMN actor_policy TEXT;",
];

/// Brings the database to [`SCHEMA_VERSION`], one step per transaction. A database written by
/// a newer build is refused rather than guessed at.
pub fn migrate(conn: &mut Connection) -> Result<(), HistoryError> {
    loop {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version == SCHEMA_VERSION {
            return Ok(());
        }
        let step = usize::try_from(version)
            .ok()
            .and_then(|v| STEPS.get(v))
            .ok_or_else(|| HistoryError::SchemaTooNew {
                path: tx
                    .path()
                    .filter(|p| !p.is_empty())
                    .unwrap_or(":memory:")
                    .to_owned(),
                found: version,
                known: SCHEMA_VERSION,
            })?;
        tx.execute_batch(step)?;
        tx.pragma_update(None, "user_version", version + 1)?;
        tx.commit()?;
        tracing::info!(from = version, to = version + 1, "history schema migrated");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_match_the_version() {
        assert_eq!(STEPS.len() as i64, SCHEMA_VERSION);
    }

    #[test]
    fn a_newer_database_file_is_refused_naming_the_file_and_left_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.sqlite");
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        drop(conn);
        let Err(err) = super::super::History::open(&path) else {
            panic!("a newer database must be refused");
        };
        let text = err.to_string();
        assert!(
            text.contains(&format!(
                "{} is a migration history database of schema version {}",
                path.display(),
                SCHEMA_VERSION + 1
            )) && text.contains("upgrade lparmover"),
            "{text}"
        );
        let conn = Connection::open(&path).unwrap();
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION + 1);
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        assert!(matches!(
            migrate(&mut conn),
            Err(HistoryError::SchemaTooNew { .. })
        ));
    }

    #[test]
    fn a_version_1_database_gains_the_trials_table_and_keeps_its_moves() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(STEPS[0]).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute(
            "INSERT INTO moves (job, lpar, src_hvm, src_number, dst_hvm, mode, result, started_at)
             VALUES ('j1', 'web-01', 'b1', 1, 'b2', 'shutdown', 'completed', '2026-01-01T00:00:00.000000Z')",
            [],
        )
        .unwrap();
        migrate(&mut conn).unwrap();
        let moves: i64 = conn
            .query_row("SELECT COUNT(*) FROM moves", [], |r| r.get(0))
            .unwrap();
        let trials: i64 = conn
            .query_row("SELECT COUNT(*) FROM trials", [], |r| r.get(0))
            .unwrap();
        assert_eq!((moves, trials), (1, 0));
    }

    #[test]
    fn migrating_twice_is_a_no_op() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        migrate(&mut conn).unwrap();
        let v: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, SCHEMA_VERSION);
    }
}
