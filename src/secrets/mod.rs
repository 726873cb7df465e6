//! Secrets at rest: stored credentials are encrypted with AES-256-GCM, and the files of the
//! data dir are private to the server's user.
//!
//! [`SecretBox`] holds the key (loaded from, or created in, `secret_key_file`) and turns a
//! credential into a self-describing text `enc:v1:<base64(nonce || ciphertext+tag)>` with a
//! random 96-bit nonce per value ([`SecretBox::seal`]) and back ([`SecretBox::open`]). Stores
//! declare which top-level string fields of their documents are credentials with
//! [`crate::store::Typed::sealed`]; the typed store seals them on every write and opens them on
//! every read, so services and handlers see plain values. Each sealed collection is registered
//! here, and [`SecretBox::init`] (at start-up) loads or creates the key and runs the migration
//! pass over those collections: values written in plain text by earlier versions are encrypted,
//! and every encrypted value is checked to open with the key, so a wrong key stops the server
//! at start with an error naming what could not be decrypted.
//!
//! Credential variables (`is_credential` values anywhere in builds, workflows, tasks and release
//! plans) are sealed the same way, with a start-up pass of their own ([`vars`]).
//!
//! File modes: [`private_dir`] creates the data dir 0700 (and narrows an existing one);
//! [`private_file`] creates a file 0600 whatever the umask.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use rand::{RngCore, TryRngCore};
use serde_json::Value;

use crate::store::{Backend, Doc, Filter, FindOptions, Update};

mod vars;
pub use vars::MarkFn;

/// The prefix of an encrypted value (format version 1: AES-256-GCM, 12-byte nonce first).
pub const PREFIX: &str = "enc:v1:";
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// Length of the key in bytes (AES-256).
pub const KEY_LEN: usize = 32;

/// Why a stored value could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// Not base64, or too short to hold a nonce and a tag.
    #[error("the encrypted value is malformed ({0})")]
    Malformed(String),
    /// Authentication failed: another key sealed it, or it was altered.
    #[error(
        "the encrypted value does not decrypt with this key (wrong key, or the value was altered)"
    )]
    Decrypt,
    /// The plaintext is not UTF-8 (cannot happen for values sealed by [`SecretBox::seal`]).
    #[error("the decrypted value is not UTF-8")]
    NotUtf8,
    /// [`SecretBox::init`] has not run yet.
    #[error("the secret key is not loaded yet")]
    NoKey,
}

/// A collection whose documents carry credentials in the named top-level string fields.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Sealed {
    collection: String,
    fields: &'static [&'static str],
}

/// The AES-256-GCM key and the list of sealed collections. One per process, in
/// [`crate::state::App::secrets`].
#[derive(Default)]
pub struct SecretBox {
    cipher: OnceLock<Aes256Gcm>,
    sealed: Mutex<Vec<Sealed>>,
    /// Collections whose credential variables are sealed ([`vars`]).
    vars: Mutex<Vec<vars::VarsCollection>>,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("SecretBox")
            .field("loaded", &self.cipher.get().is_some())
            .finish_non_exhaustive()
    }
}

/// Whether a stored value is encrypted (else it is plain text from an earlier version, or empty).
pub fn is_sealed(stored: &str) -> bool {
    stored.starts_with(PREFIX)
}

impl SecretBox {
    /// A box without a key yet; [`SecretBox::init`] loads it at start-up.
    pub fn new() -> Self {
        Self::default()
    }

    /// A box with this key (tests, tools).
    pub fn with_key(key: &[u8; KEY_LEN]) -> Self {
        let b = Self::new();
        let _ = b.cipher.set(cipher_of(key));
        b
    }

