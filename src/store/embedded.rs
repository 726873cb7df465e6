//! The embedded backend: collections as SQLite tables of JSON documents.
//!
//! Each collection is a table `(id TEXT PRIMARY KEY, doc TEXT)`; filters, sorts and indexes
//! work on `json_extract(doc, '$.path')` expressions, so an index from the migrations is an
//! expression index and a unique index really enforces uniqueness. The database runs in WAL
//! mode with one writer connection (writes are serialised, which is what makes
//! find-one-and-update atomic) and a few reader connections; blocking calls run on tokio's
//! blocking pool.

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OpenFlags, params_from_iter};
use serde_json::Value;

use crate::config::EmbeddedSynchronous;

use super::{
    Backend, Collection, Dir, Doc, Filter, FindOptions, IndexSpec, Op, StoreError, StoreResult,
    Update, path_segments,
};

const READERS: usize = 4;

struct Inner {
    writer: Mutex<Connection>,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
    /// Tables known to exist, so a collection is created once, lazily, if migrations missed it.
    tables: Mutex<HashSet<String>>,
}

/// SQLite-backed [`Backend`].
#[derive(Clone)]
pub struct SqliteBackend {
    inner: Arc<Inner>,
}

fn backend_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn map_sql_err(e: rusqlite::Error) -> StoreError {
    if let rusqlite::Error::SqliteFailure(f, msg) = &e
        && f.code == rusqlite::ErrorCode::ConstraintViolation
    {
        return StoreError::Duplicate(msg.clone().unwrap_or_else(|| e.to_string()));
    }
    backend_err(e)
}

fn open_conn(path: &Path, write: bool, sync: EmbeddedSynchronous) -> rusqlite::Result<Connection> {
    let flags = if write {
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE
    } else {
        OpenFlags::SQLITE_OPEN_READ_ONLY
    } | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    if write {
        conn.pragma_update(None, "journal_mode", "WAL")?;
    }
    // FULL (the default) syncs the WAL on every commit, so an acknowledged write survives
    // power loss; NORMAL syncs only at checkpoints (`embedded_synchronous`).
    conn.pragma_update(None, "synchronous", sync.pragma())?;
    Ok(conn)
}

impl SqliteBackend {
    /// Open (creating if needed) the database file, with `synchronous=FULL`.
    pub async fn open(path: &Path) -> anyhow::Result<Self> {
        Self::open_with(path, EmbeddedSynchronous::Full).await
    }

    /// Open (creating if needed) the database file with the given durability. The directory is
    /// created 0700 and the database files are 0600 whatever the umask.
    pub async fn open_with(path: &Path, sync: EmbeddedSynchronous) -> anyhow::Result<Self> {
        let path = path.to_path_buf();
        tokio::task::spawn_blocking(move || -> anyhow::Result<Self> {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                crate::secrets::private_dir(dir)?;
            }
            // Created 0600 before SQLite opens it (SQLite would use 0644 & ~umask); SQLite gives
            // its -wal and -shm files the database file's mode, and they are narrowed below too.
            crate::secrets::private_file(&path, false)
                .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", path.display()))?;
            let writer = open_conn(&path, true, sync)
                .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))?;
            let readers = (0..READERS)
                .map(|_| open_conn(&path, false, sync).map(Mutex::new))
                .collect::<rusqlite::Result<Vec<_>>>()?;
            for suffix in ["-wal", "-shm"] {
                let mut p = path.clone().into_os_string();
                p.push(suffix);
                crate::secrets::narrow_file(Path::new(&p)).map_err(|e| {
                    anyhow::anyhow!("cannot make {} private: {e}", Path::new(&p).display())
                })?;
            }
            Ok(Self {
                inner: Arc::new(Inner {
                    writer: Mutex::new(writer),
                    readers,
                    next_reader: AtomicUsize::new(0),
                    tables: Mutex::new(HashSet::new()),
                }),
            })
        })
        .await?
    }

    fn ensure_table(&self, conn: &Connection, name: &str) -> StoreResult<()> {
        let mut tables = self.inner.tables.lock().map_err(backend_err)?;
        if !tables.contains(name) {
            conn.execute_batch(&format!(
                "CREATE TABLE IF NOT EXISTS {} (id TEXT PRIMARY KEY NOT NULL, doc TEXT NOT NULL)",
                table(name)
            ))
            .map_err(map_sql_err)?;
            tables.insert(name.to_string());
        }
        Ok(())
    }

    async fn write<T: Send + 'static>(
        &self,
        coll: &str,
        f: impl FnOnce(&mut Connection) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let this = self.clone();
        let coll = coll.to_string();
        tokio::task::spawn_blocking(move || {
            let mut conn = this.inner.writer.lock().map_err(backend_err)?;
            this.ensure_table(&conn, &coll)?;
            f(&mut conn)
        })
        .await
        .map_err(backend_err)?
    }

    async fn read<T: Send + 'static>(
        &self,
        coll: &str,
        f: impl FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let this = self.clone();
        let coll = coll.to_string();
        tokio::task::spawn_blocking(move || {
            // A table that does not exist yet is created through the writer first.
            if !this
                .inner
                .tables
                .lock()
                .map_err(backend_err)?
                .contains(&coll)
            {
                let w = this.inner.writer.lock().map_err(backend_err)?;
                this.ensure_table(&w, &coll)?;
            }
            let i = this.inner.next_reader.fetch_add(1, Ordering::Relaxed) % READERS;
            let conn = this.inner.readers[i].lock().map_err(backend_err)?;
            f(&conn)
        })
        .await
        .map_err(backend_err)?
    }
}

