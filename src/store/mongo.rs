//! The MongoDB backend, through the official driver.
//!
//! Documents are stored as they are, with `_id` set to the document's `id` (the `id` key is
//! kept too, so a document reads back unchanged once `_id` is dropped). Filters translate
//! one-to-one into MongoDB query documents, updates into `$set`/`$inc`/`$push`/`$unset`.

use std::sync::Arc;

use async_trait::async_trait;
use bson::{Bson, Document, doc};
use futures::TryStreamExt;
use mongodb::options::{
    Acknowledgment, ClientOptions, FindOneAndUpdateOptions, FindOptions as MongoFind, IndexOptions,
    ReturnDocument, WriteConcern,
};
use mongodb::{Client, Database, IndexModel};
use serde_json::Value;

use super::{
    Backend, Collection, Dir, Doc, Filter, FindOptions, IndexSpec, Op, StoreError, StoreResult,
    Update, path_segments,
};

/// MongoDB-backed [`Backend`].
#[derive(Clone)]
pub struct MongoBackend {
    db: Database,
}

impl MongoBackend {
    /// Connect and check the server answers.
    pub async fn connect(uri: &str, database: &str) -> anyhow::Result<Self> {
        let mut options = ClientOptions::parse(uri)
            .await
            .map_err(|e| anyhow::anyhow!("invalid MongoDB URI (mongodb_uri): {e}"))?;
        // Durability: a write is acknowledged once a majority of the replica set has it in its
        // journal, so an acknowledged write survives a primary failover and power loss. This is
        // MongoDB's default for replica sets (w: majority), made explicit here together with
        // j: true; a URI that sets `w`, `journal` or `wtimeoutMS` itself is kept as given.
        if options.write_concern.is_none() {
            options.write_concern = Some(
                WriteConcern::builder()
                    .w(Acknowledgment::Majority)
                    .journal(true)
                    .build(),
            );
        }
        let client = Client::with_options(options)
            .map_err(|e| anyhow::anyhow!("invalid MongoDB URI (mongodb_uri): {e}"))?;
        let this = Self {
            db: client.database(database),
        };
        this.ping()
            .await
            .map_err(|e| anyhow::anyhow!("MongoDB at mongodb_uri does not answer: {e}"))?;
        Ok(this)
    }
}

fn is_duplicate(e: &mongodb::error::Error) -> bool {
    use mongodb::error::{ErrorKind, WriteFailure};
    match e.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(w)) => w.code == 11000,
        ErrorKind::Command(c) => c.code == 11000,
        _ => e.to_string().contains("E11000"),
    }
}

fn map_err(e: mongodb::error::Error) -> StoreError {
    if is_duplicate(&e) {
        StoreError::Duplicate(e.to_string())
    } else {
        StoreError::Backend(e.to_string())
    }
}

fn key(path: &str) -> String {
    path_segments(path);
    if path == "id" {
        "_id".to_string()
    } else {
        path.to_string()
    }
}

fn bson_of(v: &Value) -> StoreResult<Bson> {
    bson::serialize_to_bson(v).map_err(|e| StoreError::Backend(e.to_string()))
}

fn to_document(doc: &Doc) -> StoreResult<Document> {
    let mut d = bson::serialize_to_document(doc).map_err(|e| StoreError::Backend(e.to_string()))?;
    if let Some(id) = doc.get("id") {
        d.insert("_id", bson_of(id)?);
    }
    Ok(d)
}

fn from_document(mut d: Document) -> StoreResult<Doc> {
    d.remove("_id");
    match Bson::Document(d).into_relaxed_extjson() {
        Value::Object(m) => Ok(m),
        _ => Err(StoreError::Backend(
            "stored document is not an object".into(),
        )),
    }
}

fn query(f: &Filter) -> StoreResult<Document> {
    Ok(match f {
        Filter::All => doc! {},
        Filter::And(fs) if fs.is_empty() => doc! {},
        Filter::And(fs) => doc! { "$and": fs.iter().map(query).collect::<StoreResult<Vec<_>>>()? },
        Filter::Or(fs) if fs.is_empty() => doc! { "_id": { "$in": [] } },
        Filter::Or(fs) => doc! { "$or": fs.iter().map(query).collect::<StoreResult<Vec<_>>>()? },
        Filter::Cmp(p, op, v) => {
            let o = match op {
                Op::Eq => "$eq",
                Op::Ne => "$ne",
                Op::Lt => "$lt",
                Op::Lte => "$lte",
                Op::Gt => "$gt",
                Op::Gte => "$gte",
            };
            let mut d = Document::new();
            d.insert(key(p), doc! { o: bson_of(v)? });
            d
        }
        Filter::In(p, vs) => {
            let arr = vs.iter().map(bson_of).collect::<StoreResult<Vec<_>>>()?;
            let mut d = Document::new();
            d.insert(key(p), doc! { "$in": arr });
            d
        }
        Filter::Contains(p, v) => {
            let mut d = Document::new();
            d.insert(key(p), doc! { "$elemMatch": { "$eq": bson_of(v)? } });
            d
        }
    })
}

