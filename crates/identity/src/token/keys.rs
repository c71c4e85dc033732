//! Fernet key repositories laid out exactly as `keystone-manage fernet_setup` /
//! `fernet_rotate` lay them out, so an operator can copy a Keystone
//! `fernet-keys/` (or `credential-keys/`) directory into kumo and back.
//!
//! Files are named by integers: `0` is the staged key (next primary), the
//! highest number is the primary (encrypts), everything else is a secondary
//! (decrypts only). Each file holds one urlsafe-base64 32-byte Fernet key.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};

/// Keystone's `[fernet_tokens] max_active_keys` (and `[credential]`) default.
pub const DEFAULT_MAX_ACTIVE_KEYS: usize = 3;

/// Name of the lock file that serialises `setup`/`rotate` between processes.
/// Keystone ignores non-integer names, so the file is harmless when the
/// directory is copied to a Keystone node.
const LOCK_FILE: &str = ".lock";

/// What a repository holds keys for; only changes the hints in error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyPurpose {
    /// `fernet-keys/`: token encryption.
    Tokens,
    /// `credential-keys/`: encryption of stored credentials.
    Credentials,
}

impl KeyPurpose {
    /// The kumo command that initialises a repository of this kind.
    pub fn setup_command(self) -> &'static str {
        match self {
            KeyPurpose::Tokens => "kumo fernet setup",
            KeyPurpose::Credentials => "kumo credential setup",
        }
    }
}

/// Errors from the key repository. Each names the path involved and, where
/// there is one, the operator action that fixes it.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key repository {path} has no keys; run `{setup}` to create them")]
    NotInitialized { path: PathBuf, setup: &'static str },
    #[error(
        "key repository {path} has no staged key `0`; run `{setup}` to recreate it, \
         or copy the repository from a node that has one"
    )]
    NoStagedKey { path: PathBuf, setup: &'static str },
    #[error(
        "{path} does not hold a urlsafe-base64 32-byte Fernet key; restore it from another \
         node or remove it and run `{setup}`"
    )]
    BadKey { path: PathBuf, setup: &'static str },
    #[error("cannot {action} {path}: {source}; check that it exists and kumo may access it")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("max_active_keys must be at least 1, got {0}")]
    InvalidMaxActiveKeys(usize),
}

/// One key read from the repository. `Debug` hides the key material.
#[derive(Clone, PartialEq, Eq)]
pub struct FernetKey {
    /// The file name: 0 = staged, highest = primary.
    pub index: u64,
    /// The urlsafe-base64 key text, whitespace trimmed.
    pub key: String,
}

impl fmt::Debug for FernetKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FernetKey")
            .field("index", &self.index)
            .field("key", &"<redacted>")
            .finish()
    }
}

/// What `setup` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetupOutcome {
    /// Keys `0` and `1` were created.
    Created,
    /// Key `0` already existed; nothing was changed (keystone's behaviour).
    AlreadyInitialized,
}

/// What `rotate` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotateOutcome {
    /// Index the staged key was promoted to: the new primary.
    pub new_primary: u64,
    /// Indexes of the secondary keys that were deleted, newest first.
    pub purged: Vec<u64>,
}

/// Identity of the directory's contents for cheap change detection: any
/// rename/create/unlink inside changes mtime, and an atomically swapped-in
/// directory (`mv new fernet-keys`) changes the inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DirStamp {
    dev: u64,
    ino: u64,
    mtime: i64,
    mtime_nsec: i64,
}

impl DirStamp {
    /// File times are taken from a coarse clock (a jiffy or so), so a change
    /// made in the same tick as a recent read would leave the stamp equal.
    /// A stamp this fresh is not trusted to prove "unchanged" (as git does
    /// with racily clean index entries).
    pub(crate) fn is_recent(&self) -> bool {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mtime = u64::try_from(self.mtime).unwrap_or(0);
        now.saturating_sub(mtime) < 2
    }
}

/// A key repository on disk.
#[derive(Debug, Clone)]
pub struct KeyRepository {
    dir: PathBuf,
    max_active_keys: usize,
    purpose: KeyPurpose,
}

impl KeyRepository {
    /// A repository at `dir` with Keystone's default `max_active_keys` (3).
    pub fn new(dir: impl Into<PathBuf>, purpose: KeyPurpose) -> Self {
        Self {
            dir: dir.into(),
            max_active_keys: DEFAULT_MAX_ACTIVE_KEYS,
            purpose,
        }
    }

