//! Storage: one document-collection abstraction with two backends, and the typed stores built
//! on it.
//!
//! Each aggregate (users, release plans, workflows, tasks, builds, …) is kept as JSON documents
//! in a named collection. A backend implements only the primitives in [`Collection`] — insert,
//! find with filter/sort/paging, conditional update, find-one-and-update, delete — once for
//! MongoDB ([`mongo`]) and once for embedded SQLite ([`embedded`]). The per-aggregate stores
//! (e.g. [`users::UserStore`]) hold the queries of their aggregate and are written once, over
//! the trait, so both backends behave the same by construction; the conformance suite in
//! `tests/` checks the primitives on both.
//!
//! Shared primitives on top: atomic [`sequence`] counters and [`lease`]s (exactly one holder
//! of a named piece of work until a deadline), and the [`auth_failures`] the authentication
//! throttle shares between replicas.

pub mod auth_failures;
pub mod embedded;
pub mod lease;
pub mod mongo;
pub mod retry;
pub mod sequence;
pub mod users;

use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// A stored document: a JSON object whose `id` field is its primary key.
pub type Doc = Map<String, Value>;

/// What can go wrong in storage.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique index rejected the write; the payload names the index.
    #[error("{0}")]
    Duplicate(String),
    /// A conditional update found the document changed (or not in the expected state).
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NotFound(String),
    /// The backend failed (connection, I/O, corrupt data).
    #[error("storage error: {0}")]
    Backend(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Comparison operators of a [`Filter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Lte,
    Gt,
    Gte,
}

/// A query over documents. Paths are dotted (`approval.status`); numeric segments index
/// arrays. Comparing with `null` matches a missing field too (MongoDB semantics).
#[derive(Debug, Clone)]
pub enum Filter {
    All,
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Cmp(String, Op, Value),
    In(String, Vec<Value>),
    /// The array at the path contains the value.
    Contains(String, Value),
}

impl Filter {
    pub fn eq(path: &str, v: impl Into<Value>) -> Self {
        Filter::Cmp(path.to_string(), Op::Eq, v.into())
    }
    pub fn ne(path: &str, v: impl Into<Value>) -> Self {
        Filter::Cmp(path.to_string(), Op::Ne, v.into())
    }
    pub fn lt(path: &str, v: impl Into<Value>) -> Self {
        Filter::Cmp(path.to_string(), Op::Lt, v.into())
    }
    pub fn lte(path: &str, v: impl Into<Value>) -> Self {
        Filter::Cmp(path.to_string(), Op::Lte, v.into())
    }
    pub fn gt(path: &str, v: impl Into<Value>) -> Self {
        Filter::Cmp(path.to_string(), Op::Gt, v.into())
    }
    pub fn gte(path: &str, v: impl Into<Value>) -> Self {
        Filter::Cmp(path.to_string(), Op::Gte, v.into())
    }
    pub fn is_in<V: Into<Value>>(path: &str, vs: impl IntoIterator<Item = V>) -> Self {
        Filter::In(path.to_string(), vs.into_iter().map(Into::into).collect())
    }
    pub fn contains(path: &str, v: impl Into<Value>) -> Self {
        Filter::Contains(path.to_string(), v.into())
    }
    pub fn id(id: &str) -> Self {
        Filter::eq("id", id)
    }
    /// `self AND other`, flattening nested conjunctions.
    pub fn and(self, other: Filter) -> Self {
        match (self, other) {
            (Filter::All, f) | (f, Filter::All) => f,
            (Filter::And(mut a), Filter::And(b)) => {
                a.extend(b);
                Filter::And(a)
            }
            (Filter::And(mut a), f) => {
                a.push(f);
                Filter::And(a)
            }
            (f, g) => Filter::And(vec![f, g]),
        }
    }
}

/// Sort direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    Asc,
    Desc,
}

/// Sorting and paging of a find.
#[derive(Debug, Clone, Default)]
pub struct FindOptions {
    pub sort: Vec<(String, Dir)>,
    pub skip: u64,
    pub limit: Option<u64>,
}

impl FindOptions {
    pub fn sort(path: &str, dir: Dir) -> Self {
        Self {
            sort: vec![(path.to_string(), dir)],
            ..Self::default()
        }
    }
    pub fn then(mut self, path: &str, dir: Dir) -> Self {
        self.sort.push((path.to_string(), dir));
        self
    }
    /// 1-based page of `size` documents.
    pub fn page(mut self, page: u64, size: u64) -> Self {
        // Clamped: both backends take the offset as a signed 64-bit number.
        self.skip = page
            .saturating_sub(1)
            .saturating_mul(size)
            .min(i64::MAX.unsigned_abs());
        self.limit = Some(size);
        self
    }
    pub fn limit(mut self, n: u64) -> Self {
        self.limit = Some(n);
        self
    }
}

/// A partial update: `$set`, `$inc`, `$push` and `$unset` in MongoDB terms.
#[derive(Debug, Clone, Default)]
pub struct Update {
    pub set: Vec<(String, Value)>,
    pub inc: Vec<(String, i64)>,
    pub push: Vec<(String, Value)>,
    pub unset: Vec<String>,
}

impl Update {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn set(mut self, path: &str, v: impl Into<Value>) -> Self {
        self.set.push((path.to_string(), v.into()));
        self
    }
    pub fn inc(mut self, path: &str, by: i64) -> Self {
        self.inc.push((path.to_string(), by));
        self
    }
    pub fn push(mut self, path: &str, v: impl Into<Value>) -> Self {
        self.push.push((path.to_string(), v.into()));
        self
    }
    pub fn unset(mut self, path: &str) -> Self {
        self.unset.push(path.to_string());
        self
    }
}

/// One collection of documents in a backend.
#[async_trait]
pub trait Collection: Send + Sync {
    /// Insert a new document; a unique-index violation is [`StoreError::Duplicate`].
    async fn insert(&self, doc: Doc) -> StoreResult<()>;
    async fn find_one(&self, filter: &Filter) -> StoreResult<Option<Doc>>;
    async fn find(&self, filter: &Filter, opts: &FindOptions) -> StoreResult<Vec<Doc>>;
    async fn count(&self, filter: &Filter) -> StoreResult<u64>;
    /// Replace the first document matching `filter` (which should pin the id and the expected
    /// `version`); returns whether one matched.
    async fn replace_one(&self, filter: &Filter, doc: Doc) -> StoreResult<bool>;
    /// Apply `update` to the first match; returns whether one matched.
    async fn update_one(&self, filter: &Filter, update: &Update) -> StoreResult<bool>;
    /// Apply `update` to every match; returns how many matched.
    async fn update_many(&self, filter: &Filter, update: &Update) -> StoreResult<u64>;
    /// Atomically update the first match in `sort` order and return it as it is after the
    /// update. The building block of claims and counters.
    async fn find_one_and_update(
        &self,
        filter: &Filter,
        sort: &[(String, Dir)],
        update: &Update,
    ) -> StoreResult<Option<Doc>>;
    async fn delete_many(&self, filter: &Filter) -> StoreResult<u64>;
}

/// An index the migrations create.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct IndexSpec {
    pub collection: String,
    pub name: String,
    pub keys: Vec<String>,
    #[serde(default)]
    pub unique: bool,
}

/// The indexes of every collection, from `migrations/indexes.toml`.
pub fn index_specs() -> Vec<IndexSpec> {
    #[derive(serde::Deserialize)]
    struct File {
        index: Vec<IndexSpec>,
    }
    let text = include_str!("../../migrations/indexes.toml");
    // The file is compiled in and covered by tests; a parse failure is a build defect.
    toml_parse::<File>(text)
        .map(|f| f.index)
        .unwrap_or_else(|e| panic!("migrations/indexes.toml is invalid: {e}"))
}

fn toml_parse<T: DeserializeOwned>(text: &str) -> Result<T, String> {
    use figment::providers::{Format, Toml};
    figment::Figment::from(Toml::string(text))
        .extract()
        .map_err(|e| e.to_string())
}

/// A storage backend: named collections plus health and schema.
#[async_trait]
pub trait Backend: Send + Sync {
    fn collection(&self, name: &str) -> Arc<dyn Collection>;
    /// Check that the backend answers.
    async fn ping(&self) -> StoreResult<()>;
    /// Create the collections and indexes (idempotent).
    async fn migrate(&self, indexes: &[IndexSpec]) -> StoreResult<()>;
    /// `"embedded"` or `"mongodb"`.
    fn kind(&self) -> &'static str;
}

/// Serialize a model into a document.
pub fn to_doc<T: Serialize>(v: &T) -> StoreResult<Doc> {
    match serde_json::to_value(v) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(other) => Err(StoreError::Backend(format!(
            "a document must be a JSON object, got {other}"
        ))),
        Err(e) => Err(StoreError::Backend(format!("serialize document: {e}"))),
    }
}

/// Deserialize a stored document into a model.
pub fn from_doc<T: DeserializeOwned>(doc: Doc) -> StoreResult<T> {
    serde_path_to_error::deserialize(Value::Object(doc))
        .map_err(|e| StoreError::Backend(format!("stored document does not decode: {e}")))
}

/// A typed view of a collection: models in, models out.
pub struct Typed<T> {
    pub coll: Arc<dyn Collection>,
    name: String,
    /// Credential fields encrypted at rest (see [`Typed::sealed`]).
    sealing: Option<Sealing>,
    _t: std::marker::PhantomData<fn() -> T>,
}

/// Which fields of a typed collection are sealed, and with what.
#[derive(Clone)]
struct Sealing {
    secrets: Arc<crate::secrets::SecretBox>,
    collection: String,
    fields: &'static [&'static str],
    /// Also every credential variable anywhere in the document (see [`Typed::sealed_vars`]).
    vars: bool,
    /// Marks the implicit credentials of a document before it is sealed.
    mark: Option<crate::secrets::MarkFn>,
}

impl<T> Clone for Typed<T> {
    fn clone(&self) -> Self {
        Self {
            coll: self.coll.clone(),
            name: self.name.clone(),
            sealing: self.sealing.clone(),
            _t: std::marker::PhantomData,
        }
    }
}

impl<T: Serialize + DeserializeOwned + Send + Sync> Typed<T> {
    pub fn new(backend: &dyn Backend, name: &str) -> Self {
        Self {
            coll: backend.collection(name),
            name: name.to_string(),
            sealing: None,
            _t: std::marker::PhantomData,
        }
    }

    /// Encrypt the top-level string `fields` (credentials) at rest with `secrets`: they are
    /// sealed on every insert/replace and opened on every read, so callers see plain values,
    /// and the start-up migration covers the collection. Filters and `Update`s on these fields
    /// see the sealed text, so never query or `$set` them directly.
    pub fn sealed(
        mut self,
        secrets: &Arc<crate::secrets::SecretBox>,
        fields: &'static [&'static str],
    ) -> Self {
        let collection = self.name.clone();
        secrets.register(&collection, fields);
        self.sealing = Some(Sealing {
            secrets: secrets.clone(),
            collection,
            fields,
            vars: false,
            mark: None,
        });
        self
    }

    /// Encrypt at rest every credential variable of the documents — the `value`/`default` of
    /// any object marked `"is_credential": true`, at any depth — as [`Self::sealed`] does for
    /// top-level fields (the start-up migration: `secrets::vars`). `mark`, if any, first marks
    /// the values that are credentials without a flag of their own (see
    /// [`crate::secrets::MarkFn`]).
    pub fn sealed_vars(
        mut self,
        secrets: &Arc<crate::secrets::SecretBox>,
        mark: Option<crate::secrets::MarkFn>,
    ) -> Self {
        secrets.register_vars(&self.name, mark);
        let sealing = self.sealing.take().unwrap_or_else(|| Sealing {
            secrets: secrets.clone(),
            collection: self.name.clone(),
            fields: &[],
            vars: false,
            mark: None,
        });
        self.sealing = Some(Sealing {
            vars: true,
            mark,
            ..sealing
        });
        self
    }

    fn write_doc(&self, v: &T) -> StoreResult<Doc> {
        let mut doc = to_doc(v)?;
        if let Some(s) = &self.sealing {
            s.secrets
                .seal_fields(&mut doc, s.fields)
                .and_then(|()| {
                    if let Some(mark) = s.mark {
                        mark(&mut doc);
                    }
                    if s.vars {
                        s.secrets.seal_vars(&mut doc)
                    } else {
                        Ok(())
                    }
                })
                .map_err(|e| {
                    StoreError::Backend(format!("cannot encrypt a {} document: {e}", s.collection))
                })?;
        }
        Ok(doc)
    }

    fn read_doc(&self, mut doc: Doc) -> StoreResult<T> {
        self.open_doc(&mut doc)?;
        from_doc(doc)
    }

    /// Open the sealed values of a document read from [`Self::coll`] directly.
    pub fn open_doc(&self, doc: &mut Doc) -> StoreResult<()> {
        if let Some(s) = &self.sealing {
            s.secrets
                .open_fields(doc, &s.collection, s.fields)
                .map_err(StoreError::Backend)?;
            if s.vars {
                s.secrets
                    .open_vars(doc, &s.collection)
                    .map_err(StoreError::Backend)?;
            }
        }
        Ok(())
    }

    pub async fn insert(&self, v: &T) -> StoreResult<()> {
        self.coll.insert(self.write_doc(v)?).await
    }
    pub async fn get(&self, id: &str) -> StoreResult<Option<T>> {
        self.find_one(&Filter::id(id)).await
    }
    pub async fn find_one(&self, filter: &Filter) -> StoreResult<Option<T>> {
        self.coll
            .find_one(filter)
            .await?
            .map(|d| self.read_doc(d))
            .transpose()
    }
    pub async fn find(&self, filter: &Filter, opts: &FindOptions) -> StoreResult<Vec<T>> {
        self.coll
            .find(filter, opts)
            .await?
            .into_iter()
            .map(|d| self.read_doc(d))
            .collect()
    }
    pub async fn count(&self, filter: &Filter) -> StoreResult<u64> {
        self.coll.count(filter).await
    }
    /// One page of the matches of `filter` (`opts` sorts and pages) and the total of them.
    pub async fn page(&self, filter: &Filter, opts: &FindOptions) -> StoreResult<(Vec<T>, u64)> {
        let list = self.find(filter, opts).await?;
        Ok((list, self.count(filter).await?))
    }
    /// Replace document `id` with `v` if its stored `version` is still `expected`.
    pub async fn replace_version(&self, id: &str, expected: i64, v: &T) -> StoreResult<bool> {
        self.replace(&Filter::id(id).and(Filter::eq("version", expected)), v)
            .await
    }
    /// Replace the document matched by `filter`; `Ok(false)` when nothing matched.
    pub async fn replace(&self, filter: &Filter, v: &T) -> StoreResult<bool> {
        self.coll.replace_one(filter, self.write_doc(v)?).await
    }
    pub async fn update_one(&self, filter: &Filter, u: &Update) -> StoreResult<bool> {
        self.coll.update_one(filter, u).await
    }
    pub async fn find_one_and_update(
        &self,
        filter: &Filter,
        sort: &[(String, Dir)],
        u: &Update,
    ) -> StoreResult<Option<T>> {
        self.coll
            .find_one_and_update(filter, sort, u)
            .await?
            .map(|d| self.read_doc(d))
            .transpose()
    }
    pub async fn delete(&self, filter: &Filter) -> StoreResult<u64> {
        self.coll.delete_many(filter).await
    }
}

/// Split a dotted path into its segments, rejecting anything but `[A-Za-z0-9_-]` so that a
/// path can be spliced into SQL and MongoDB keys safely. Paths come from code, never input.
pub(crate) fn path_segments(path: &str) -> Vec<&str> {
    let segs: Vec<&str> = path.split('.').collect();
    for s in &segs {
        assert!(
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'),
            "invalid document path {path:?}"
        );
    }
    segs
}

/// Open the configured backend.
pub async fn open(config: &crate::config::Config) -> anyhow::Result<Arc<dyn Backend>> {
    use crate::config::StorageKind;
    // The data dir holds the database, the secret key and job workspaces: private to us.
    crate::secrets::private_dir(&config.data_dir)?;
    Ok(match config.storage {
        StorageKind::Embedded => {
            let path = config.data_dir.join("zadig.db");
            Arc::new(embedded::SqliteBackend::open_with(&path, config.embedded_synchronous).await?)
                as Arc<dyn Backend>
        }
        StorageKind::Mongodb => Arc::new(
            mongo::MongoBackend::connect(&config.mongodb_uri, &config.mongodb_database).await?,
        ),
    })
}