    /// Encrypt `plain` into `enc:v1:<base64(nonce || ciphertext)>` with a fresh random nonce.
    /// The empty string stays empty: it holds no secret, and "no password" must stay visible to
    /// the code that reads it.
    pub fn seal(&self, plain: &str) -> Result<String, SecretError> {
        if plain.is_empty() {
            return Ok(String::new());
        }
        let cipher = self.cipher.get().ok_or(SecretError::NoKey)?;
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        // Encryption into a Vec cannot fail for inputs below GCM's 64 GiB limit.
        let ct = cipher
            .encrypt(Nonce::from_slice(&nonce), plain.as_bytes())
            .map_err(|_| SecretError::Malformed("value too large to encrypt".into()))?;
        let mut raw = Vec::with_capacity(NONCE_LEN + ct.len());
        raw.extend_from_slice(&nonce);
        raw.extend_from_slice(&ct);
        Ok(format!("{PREFIX}{}", B64.encode(raw)))
    }

    /// Decrypt a stored value. A value without the `enc:v1:` prefix is plain text written by an
    /// earlier version and is returned as it is (the start-up migration encrypts it).
    pub fn open(&self, stored: &str) -> Result<String, SecretError> {
        let Some(b64) = stored.strip_prefix(PREFIX) else {
            return Ok(stored.to_string());
        };
        let raw = B64
            .decode(b64)
            .map_err(|e| SecretError::Malformed(format!("not base64: {e}")))?;
        if raw.len() < NONCE_LEN + TAG_LEN {
            return Err(SecretError::Malformed(format!(
                "{} bytes, shorter than a nonce and a tag",
                raw.len()
            )));
        }
        let cipher = self.cipher.get().ok_or(SecretError::NoKey)?;
        let (nonce, ct) = raw.split_at(NONCE_LEN);
        let plain = cipher
            .decrypt(Nonce::from_slice(nonce), ct)
            .map_err(|_| SecretError::Decrypt)?;
        String::from_utf8(plain).map_err(|_| SecretError::NotUtf8)
    }

    /// Declare that documents of `collection` hold credentials in `fields` (called by
    /// [`crate::store::Typed::sealed`]), so the start-up migration covers them.
    pub fn register(&self, collection: &str, fields: &'static [&'static str]) {
        let s = Sealed {
            collection: collection.to_string(),
            fields,
        };
        let mut list = self
            .sealed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !list.contains(&s) {
            list.push(s);
        }
    }

    /// Seal the registered `fields` of a document about to be written.
    pub fn seal_fields(&self, doc: &mut Doc, fields: &[&str]) -> Result<(), SecretError> {
        for f in fields {
            // Always sealed, even a value that looks sealed: models hold plain values only.
            if let Some(Value::String(s)) = doc.get_mut(*f) {
                *s = self.seal(s)?;
            }
        }
        Ok(())
    }

    /// Open the registered `fields` of a document just read; the error names the field and the
    /// document.
    pub fn open_fields(
        &self,
        doc: &mut Doc,
        collection: &str,
        fields: &[&str],
    ) -> Result<(), String> {
        let id = doc
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        for f in fields {
            if let Some(Value::String(s)) = doc.get_mut(*f)
                && is_sealed(s)
            {
                *s = self.open(s).map_err(|e| {
                    format!("cannot decrypt `{f}` of {collection} document {id}: {e}")
                })?;
            }
        }
        Ok(())
    }

    /// Load the key from `key_file` (creating it when it does not exist and nothing encrypted
    /// is stored yet), then encrypt the plain-text values earlier versions stored and check that
    /// every encrypted value opens with the key. Errors name `secret_key_file`.
    pub async fn init(&self, backend: &dyn Backend, key_file: &Path) -> anyhow::Result<()> {
        let sealed = self
            .sealed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        // The sealed collections are small (registries, chart repositories, settings).
        let mut docs: Vec<(&Sealed, Vec<Doc>)> = Vec::new();
        for s in &sealed {
            let found = backend
                .collection(&s.collection)
                .find(&Filter::All, &FindOptions::default())
                .await
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", s.collection))?;
            docs.push((s, found));
        }
        let first_fields = docs.iter().find_map(|(s, ds)| {
            ds.iter().find_map(|d| {
                s.fields.iter().find_map(|f| {
                    d.get(*f)
                        .and_then(Value::as_str)
                        .filter(|v| is_sealed(v))
                        .map(|_| describe(&s.collection, f, d))
                })
            })
        });
        let first_sealed = match first_fields {
            None if !key_file.exists() => self.sealed_vars_without_key(backend).await?,
            f => f,
        };
        // File I/O, and possibly a short wait for a racing replica's key: off the runtime.
        let path = key_file.to_path_buf();
        let key =
            tokio::task::spawn_blocking(move || load_or_create_key(&path, first_sealed.as_deref()))
                .await??;
        let _ = self.cipher.set(cipher_of(&key));

        let mut migrated = 0usize;
        for (s, ds) in docs {
            let coll = backend.collection(&s.collection);
            for d in &ds {
                migrated += self.seal_doc(coll.as_ref(), s, d, key_file).await?;
            }
        }
        migrated += self.init_vars(backend, key_file).await?;
        if migrated > 0 {
            tracing::info!(
                migrated,
                "encrypted {migrated} credential(s) stored in plain text by an earlier version"
            );
        }
        Ok(())
    }
}