fn table(name: &str) -> String {
    path_segments(name);
    format!("\"c_{name}\"")
}

/// `json_extract(doc, '$.a.b[0]')`, or the primary-key column for `id`.
fn expr(path: &str) -> String {
    if path == "id" {
        return "id".to_string();
    }
    format!("json_extract(doc, '{}')", json_path(path))
}

fn json_path(path: &str) -> String {
    let mut out = String::from("$");
    for seg in path_segments(path) {
        if seg.chars().all(|c| c.is_ascii_digit()) {
            out.push_str(&format!("[{seg}]"));
        } else {
            out.push_str(&format!(".\"{seg}\""));
        }
    }
    out
}

/// A JSON value as an SQL parameter comparable with `json_extract` results.
fn sql_value(v: &Value) -> SqlValue {
    match v {
        Value::Null => SqlValue::Null,
        Value::Bool(b) => SqlValue::Integer(i64::from(*b)),
        Value::Number(n) => match n.as_i64() {
            Some(i) => SqlValue::Integer(i),
            None => SqlValue::Real(n.as_f64().unwrap_or(0.0)),
        },
        Value::String(s) => SqlValue::Text(s.clone()),
        other => SqlValue::Text(other.to_string()),
    }
}

fn where_sql(f: &Filter, params: &mut Vec<SqlValue>) -> String {
    match f {
        Filter::All => "1".to_string(),
        Filter::And(fs) if fs.is_empty() => "1".to_string(),
        Filter::Or(fs) if fs.is_empty() => "0".to_string(),
        Filter::And(fs) => {
            let parts: Vec<String> = fs.iter().map(|f| where_sql(f, params)).collect();
            format!("({})", parts.join(" AND "))
        }
        Filter::Or(fs) => {
            let parts: Vec<String> = fs.iter().map(|f| where_sql(f, params)).collect();
            format!("({})", parts.join(" OR "))
        }
        Filter::Cmp(path, op, v) => {
            let e = expr(path);
            if v.is_null() {
                return match op {
                    Op::Eq => format!("{e} IS NULL"),
                    Op::Ne => format!("{e} IS NOT NULL"),
                    _ => "0".to_string(),
                };
            }
            params.push(sql_value(v));
            match op {
                Op::Eq => format!("{e} = ?"),
                // MongoDB's $ne also matches documents without the field.
                Op::Ne => format!("({e} IS NULL OR {e} <> ?)"),
                Op::Lt => format!("{e} < ?"),
                Op::Lte => format!("{e} <= ?"),
                Op::Gt => format!("{e} > ?"),
                Op::Gte => format!("{e} >= ?"),
            }
        }
        Filter::In(path, vs) => {
            if vs.is_empty() {
                return "0".to_string();
            }
            let e = expr(path);
            let marks: Vec<&str> = vs
                .iter()
                .map(|v| {
                    params.push(sql_value(v));
                    "?"
                })
                .collect();
            format!("{e} IN ({})", marks.join(","))
        }
        Filter::Contains(path, v) => {
            params.push(sql_value(v));
            format!(
                "EXISTS (SELECT 1 FROM json_each(doc, '{}') WHERE json_each.value = ?)",
                json_path(path)
            )
        }
    }
}