    /// Sets how many keys `rotate` keeps (staged + primary + secondaries).
    pub fn with_max_active_keys(mut self, max_active_keys: usize) -> Result<Self, KeyError> {
        // Keystone's option has min=1; 0 would make rotation purge forever.
        if max_active_keys == 0 {
            return Err(KeyError::InvalidMaxActiveKeys(max_active_keys));
        }
        self.max_active_keys = max_active_keys;
        Ok(self)
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    pub fn max_active_keys(&self) -> usize {
        self.max_active_keys
    }

    pub fn purpose(&self) -> KeyPurpose {
        self.purpose
    }

    /// `keystone-manage fernet_setup`: create the directory (0700) if needed
    /// and, unless a staged key `0` already exists, create one and rotate once
    /// so the repository ends with a primary `1` and a staged `0`.
    pub fn setup(&self) -> Result<SetupOutcome, KeyError> {
        self.create_dir()?;
        let _lock = self.lock()?;
        if self.dir.join("0").exists() {
            tracing::info!(path = %self.dir.display(), "key repository already initialized");
            return Ok(SetupOutcome::AlreadyInitialized);
        }
        self.write_key_atomically(&self.dir.join("0"), &generate_key())?;
        self.rotate_locked()?;
        tracing::info!(path = %self.dir.display(), "key repository initialized");
        Ok(SetupOutcome::Created)
    }

    /// `keystone-manage fernet_rotate`: the staged key `0` becomes the new
    /// primary (highest index + 1), a fresh staged key `0` is written, and the
    /// oldest keys beyond `max_active_keys` are deleted.
    pub fn rotate(&self) -> Result<RotateOutcome, KeyError> {
        self.check_dir()?;
        let _lock = self.lock()?;
        self.rotate_locked()
    }

    fn rotate_locked(&self) -> Result<RotateOutcome, KeyError> {
        let mut files = self.key_files()?;
        if files.is_empty() {
            return Err(self.not_initialized());
        }
        if !files.contains_key(&0) {
            return Err(KeyError::NoStagedKey {
                path: self.dir.clone(),
                setup: self.purpose.setup_command(),
            });
        }
        let current_primary = files.keys().next_back().copied().unwrap_or(0);
        let new_primary = current_primary + 1;

        // Write the next staged key first, under a temporary name. The staged
        // key is then promoted by hard link and replaced by rename, so a crash
        // at any point leaves a repository that still has a staged key `0`
        // (at worst the old staged key twice, which is harmless); keystone's
        // rename-then-rename has a window without one.
        let tmp = self.write_temp_key(&generate_key())?;
        let staged = self.dir.join("0");
        let promoted = self.dir.join(new_primary.to_string());
        let promote = fs::hard_link(&staged, &promoted).or_else(|_| {
            // No hard links here (or a stale empty file has the name):
            // fall back to keystone's plain rename.
            fs::rename(&staged, &promoted)
        });
        if let Err(source) = promote {
            let _ = fs::remove_file(&tmp);
            return Err(KeyError::Io {
                action: "promote the staged key",
                path: staged,
                source,
            });
        }
        files.remove(&0);
        files.insert(new_primary, promoted);
        if let Err(source) = fs::rename(&tmp, &staged) {
            let _ = fs::remove_file(&tmp);
            return Err(KeyError::Io {
                action: "install the new staged key",
                path: staged,
                source,
            });
        }
        self.sync_dir()?;
        tracing::info!(path = %self.dir.display(), new_primary, "promoted staged key to primary");

        // Keep the newest `max_active_keys - 1` non-staged keys, as keystone
        // does (the staged key makes up the last slot).
        let keep = self.max_active_keys - 1;
        let mut purged = Vec::new();
        for (index, path) in files.iter().rev().skip(keep) {
            fs::remove_file(path).map_err(|source| KeyError::Io {
                action: "remove excess key",
                path: path.clone(),
                source,
            })?;
            tracing::info!(path = %path.display(), "purged excess key");
            purged.push(*index);
        }
        if !purged.is_empty() {
            self.sync_dir()?;
        }
        Ok(RotateOutcome {
            new_primary,
            purged,
        })
    }

    /// Reads all keys, primary (highest index) first, then the secondaries in
    /// descending order, then the staged key `0`: the order keystone hands to
    /// `MultiFernet`.
    pub fn load(&self) -> Result<Vec<FernetKey>, KeyError> {
        self.check_dir()?;
        let files = self.key_files()?;
        let mut keys = Vec::with_capacity(files.len());
        for (index, path) in files.into_iter().rev() {
            let text = fs::read_to_string(&path).map_err(|source| KeyError::Io {
                action: "read key",
                path: path.clone(),
                source,
            })?;
            let key = text.trim();
            if key.is_empty() {
                // Keystone skips empty files too (e.g. a copy in progress).
                tracing::warn!(path = %path.display(), "ignoring empty key file");
                continue;
            }
            if decode_key(key).is_none() {
                return Err(KeyError::BadKey {
                    path,
                    setup: self.purpose.setup_command(),
                });
            }
            keys.push(FernetKey {
                index,
                key: key.to_owned(),
            });
        }
        if keys.is_empty() {
            return Err(self.not_initialized());
        }
        if keys.len() != self.max_active_keys {
            tracing::debug!(
                path = %self.dir.display(),
                count = keys.len(),
                max_active_keys = self.max_active_keys,
                "key count differs from max_active_keys; not enough rotations yet?"
            );
        }
        Ok(keys)
    }

    /// Stamp of the directory, `None` if it cannot be read.
    pub(crate) fn stamp(&self) -> Option<DirStamp> {
        let meta = fs::metadata(&self.dir).ok()?;
        Some(DirStamp {
            dev: meta.dev(),
            ino: meta.ino(),
            mtime: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
        })
    }

    fn not_initialized(&self) -> KeyError {
        KeyError::NotInitialized {
            path: self.dir.clone(),
            setup: self.purpose.setup_command(),
        }
    }

    fn check_dir(&self) -> Result<(), KeyError> {
        match fs::metadata(&self.dir) {
            Ok(meta) if meta.is_dir() => {
                if meta.permissions().mode() & 0o005 != 0 {
                    tracing::warn!(path = %self.dir.display(), "key repository is world readable");
                }
                Ok(())
            }
            Ok(_) => Err(KeyError::Io {
                action: "use key repository",
                path: self.dir.clone(),
                source: io::Error::new(io::ErrorKind::NotADirectory, "not a directory"),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(self.not_initialized()),
            Err(source) => Err(KeyError::Io {
                action: "access key repository",
                path: self.dir.clone(),
                source,
            }),
        }
    }

    fn create_dir(&self) -> Result<(), KeyError> {
        if self.dir.is_dir() {
            return self.check_dir();
        }
        if let Some(parent) = self.dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent).map_err(|source| KeyError::Io {
                action: "create parent directory of",
                path: self.dir.clone(),
                source,
            })?;
        }
        match DirBuilder::new().mode(0o700).create(&self.dir) {
            Ok(()) => {}
            // Another process won the race; that is fine.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(source) => {
                return Err(KeyError::Io {
                    action: "create key repository",
                    path: self.dir.clone(),
                    source,
                });
            }
        }
        // The umask may have masked bits off `mode`; set it explicitly so the
        // result does not depend on the caller's umask.
        fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o700)).map_err(|source| {
            KeyError::Io {
                action: "set permissions on",
                path: self.dir.clone(),
                source,
            }
        })
    }

    /// Exclusive advisory lock so two `rotate`s (or a `setup` racing a
    /// `rotate`) cannot interleave and promote twice.
    fn lock(&self) -> Result<File, KeyError> {
        let path = self.dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|source| KeyError::Io {
                action: "open lock file",
                path: path.clone(),
                source,
            })?;
        file.lock().map_err(|source| KeyError::Io {
            action: "lock",
            path,
            source,
        })?;
        Ok(file)
    }

    /// Regular, non-empty files whose names are integers, by index.
    fn key_files(&self) -> Result<BTreeMap<u64, PathBuf>, KeyError> {
        let entries = fs::read_dir(&self.dir).map_err(|source| KeyError::Io {
            action: "list key repository",
            path: self.dir.clone(),
            source,
        })?;
        let mut files = BTreeMap::new();
        for entry in entries {
            let entry = entry.map_err(|source| KeyError::Io {
                action: "list key repository",
                path: self.dir.clone(),
                source,
            })?;
            let name = entry.file_name();
            let Some(index) = name.to_str().and_then(parse_index) else {
                continue;
            };
            let path = entry.path();
            // `metadata` follows symlinks, like keystone's `os.path.isfile`.
            match fs::metadata(&path) {
                Ok(meta) if meta.is_file() && meta.len() > 0 => {
                    files.insert(index, path);
                }
                _ => {}
            }
        }
        Ok(files)
    }

    fn write_key_atomically(&self, target: &Path, key: &str) -> Result<(), KeyError> {
        let tmp = self.write_temp_key(key)?;
        fs::rename(&tmp, target).map_err(|source| {
            let _ = fs::remove_file(&tmp);
            KeyError::Io {
                action: "install key",
                path: target.to_path_buf(),
                source,
            }
        })?;
        self.sync_dir()
    }

    /// Writes `key` to a fresh 0600 temporary file in the repository and
    /// fsyncs it; the caller renames it into place.
    fn write_temp_key(&self, key: &str) -> Result<PathBuf, KeyError> {
        let suffix: u64 = rand::random();
        let tmp = self
            .dir
            .join(format!(".tmp-key-{}-{suffix:016x}", std::process::id()));
        let result = (|| {
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            file.write_all(key.as_bytes())?;
            file.sync_all()
        })();
        match result {
            Ok(()) => Ok(tmp),
            Err(source) => {
                let _ = fs::remove_file(&tmp);
                Err(KeyError::Io {
                    action: "write new key",
                    path: tmp,
                    source,
                })
            }
        }
    }

    /// fsync the directory so the renames themselves survive a crash.
    fn sync_dir(&self) -> Result<(), KeyError> {
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|source| KeyError::Io {
                action: "sync",
                path: self.dir.clone(),
                source,
            })
    }
}

/// A key file name: ASCII digits only (no sign, no spaces).
fn parse_index(name: &str) -> Option<u64> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    name.parse().ok()
}

/// A new random key in the text form keystone writes: urlsafe base64 with `=`.
pub fn generate_key() -> String {
    let bytes: [u8; 32] = rand::random();
    URL_SAFE.encode(bytes)
}

/// The 32 key bytes, if `key` is a valid Fernet key (padding optional).
pub(crate) fn decode_key(key: &str) -> Option<[u8; 32]> {
    let bytes = URL_SAFE_NO_PAD
        .decode(key.trim().trim_end_matches('='))
        .ok()?;
    bytes.try_into().ok()
}
