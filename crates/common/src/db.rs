//! Database connections for a service: SQLite by default, PostgreSQL or MySQL/MariaDB by URL
//! (`[database] connection`), the same migrations on all three.
//!
//! SQLite runs in WAL mode (readers never wait for the writer) with a busy timeout, and
//! every write transaction of a database is serialised through one async lock, so a burst
//! of concurrent writes queues in kumo instead of failing with "database is locked" — the
//! failure the real placement service shows on SQLite under 16 concurrent claims.

use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ConnectOptions, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr,
    SqliteTransactionMode, TransactionOptions, TransactionTrait,
};
use std::path::Path;
use std::time::Duration;
use tokio::sync::{Mutex, MutexGuard};

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot open database {url}: {source}")]
    Connect { url: String, source: DbErr },
    #[error("cannot create the directory for {path}: {source}")]
    Dir {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "unsupported database URL {0:?}: use sqlite://PATH, postgresql://USER:PASS@HOST/DB or mysql://USER:PASS@HOST/DB"
    )]
    Unsupported(String),
}

/// One service's database.
#[derive(Debug)]
pub struct Database {
    conn: DatabaseConnection,
    writes: Mutex<()>,
    url: String,
}

/// A write transaction holding the database's write lock until it is committed or dropped.
pub struct WriteTxn<'a> {
    pub txn: DatabaseTransaction,
    _guard: MutexGuard<'a, ()>,
}

impl WriteTxn<'_> {
    pub async fn commit(self) -> Result<(), DbErr> {
        self.txn.commit().await
    }
}

impl std::ops::Deref for WriteTxn<'_> {
    type Target = DatabaseTransaction;
    fn deref(&self) -> &DatabaseTransaction {
        &self.txn
    }
}

impl Database {
    /// Open (creating if needed) the database at `url`.
    pub async fn connect(url: &str) -> Result<Self, DbError> {
        let mut opts = ConnectOptions::new(url.to_string());
        // Every statement at debug level under `sqlx::query`, inside the span of the request
        // that made it: `KUMO_LOG=info,sqlx::query=debug` shows what each request costs.
        opts.sqlx_logging(true)
            .sqlx_logging_level(log::LevelFilter::Debug)
            .sqlx_slow_statements_logging_settings(log::LevelFilter::Warn, Duration::from_secs(5))
            .connect_timeout(Duration::from_secs(10));
        if let Some(path) = url.strip_prefix("sqlite://") {
            let path = path.split('?').next().unwrap_or(path);
            if path != ":memory:"
                && let Some(parent) = Path::new(path).parent()
            {
                std::fs::create_dir_all(parent).map_err(|source| DbError::Dir {
                    path: path.to_string(),
                    source,
                })?;
            }
            opts.map_sqlx_sqlite_opts(|o| {
                o.create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .busy_timeout(Duration::from_secs(30))
                    .foreign_keys(true)
            });
            // Readers run in parallel; one pool is enough for a 2-core all-in-one host. A file
            // never drops a connection: no ping before each use (each one a round trip to
            // sqlx's SQLite worker thread).
            opts.max_connections(8)
                .min_connections(1)
                .test_before_acquire(false);
        } else if is_server_url(url) {
            // A server shared by many processes and hosts: more connections, kept alive,
            // and a short acquire timeout so an unreachable server is an error, not a hang.
            // A connection in use is not pinged before each use (a round trip to the server
            // for every statement outside a transaction and every transaction: most of a
            // boot's database round trips); one idle for a while is, as a server restart, a
            // proxy or a firewall may have dropped it.
            opts.max_connections(16)
                .min_connections(1)
                .acquire_timeout(Duration::from_secs(30))
                .idle_timeout(Duration::from_secs(600))
                .test_before_acquire_if_idle_for(Duration::from_secs(10));
        } else {
            return Err(DbError::Unsupported(url.to_string()));
        }
        let conn = sea_orm::Database::connect(opts)
            .await
            .map_err(|source| DbError::Connect {
                url: redact(url),
                source,
            })?;
        Ok(Self {
            conn,
            writes: Mutex::new(()),
            url: redact(url),
        })
    }

    /// The connection for reads (and for schema migrations at start).
    pub fn conn(&self) -> &DatabaseConnection {
        &self.conn
    }