impl SecretBox {
    /// Check that the sealed fields of `d` open with the key, and encrypt the ones stored in
    /// plain text; how many it encrypted.
    async fn seal_doc(
        &self,
        coll: &dyn crate::store::Collection,
        s: &Sealed,
        d: &Doc,
        key_file: &Path,
    ) -> anyhow::Result<usize> {
        let Some(id) = d.get("id").and_then(Value::as_str) else {
            return Ok(0);
        };
        let mut migrated = 0;
        for f in s.fields {
            let Some(v) = d.get(*f).and_then(Value::as_str) else {
                continue;
            };
            if is_sealed(v) {
                self.open(v).map_err(|e| {
                    anyhow::anyhow!(
                        "cannot decrypt {} with the key in secret_key_file {}: {e}",
                        describe(&s.collection, f, d),
                        key_file.display()
                    )
                })?;
            } else if !v.is_empty() {
                let sealed_v = self.seal(v)?;
                // Conditional on the plain value, so a concurrent update (or another
                // replica migrating at the same time) is never overwritten.
                let changed = coll
                    .update_one(
                        &Filter::id(id).and(Filter::eq(f, v)),
                        &Update::new().set(f, sealed_v),
                    )
                    .await
                    .map_err(|e| {
                        anyhow::anyhow!("cannot encrypt {}: {e}", describe(&s.collection, f, d))
                    })?;
                migrated += usize::from(changed);
            }
        }
        Ok(migrated)
    }
}

fn cipher_of(key: &[u8; KEY_LEN]) -> Aes256Gcm {
    Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key))
}

/// "`secret_key` of image_registries document <id>".
fn describe(collection: &str, field: &str, doc: &Doc) -> String {
    let id = doc.get("id").and_then(Value::as_str).unwrap_or_default();
    format!("`{field}` of {collection} document {id}")
}

/// Read the key in `path`, or create it (32 random bytes, mode 0600) when the file does not
/// exist. `encrypted` names a stored encrypted value, if any: then a missing file is an error
/// (a new key could not open it). Two processes starting together both try `create_new`; the
/// loser reads the winner's key.
pub fn load_or_create_key(path: &Path, encrypted: Option<&str>) -> anyhow::Result<[u8; KEY_LEN]> {
    match std::fs::metadata(path) {
        Ok(_) => {
            // A replica starting at the same time may have just created it.
            wait_for_whole_key(path);
            return read_key(path);
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => anyhow::bail!("cannot read secret_key_file {}: {e}", path.display()),
    }
    if let Some(what) = encrypted {
        anyhow::bail!(
            "secret_key_file {} does not exist, but the store holds encrypted values ({what}); \
             restore the key file that encrypted them (every replica must share it)",
            path.display()
        );
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        private_dir(dir)?;
    }
    let mut key = [0u8; KEY_LEN];
    rand::rngs::OsRng
        .try_fill_bytes(&mut key)
        .map_err(|e| anyhow::anyhow!("cannot generate a secret key: {e}"))?;
    match private_file(path, true) {
        Ok(mut f) => {
            f.write_all(&key).and_then(|()| f.sync_all()).map_err(|e| {
                anyhow::anyhow!("cannot write secret_key_file {}: {e}", path.display())
            })?;
            tracing::info!(path = %path.display(), "created a new secret key in {}", path.display());
            Ok(key)
        }
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            wait_for_whole_key(path);
            read_key(path)
        }
        Err(e) => anyhow::bail!("cannot create secret_key_file {}: {e}", path.display()),
    }
}