fn order_sql(sort: &[(String, Dir)]) -> String {
    let mut parts: Vec<String> = sort
        .iter()
        .map(|(p, d)| {
            format!(
                "{} {}",
                expr(p),
                if *d == Dir::Asc { "ASC" } else { "DESC" }
            )
        })
        .collect();
    parts.push("id ASC".to_string());
    format!(" ORDER BY {}", parts.join(", "))
}

/// The SQL expression that applies `u` to the `doc` column.
fn update_sql(u: &Update, params: &mut Vec<SqlValue>) -> String {
    let mut e = "doc".to_string();
    for (path, v) in &u.set {
        params.push(SqlValue::Text(v.to_string()));
        e = format!("json_set({e}, '{}', json(?))", json_path(path));
    }
    for (path, by) in &u.inc {
        params.push(SqlValue::Integer(*by));
        e = format!(
            "json_set({e}, '{p}', COALESCE(json_extract(doc, '{p}'), 0) + ?)",
            p = json_path(path)
        );
    }
    for (path, v) in &u.push {
        params.push(SqlValue::Text(v.to_string()));
        let p = json_path(path);
        e = format!(
            "json_set({e}, '{p}', json_insert(COALESCE(json_extract(doc, '{p}'), '[]'), '$[#]', json(?)))"
        );
    }
    for path in &u.unset {
        e = format!("json_remove({e}, '{}')", json_path(path));
    }
    e
}

fn parse_doc(text: &str) -> StoreResult<Doc> {
    match serde_json::from_str(text) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(StoreError::Backend(
            "stored document is not an object".into(),
        )),
        Err(e) => Err(backend_err(e)),
    }
}

fn doc_id(doc: &Doc) -> StoreResult<String> {
    match doc.get("id") {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        _ => Err(StoreError::Backend(
            "a document needs a non-empty string id".into(),
        )),
    }
}

struct SqliteCollection {
    backend: SqliteBackend,
    name: String,
}

impl SqliteCollection {
    /// Run one writing statement: how many rows it changed.
    async fn execute(&self, sql: String, params: Vec<SqlValue>) -> StoreResult<u64> {
        self.backend
            .write(&self.name, move |c| {
                let n = c
                    .execute(&sql, params_from_iter(params))
                    .map_err(map_sql_err)?;
                Ok(n as u64)
            })
            .await
    }
}

#[async_trait]
impl Collection for SqliteCollection {
    async fn insert(&self, doc: Doc) -> StoreResult<()> {
        let id = doc_id(&doc)?;
        let text = Value::Object(doc).to_string();
        let sql = format!("INSERT INTO {} (id, doc) VALUES (?, ?)", table(&self.name));
        self.backend
            .write(&self.name, move |c| {
                c.execute(&sql, rusqlite::params![id, text])
                    .map_err(map_sql_err)?;
                Ok(())
            })
            .await
    }

    async fn find_one(&self, filter: &Filter) -> StoreResult<Option<Doc>> {
        let opts = FindOptions::default().limit(1);
        Ok(self.find(filter, &opts).await?.into_iter().next())
    }

