//! Credential variables at rest: in the collections that hold builds, build templates,
//! workflows, workflow tasks and release plans, every value marked `"is_credential": true`
//! (found anywhere in a document by [`crate::masking::for_each_secret`]) is sealed on write and
//! opened on read by the typed store ([`crate::store::Typed::sealed_vars`]).
//!
//! These collections can be large (tasks), so the start-up pass differs from the one of the
//! top-level sealed fields: a collection is migrated once, page by page, and then a marker in
//! [`MARKERS`] records it together with a sealed check value. Later starts read only the
//! markers: one that exists means encrypted values exist (a missing key file is an error), and
//! its check value must open with the key (a wrong key stops the start).

use std::path::Path;

use serde_json::Value;

use super::{SecretBox, SecretError, is_sealed};
use crate::masking::for_each_secret;
use crate::store::{Backend, Collection, Dir, Doc, Filter, FindOptions, StoreError};

/// The collection of migration markers, one per collection with sealed variables.
pub(super) const MARKERS: &str = "secret_migrations";
/// What a marker's check value holds once opened.
const CHECK: &str = "zadig-server credential variables";
/// Documents read at a time by the migration.
const PAGE: u64 = 200;
/// What the secret walk covers, numbered: a collection whose marker records an older
/// generation is migrated again, sealing what the walk has since learned to find (2:
/// notification hook addresses and webhook tokens). A marker without one is generation 1.
const GENERATION: i64 = 2;

/// Marks, in a document about to be sealed, the values that are credentials without saying so
/// themselves (`"is_credential": true`), so that they are sealed too. A collection registers it
/// with [`crate::store::Typed::sealed_vars`]; it runs on every write and in the migration.
pub type MarkFn = fn(&mut Doc);

/// A collection with credential variables, and what marks its implicit ones.
#[derive(Clone)]
pub(super) struct VarsCollection {
    name: String,
    mark: Option<MarkFn>,
}

fn marker_id(collection: &str) -> String {
    format!("vars:{collection}")
}

fn document_id(doc: &Doc) -> &str {
    doc.get("id").and_then(Value::as_str).unwrap_or_default()
}

/// The next [`PAGE`] documents of `coll` by id, after id `after`.
async fn next_page(
    coll: &dyn Collection,
    name: &str,
    after: Option<&str>,
) -> anyhow::Result<Vec<Doc>> {
    let filter = after.map_or(Filter::All, |a| Filter::gt("id", a));
    coll.find(&filter, &FindOptions::sort("id", Dir::Asc).limit(PAGE))
        .await
        .map_err(|e| anyhow::anyhow!("cannot read {name}: {e}"))
}

/// The id to read on from, when `page` was full (else it was the last page).
fn last_of_full(page: &[Doc]) -> Option<String> {
    (page.len() as u64 == PAGE)
        .then(|| page.last().map(|d| document_id(d).to_string()))
        .flatten()
}

impl SecretBox {
    /// Declare that `collection` holds credential variables (called by
    /// [`crate::store::Typed::sealed_vars`]), so the start-up migration covers it.
    pub fn register_vars(&self, collection: &str, mark: Option<MarkFn>) {
        let mut list = self
            .vars
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        list.retain(|c| c.name != collection);
        list.push(VarsCollection {
            name: collection.to_string(),
            mark,
        });
    }

    /// Seal every credential value of a document about to be written.
    pub fn seal_vars(&self, doc: &mut Doc) -> Result<(), SecretError> {
        for v in doc.values_mut() {
            // Always sealed, even a value that looks sealed: models hold plain values only.
            for_each_secret(v, &mut |_, s| {
                *s = self.seal(s)?;
                Ok(())
            })?;
        }
        Ok(())
    }

    /// Open every sealed credential value of a document just read; plain ones (written before
    /// the migration) are left as they are. The error names the document.
    pub fn open_vars(&self, doc: &mut Doc, collection: &str) -> Result<(), String> {
        let id = document_id(doc).to_string();
        for v in doc.values_mut() {
            for_each_secret(v, &mut |_, s| {
                if is_sealed(s) {
                    *s = self.open(s).map_err(|e| {
                        format!("cannot decrypt a credential variable of {collection} document {id}: {e}")
                    })?;
                }
                Ok::<(), String>(())
            })?;
        }
        Ok(())
    }