fn sort_doc(sort: &[(String, Dir)]) -> Document {
    let mut d = Document::new();
    for (p, dir) in sort {
        d.insert(key(p), if *dir == Dir::Asc { 1 } else { -1 });
    }
    d.insert("_id", 1);
    d
}

fn update_doc(u: &Update) -> StoreResult<Document> {
    let mut d = Document::new();
    let mut set = Document::new();
    for (p, v) in &u.set {
        set.insert(key(p), bson_of(v)?);
    }
    let mut inc = Document::new();
    for (p, by) in &u.inc {
        inc.insert(key(p), *by);
    }
    let mut push = Document::new();
    for (p, v) in &u.push {
        push.insert(key(p), bson_of(v)?);
    }
    let mut unset = Document::new();
    for p in &u.unset {
        unset.insert(key(p), "");
    }
    for (op, part) in [
        ("$set", set),
        ("$inc", inc),
        ("$push", push),
        ("$unset", unset),
    ] {
        if !part.is_empty() {
            d.insert(op, part);
        }
    }
    Ok(d)
}

struct MongoCollection {
    coll: mongodb::Collection<Document>,
}

#[async_trait]
impl Collection for MongoCollection {
    async fn insert(&self, doc: Doc) -> StoreResult<()> {
        self.coll
            .insert_one(to_document(&doc)?)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn find_one(&self, filter: &Filter) -> StoreResult<Option<Doc>> {
        self.coll
            .find_one(query(filter)?)
            .await
            .map_err(map_err)?
            .map(from_document)
            .transpose()
    }

    async fn find(&self, filter: &Filter, opts: &FindOptions) -> StoreResult<Vec<Doc>> {
        let mut o = MongoFind::default();
        o.sort = Some(sort_doc(&opts.sort));
        o.skip = Some(opts.skip);
        o.limit = opts.limit.map(|l| i64::try_from(l).unwrap_or(i64::MAX));
        let cursor = self
            .coll
            .find(query(filter)?)
            .with_options(o)
            .await
            .map_err(map_err)?;
        let docs: Vec<Document> = cursor.try_collect().await.map_err(map_err)?;
        docs.into_iter().map(from_document).collect()
    }

    async fn count(&self, filter: &Filter) -> StoreResult<u64> {
        self.coll
            .count_documents(query(filter)?)
            .await
            .map_err(map_err)
    }

    async fn replace_one(&self, filter: &Filter, doc: Doc) -> StoreResult<bool> {
        let r = self
            .coll
            .replace_one(query(filter)?, to_document(&doc)?)
            .await
            .map_err(map_err)?;
        Ok(r.matched_count > 0)
    }

    async fn update_one(&self, filter: &Filter, update: &Update) -> StoreResult<bool> {
        let r = self
            .coll
            .update_one(query(filter)?, update_doc(update)?)
            .await
            .map_err(map_err)?;
        Ok(r.matched_count > 0)
    }

    async fn update_many(&self, filter: &Filter, update: &Update) -> StoreResult<u64> {
        let r = self
            .coll
            .update_many(query(filter)?, update_doc(update)?)
            .await
            .map_err(map_err)?;
        Ok(r.matched_count)
    }

    async fn find_one_and_update(
        &self,
        filter: &Filter,
        sort: &[(String, Dir)],
        update: &Update,
    ) -> StoreResult<Option<Doc>> {
        let mut o = FindOneAndUpdateOptions::default();
        o.return_document = Some(ReturnDocument::After);
        o.sort = Some(sort_doc(sort));
        self.coll
            .find_one_and_update(query(filter)?, update_doc(update)?)
            .with_options(o)
            .await
            .map_err(map_err)?
            .map(from_document)
            .transpose()
    }

    async fn delete_many(&self, filter: &Filter) -> StoreResult<u64> {
        let r = self
            .coll
            .delete_many(query(filter)?)
            .await
            .map_err(map_err)?;
        Ok(r.deleted_count)
    }
}

#[async_trait]
impl Backend for MongoBackend {
    fn collection(&self, name: &str) -> Arc<dyn Collection> {
        Arc::new(MongoCollection {
            coll: self.db.collection(name),
        })
    }

    async fn ping(&self) -> StoreResult<()> {
        self.db
            .run_command(doc! { "ping": 1 })
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn migrate(&self, indexes: &[IndexSpec]) -> StoreResult<()> {
        for ix in indexes {
            let mut keys = Document::new();
            for k in &ix.keys {
                keys.insert(key(k), 1);
            }
            let mut opts = IndexOptions::default();
            opts.name = Some(ix.name.clone());
            opts.unique = Some(ix.unique);
            let model = IndexModel::builder().keys(keys).options(opts).build();
            self.db
                .collection::<Document>(&ix.collection)
                .create_index(model)
                .await
                .map_err(map_err)?;
        }
        Ok(())
    }

    fn kind(&self) -> &'static str {
        "mongodb"
    }
}