/// Another process that won the race to create the key file may still be writing it: wait
/// (bounded, 1 s) until it holds a whole key. A short file past that is reported by
/// [`read_key`].
fn wait_for_whole_key(path: &Path) {
    for _ in 0..50 {
        if std::fs::metadata(path).is_ok_and(|m| m.len() >= KEY_LEN as u64) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A key file holds the 32 key bytes, or their base64 text (one line), so an operator can
/// provision it with `head -c 32 /dev/urandom` or `openssl rand -base64 32`.
fn read_key(path: &Path) -> anyhow::Result<[u8; KEY_LEN]> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|e| anyhow::anyhow!("cannot read secret_key_file {}: {e}", path.display()))?;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(path = %path.display(), "secret_key_file {} is readable by other users; make it mode 0600", path.display());
    }
    let key: Option<[u8; KEY_LEN]> = if bytes.len() == KEY_LEN {
        bytes.as_slice().try_into().ok()
    } else {
        std::str::from_utf8(&bytes)
            .ok()
            .and_then(|t| B64.decode(t.trim()).ok())
            .and_then(|k| k.as_slice().try_into().ok())
    };
    key.ok_or_else(|| {
        anyhow::anyhow!(
            "secret_key_file {} is malformed: it must hold exactly {KEY_LEN} bytes or their base64 text ({} bytes found)",
            path.display(),
            bytes.len()
        )
    })
}

/// Create `dir` (and its parents) with mode 0700, or narrow an existing one to 0700: the data
/// dir holds the database, the key and job workspaces.
pub fn private_dir(dir: &Path) -> anyhow::Result<()> {
    match std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
    {
        Ok(()) => {}
        Err(e) => anyhow::bail!("cannot create data dir {}: {e}", dir.display()),
    }
    // `recursive` leaves an existing directory's mode alone, and the umask may have narrowed
    // nothing; set it explicitly.
    let meta = std::fs::metadata(dir)
        .map_err(|e| anyhow::anyhow!("cannot read data dir {}: {e}", dir.display()))?;
    if meta.permissions().mode() & 0o777 != 0o700
        && let Err(e) = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
    {
        // A directory owned by someone else (a mount point) cannot be changed; say so.
        tracing::warn!(dir = %dir.display(), "cannot make {} private (mode 0700): {e}", dir.display());
    }
    Ok(())
}

/// Open `path` for writing with mode 0600 whatever the umask (`create_new`: fail if it
/// exists; else create it if needed, keeping its content, and narrow its mode to 0600).
pub fn private_file(path: &Path, create_new: bool) -> std::io::Result<std::fs::File> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).mode(0o600);
    if create_new {
        o.create_new(true);
    } else {
        o.create(true);
    }
    let f = o.open(path)?;
    // The mode given at creation is masked by the umask; an existing file keeps its own.
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    Ok(f)
}