    /// The collections registered with [`Self::register_vars`].
    pub(super) fn vars_collections(&self) -> Vec<VarsCollection> {
        self.vars
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Before the key is loaded, when the key file does not exist: a stored sealed credential
    /// variable, described, if any (then no new key may be made). A marker of a collection
    /// that holds none is dropped, so the migration runs again with the new key.
    pub(super) async fn sealed_vars_without_key(
        &self,
        backend: &dyn Backend,
    ) -> anyhow::Result<Option<String>> {
        let markers = backend.collection(MARKERS);
        for VarsCollection { name: c, .. } in self.vars_collections() {
            let filter = Filter::id(&marker_id(&c));
            let marker = markers
                .find_one(&filter)
                .await
                .map_err(|e| anyhow::anyhow!("cannot read {MARKERS}: {e}"))?;
            if marker.is_none() {
                continue;
            }
            let coll = backend.collection(&c);
            let mut after = None;
            loop {
                let page = next_page(coll.as_ref(), &c, after.as_deref()).await?;
                for d in &page {
                    let mut doc = d.clone();
                    if doc.values_mut().any(|v| {
                        for_each_secret(v, &mut |_, s| if is_sealed(s) { Err(()) } else { Ok(()) })
                            .is_err()
                    }) {
                        return Ok(Some(format!(
                            "a credential variable of {c} document {}",
                            document_id(d)
                        )));
                    }
                }
                match last_of_full(&page) {
                    Some(id) => after = Some(id),
                    None => break,
                }
            }
            markers
                .delete_many(&filter)
                .await
                .map_err(|e| anyhow::anyhow!("cannot write {MARKERS}: {e}"))?;
        }
        Ok(None)
    }

    /// With the key loaded: check the markers' values, and migrate the collections that have
    /// none yet, or one of an older [`GENERATION`]. How many values it encrypted.
    pub(super) async fn init_vars(
        &self,
        backend: &dyn Backend,
        key_file: &Path,
    ) -> anyhow::Result<usize> {
        let markers = backend.collection(MARKERS);
        let mut migrated = 0;
        for VarsCollection { name: c, mark } in self.vars_collections() {
            let id = marker_id(&c);
            let cannot = |e: &dyn std::fmt::Display| {
                anyhow::anyhow!(
                    "cannot decrypt the credential variables of {c} with the key in secret_key_file {}: {e}",
                    key_file.display()
                )
            };
            let found = markers
                .find_one(&Filter::id(&id))
                .await
                .map_err(|e| anyhow::anyhow!("cannot read {MARKERS}: {e}"))?;
            if let Some(m) = &found {
                let check = m.get("check").and_then(Value::as_str).unwrap_or_default();
                match self.open(check) {
                    Ok(plain) if plain == CHECK => {}
                    Ok(_) => return Err(cannot(&"the check value of its marker is not ours")),
                    Err(e) => return Err(cannot(&e)),
                }
                if m.get("generation").and_then(Value::as_i64).unwrap_or(1) >= GENERATION {
                    continue;
                }
            }
            let coll = backend.collection(&c);
            migrated += self.migrate_vars(coll.as_ref(), &c, mark, key_file).await?;
            let mut marker = Doc::new();
            marker.insert("id".into(), Value::String(id.clone()));
            marker.insert("collection".into(), Value::String(c.clone()));
            marker.insert("check".into(), Value::String(self.seal(CHECK)?));
            marker.insert("generation".into(), Value::from(GENERATION));
            let written = match found {
                Some(_) => markers
                    .replace_one(&Filter::id(&id), marker)
                    .await
                    .map(drop),
                None => markers.insert(marker).await,
            };
            match written {
                // Another replica migrated at the same time; its marker stands.
                Ok(()) | Err(StoreError::Duplicate(_)) => {}
                Err(e) => return Err(anyhow::anyhow!("cannot write {MARKERS}: {e}")),
            }
        }
        Ok(migrated)
    }

    /// Encrypt the plain credential values of every document of `coll`, a page at a time.
    async fn migrate_vars(
        &self,
        coll: &dyn Collection,
        name: &str,
        mark: Option<MarkFn>,
        key_file: &Path,
    ) -> anyhow::Result<usize> {
        let mut migrated = 0;
        let mut after = None;
        loop {
            let page = next_page(coll, name, after.as_deref()).await?;
            for d in &page {
                migrated += self.seal_plain_vars(coll, name, d, mark, key_file).await?;
            }
            match last_of_full(&page) {
                Some(id) => after = Some(id),
                None => return Ok(migrated),
            }
        }
    }

    /// Seal the plain credential values of `d` in place (conditional on its `version`, so a
    /// concurrent write — sealed already — is never overwritten); check the sealed ones open.
    /// `mark` first marks the credentials an earlier version stored unmarked; it compares plain
    /// values, which is what an earlier version stored (this one seals and marks together).
    async fn seal_plain_vars(
        &self,
        coll: &dyn Collection,
        name: &str,
        d: &Doc,
        mark: Option<MarkFn>,
        key_file: &Path,
    ) -> anyhow::Result<usize> {
        let mut doc = d.clone();
        if let Some(mark) = mark {
            mark(&mut doc);
        }
        let mut sealed = 0;
        for v in doc.values_mut() {
            for_each_secret(v, &mut |_, s| {
                if is_sealed(s) {
                    self.open(s).map(drop)
                } else if s.is_empty() {
                    Ok(())
                } else {
                    *s = self.seal(s)?;
                    sealed += 1;
                    Ok(())
                }
            })
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot decrypt a credential variable of {name} document {} with the key in secret_key_file {}: {e}",
                    document_id(d),
                    key_file.display()
                )
            })?;
        }
        if sealed == 0 {
            return Ok(0);
        }
        let mut filter = Filter::id(document_id(d));
        if let Some(v) = d.get("version") {
            filter = filter.and(Filter::eq("version", v.clone()));
        }
        let replaced = coll.replace_one(&filter, doc).await.map_err(|e| {
            anyhow::anyhow!("cannot encrypt {name} document {}: {e}", document_id(d))
        })?;
        Ok(if replaced { sealed } else { 0 })
    }
}