    async fn find(&self, filter: &Filter, opts: &FindOptions) -> StoreResult<Vec<Doc>> {
        let mut params = Vec::new();
        let mut sql = format!(
            "SELECT doc FROM {} WHERE {}",
            table(&self.name),
            where_sql(filter, &mut params)
        );
        sql.push_str(&order_sql(&opts.sort));
        let limit = opts
            .limit
            .map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX));
        sql.push_str(&format!(" LIMIT {limit} OFFSET {}", opts.skip));
        self.backend
            .read(&self.name, move |c| {
                let mut stmt = c.prepare_cached(&sql).map_err(map_sql_err)?;
                let rows = stmt
                    .query_map(params_from_iter(params), |r| r.get::<_, String>(0))
                    .map_err(map_sql_err)?;
                rows.map(|r| parse_doc(&r.map_err(map_sql_err)?)).collect()
            })
            .await
    }

    async fn count(&self, filter: &Filter) -> StoreResult<u64> {
        let mut params = Vec::new();
        let sql = format!(
            "SELECT COUNT(*) FROM {} WHERE {}",
            table(&self.name),
            where_sql(filter, &mut params)
        );
        self.backend
            .read(&self.name, move |c| {
                let n: i64 = c
                    .query_row(&sql, params_from_iter(params), |r| r.get(0))
                    .map_err(map_sql_err)?;
                Ok(u64::try_from(n).unwrap_or(0))
            })
            .await
    }

    async fn replace_one(&self, filter: &Filter, doc: Doc) -> StoreResult<bool> {
        let text = Value::Object(doc).to_string();
        let mut params = vec![SqlValue::Text(text)];
        let sql = format!(
            "UPDATE {t} SET doc = ? WHERE id = (SELECT id FROM {t} WHERE {w} LIMIT 1)",
            t = table(&self.name),
            w = where_sql(filter, &mut params)
        );
        Ok(self.execute(sql, params).await? > 0)
    }

    async fn update_one(&self, filter: &Filter, update: &Update) -> StoreResult<bool> {
        Ok(self
            .find_one_and_update(filter, &[], update)
            .await?
            .is_some())
    }

    async fn update_many(&self, filter: &Filter, update: &Update) -> StoreResult<u64> {
        let mut params = Vec::new();
        let set = update_sql(update, &mut params);
        let w = where_sql(filter, &mut params);
        let sql = format!("UPDATE {} SET doc = {set} WHERE {w}", table(&self.name));
        self.execute(sql, params).await
    }

    async fn find_one_and_update(
        &self,
        filter: &Filter,
        sort: &[(String, Dir)],
        update: &Update,
    ) -> StoreResult<Option<Doc>> {
        let mut params = Vec::new();
        let set = update_sql(update, &mut params);
        let w = where_sql(filter, &mut params);
        let sql = format!(
            "UPDATE {t} SET doc = {set} WHERE id = (SELECT id FROM {t} WHERE {w}{o} LIMIT 1) RETURNING doc",
            t = table(&self.name),
            o = order_sql(sort),
        );
        self.backend
            .write(&self.name, move |c| {
                let mut stmt = c.prepare_cached(&sql).map_err(map_sql_err)?;
                let mut rows = stmt.query(params_from_iter(params)).map_err(map_sql_err)?;
                match rows.next().map_err(map_sql_err)? {
                    Some(row) => {
                        let text: String = row.get(0).map_err(map_sql_err)?;
                        Ok(Some(parse_doc(&text)?))
                    }
                    None => Ok(None),
                }
            })
            .await
    }

    async fn delete_many(&self, filter: &Filter) -> StoreResult<u64> {
        let mut params = Vec::new();
        let sql = format!(
            "DELETE FROM {} WHERE {}",
            table(&self.name),
            where_sql(filter, &mut params)
        );
        self.execute(sql, params).await
    }
}

#[async_trait]
impl Backend for SqliteBackend {
    fn collection(&self, name: &str) -> Arc<dyn Collection> {
        Arc::new(SqliteCollection {
            backend: self.clone(),
            name: name.to_string(),
        })
    }

    async fn ping(&self) -> StoreResult<()> {
        self.read("users", |c| {
            c.query_row("SELECT 1", [], |_| Ok(())).map_err(map_sql_err)
        })
        .await
    }

    async fn migrate(&self, indexes: &[IndexSpec]) -> StoreResult<()> {
        let indexes = indexes.to_vec();
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let conn = this.inner.writer.lock().map_err(backend_err)?;
            for ix in &indexes {
                this.ensure_table(&conn, &ix.collection)?;
                let cols: Vec<String> = ix.keys.iter().map(|k| expr(k)).collect();
                let sql = format!(
                    "CREATE {u}INDEX IF NOT EXISTS \"ix_{c}_{n}\" ON {t} ({cols})",
                    u = if ix.unique { "UNIQUE " } else { "" },
                    c = ix.collection,
                    n = ix.name,
                    t = table(&ix.collection),
                    cols = cols.join(", ")
                );
                conn.execute_batch(&sql).map_err(map_sql_err)?;
            }
            Ok(())
        })
        .await
        .map_err(backend_err)?
    }

    fn kind(&self) -> &'static str {
        "embedded"
    }
}