/// Narrow an existing file to 0600 (SQLite's `-wal`/`-shm` files); a missing file is fine.
pub fn narrow_file(path: &Path) -> std::io::Result<()> {
    match std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)) {
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Where the key lives: `secret_key_file`, or `<data_dir>/secret.key` when it is empty.
pub fn key_path(secret_key_file: &Path, data_dir: &Path) -> PathBuf {
    if secret_key_file.as_os_str().is_empty() {
        data_dir.join("secret.key")
    } else {
        secret_key_file.to_path_buf()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boxed() -> SecretBox {
        SecretBox::with_key(&[7u8; KEY_LEN])
    }

    #[test]
    fn seal_open_round_trip() {
        let b = boxed();
        for plain in ["s3cr3t", "ünïcødé ✓", &"x".repeat(10_000)] {
            let sealed = b.seal(plain).unwrap();
            assert!(sealed.starts_with(PREFIX), "{sealed}");
            assert!(!sealed.contains(plain));
            assert_eq!(b.open(&sealed).unwrap(), plain);
        }
        assert_eq!(b.seal("").unwrap(), "");
    }

    #[test]
    fn nonces_differ() {
        let b = boxed();
        assert_ne!(b.seal("same").unwrap(), b.seal("same").unwrap());
    }

    #[test]
    fn plain_values_read_as_plain() {
        assert_eq!(boxed().open("legacy-password").unwrap(), "legacy-password");
        assert_eq!(boxed().open("").unwrap(), "");
    }

    #[test]
    fn tampering_is_detected() {
        let b = boxed();
        let sealed = b.seal("s3cr3t").unwrap();
        let mut raw = B64.decode(&sealed[PREFIX.len()..]).unwrap();
        for i in [0, NONCE_LEN, raw.len() - 1] {
            raw[i] ^= 1;
            let t = format!("{PREFIX}{}", B64.encode(&raw));
            assert_eq!(b.open(&t), Err(SecretError::Decrypt), "flipped byte {i}");
            raw[i] ^= 1;
        }
        raw.truncate(NONCE_LEN + TAG_LEN - 1);
        assert!(matches!(
            b.open(&format!("{PREFIX}{}", B64.encode(&raw))),
            Err(SecretError::Malformed(_))
        ));
        assert!(matches!(
            b.open("enc:v1:***"),
            Err(SecretError::Malformed(_))
        ));
    }

    #[test]
    fn wrong_key_fails_cleanly() {
        let sealed = boxed().seal("s3cr3t").unwrap();
        let other = SecretBox::with_key(&[8u8; KEY_LEN]);
        assert_eq!(other.open(&sealed), Err(SecretError::Decrypt));
        assert_eq!(SecretBox::new().open(&sealed), Err(SecretError::NoKey));
    }

    #[test]
    fn fields_are_sealed_and_opened() {
        let b = boxed();
        let mut doc: Doc = serde_json::from_value(serde_json::json!(
            {"id": "r1", "secret_key": "k", "password": "", "other": "o"}))
        .unwrap();
        b.seal_fields(&mut doc, &["secret_key", "password", "missing"])
            .unwrap();
        assert!(is_sealed(doc["secret_key"].as_str().unwrap()));
        assert_eq!(doc["password"], "");
        assert_eq!(doc["other"], "o");
        let mut wrong = doc.clone();
        b.open_fields(&mut doc, "c", &["secret_key", "password"])
            .unwrap();
        assert_eq!(doc["secret_key"], "k");
        let e = SecretBox::with_key(&[9u8; KEY_LEN])
            .open_fields(&mut wrong, "image_registries", &["secret_key"])
            .unwrap_err();
        assert!(
            e.contains("`secret_key` of image_registries document r1"),
            "{e}"
        );
    }

    #[test]
    fn key_file_created_private_and_reread() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("secret.key");
        let k1 = load_or_create_key(&path, None).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(meta.len(), KEY_LEN as u64);
        assert_eq!(
            std::fs::metadata(path.parent().unwrap())
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o700
        );
        assert_eq!(load_or_create_key(&path, Some("x")).unwrap(), k1);
        // Base64 text is accepted too.
        std::fs::write(&path, format!("{}\n", B64.encode([3u8; KEY_LEN]))).unwrap();
        assert_eq!(load_or_create_key(&path, None).unwrap(), [3u8; KEY_LEN]);
        std::fs::write(&path, b"short").unwrap();
        let e = load_or_create_key(&path, None).unwrap_err().to_string();
        assert!(
            e.contains("secret_key_file") && e.contains("malformed"),
            "{e}"
        );
        let missing = dir.path().join("none.key");
        let e = load_or_create_key(&missing, Some("`password` of helm_repos document h"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("secret_key_file") && e.contains("helm_repos"),
            "{e}"
        );
        assert!(!missing.exists());
    }
}