    pub fn backend(&self) -> DbBackend {
        self.conn.get_database_backend()
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Begin a write transaction; concurrent writers wait here, not in SQLite.
    ///
    /// On SQLite the transaction is `BEGIN IMMEDIATE`: it takes SQLite's write lock at once.
    /// A dropped (failed) transaction rolls back after its guard is released; a deferred
    /// successor that read first would then fail to upgrade with "database is locked"
    /// instead of waiting, while an immediate one waits in the busy timeout.
    pub async fn write(&self) -> Result<WriteTxn<'_>, DbErr> {
        let guard = self.writes.lock().await;
        let txn = if self.backend() == DbBackend::Sqlite {
            self.conn
                .begin_with_options(TransactionOptions {
                    sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
                    ..Default::default()
                })
                .await?
        } else {
            self.conn.begin().await?
        };
        Ok(WriteTxn { txn, _guard: guard })
    }
}

/// Whether `url` names a database server (PostgreSQL or MySQL/MariaDB) rather than a file.
fn is_server_url(url: &str) -> bool {
    ["postgres://", "postgresql://", "mysql://"]
        .iter()
        .any(|p| url.starts_with(p))
}

/// `sql` written with `$1, $2, …` placeholders (PostgreSQL's, which SQLite also takes) for
/// `backend`: MySQL takes `?` only. Placeholders must appear in order, each once.
pub fn placeholders(backend: DbBackend, sql: &str) -> String {
    if backend != DbBackend::MySql {
        return sql.to_string();
    }
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            while chars.peek().is_some_and(char::is_ascii_digit) {
                chars.next();
            }
            out.push('?');
        } else {
            out.push(c);
        }
    }
    out
}

/// A URL without its password, for logs and errors.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{}:***{}", &url[..s + 3], user, &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// Whether a database error is a uniqueness violation (turned into a 409 by services).
pub fn is_unique_violation(err: &DbErr) -> bool {
    matches!(
        err.sql_err(),
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_follow_the_backend() {
        let sql = "SELECT a FROM t WHERE x = $1 AND y = $2 AND z = '$' ORDER BY $10";
        assert_eq!(placeholders(DbBackend::Postgres, sql), sql);
        assert_eq!(placeholders(DbBackend::Sqlite, sql), sql);
        assert_eq!(
            placeholders(DbBackend::MySql, sql),
            "SELECT a FROM t WHERE x = ? AND y = ? AND z = '$' ORDER BY ?"
        );
        assert!(is_server_url("postgresql://u@h/db") && is_server_url("mysql://u:p@h/db"));
        assert!(!is_server_url("sqlite:///x.sqlite") && !is_server_url("oracle://x"));
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact("postgres://kumo:s3cret@db/identity"),
            "postgres://kumo:***@db/identity"
        );
        assert_eq!(
            redact("sqlite:///var/lib/kumo/x.sqlite"),
            "sqlite:///var/lib/kumo/x.sqlite"
        );
    }

    #[tokio::test]
    async fn sqlite_opens_in_wal_mode_and_serialises_writes() {
        use sea_orm::{ConnectionTrait, Statement};
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/sub/t.sqlite", dir.path().display());
        let db = Database::connect(&url).await.unwrap();
        let row = db
            .conn()
            .query_one_raw(Statement::from_string(
                DbBackend::Sqlite,
                "PRAGMA journal_mode",
            ))
            .await
            .unwrap()
            .unwrap();
        let mode: String = row.try_get_by_index(0).unwrap();
        assert_eq!(mode, "wal");
        db.conn()
            .execute_unprepared("CREATE TABLE t (x INTEGER)")
            .await
            .unwrap();
        let w = db.write().await.unwrap();
        w.execute_unprepared("INSERT INTO t VALUES (1)")
            .await
            .unwrap();
        w.commit().await.unwrap();
    }

    /// Writers that fail after writing (their transaction dropped, rolled back later) must
    /// not make the next writer fail with "database is locked".
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn failed_writers_do_not_lock_out_the_next_one() {
        use sea_orm::ConnectionTrait;
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/t.sqlite", dir.path().display());
        let db = std::sync::Arc::new(Database::connect(&url).await.unwrap());
        db.conn()
            .execute_unprepared("CREATE TABLE t (x INTEGER)")
            .await
            .unwrap();
        let mut tasks = Vec::new();
        for i in 0..40 {
            let db = db.clone();
            tasks.push(tokio::spawn(async move {
                let w = db.write().await?;
                w.execute_unprepared("SELECT count(*) FROM t").await?;
                w.execute_unprepared(&format!("INSERT INTO t VALUES ({i})"))
                    .await?;
                if i % 2 == 0 {
                    drop(w); // a failed writer: rolled back, not committed
                    Ok::<(), DbErr>(())
                } else {
                    w.commit().await
                }
            }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let row = db
            .conn()
            .query_one_raw(sea_orm::Statement::from_string(
                DbBackend::Sqlite,
                "SELECT count(*) FROM t",
            ))
            .await
            .unwrap()
            .unwrap();
        let n: i64 = row.try_get_by_index(0).unwrap();
        assert_eq!(n, 20);
    }
}
