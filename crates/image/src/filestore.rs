//! The filesystem store: image data under `<datadir>/<id>`, staged (glance-direct) data under
//! `<datadir>/staging/<id>`.
//!
//! Data is streamed to a temporary file in the same directory, hashed on the fly (md5 for
//! `checksum`, sha512 for `os_hash_value`) on two threads while it is written, and only
//! renamed to its final name once complete and flushed to disk. A crash therefore never leaves
//! partial data under an image's name; leftovers (`*.part`) are removed at start.

use bytes::Bytes;
use futures::{Stream, StreamExt};
use md5::Digest;
use std::io::Write;
use std::path::{Path, PathBuf};
use tokio::sync::mpsc;

/// How a transfer into the store ended badly.
#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    /// More than `cap` bytes arrived.
    #[error("the image data is larger than the {cap} bytes allowed")]
    TooLarge { cap: u64 },
    /// The source failed (client went away, remote server error).
    #[error("reading the image data failed: {0}")]
    Source(String),
    #[error("writing the image data failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Data received into a temporary file, not yet under its final name.
#[derive(Debug)]
pub struct Received {
    pub temp: PathBuf,
    pub size: u64,
    pub md5: String,
    pub sha512: String,
}

#[derive(Debug, Clone)]
pub struct FileStore {
    dir: PathBuf,
    staging: PathBuf,
}

/// Batches in flight between the receiving task and the writer/hasher threads. Bounded so a
/// fast client cannot make kumo buffer: when the disk is slower, the socket stops being read.
const QUEUE: usize = 4;
/// Body chunks are handed to the threads in batches of about this size: one wake-up per batch
/// instead of one per (often 16-64 KiB) chunk, which measured 2x slower.
const BATCH: usize = 1 << 20;

/// Chunks shared by the writer and the hasher without copying.
type Batch = std::sync::Arc<Vec<Bytes>>;
/// Read size for downloads.
const READ_CHUNK: usize = 512 * 1024;

impl FileStore {
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        let staging = dir.join("staging");
        std::fs::create_dir_all(&staging)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            staging,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn data_path(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    pub fn staging_path(&self, id: &str) -> PathBuf {
        self.staging.join(id)
    }

    pub fn has_staged(&self, id: &str) -> bool {
        self.staging_path(id).is_file()
    }

    /// Remove temporaries of transfers a previous run did not finish; returns how many.
    pub fn remove_partials(&self) -> usize {
        let mut n = 0;
        for d in [&self.dir, &self.staging] {
            let Ok(rd) = std::fs::read_dir(d) else {
                continue;
            };
            for e in rd.flatten() {
                let name = e.file_name();
                if name.to_string_lossy().ends_with(".part")
                    && std::fs::remove_file(e.path()).is_ok()
                {
                    n += 1;
                }
            }
        }
        n
    }

    /// Ids that have data files (orphan detection at start).
    pub fn data_ids(&self) -> Vec<String> {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        rd.flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.ends_with(".part"))
            .collect()
    }

    pub fn staged_ids(&self) -> Vec<String> {
        let Ok(rd) = std::fs::read_dir(&self.staging) else {
            return Vec::new();
        };
        rd.flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.ends_with(".part"))
            .collect()
    }

    pub fn remove_data(&self, id: &str) {
        remove_quietly(&self.data_path(id));
    }

    pub fn remove_staged(&self, id: &str) {
        remove_quietly(&self.staging_path(id));
    }

    fn temp_in(dir: &Path, id: &str) -> PathBuf {
        dir.join(format!(".{id}.{}.part", uuid::Uuid::new_v4().simple()))
    }

    /// Stream `source` into a temporary file next to the image data (`staging`: next to the
    /// staged data), hashing it; at most `cap` bytes.
    pub async fn receive<S, E>(
        &self,
        id: &str,
        staging: bool,
        source: S,
        cap: u64,
    ) -> Result<Received, ReceiveError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let dir = if staging { &self.staging } else { &self.dir };
        let temp = Self::temp_in(dir, id);
        match receive_into(&temp, source, cap).await {
            Ok((size, md5, sha512)) => Ok(Received {
                temp,
                size,
                md5,
                sha512,
            }),
            Err(e) => {
                remove_quietly(&temp);
                Err(e)
            }
        }
    }

    /// Make received data the image's data (or its staged data): flushed, then renamed.
    pub async fn commit(&self, r: &Received, id: &str, staging: bool) -> std::io::Result<()> {
        let dest = if staging {
            self.staging_path(id)
        } else {
            self.data_path(id)
        };
        let temp = r.temp.clone();
        tokio::task::spawn_blocking(move || commit_file(&temp, &dest))
            .await
            .map_err(std::io::Error::other)?
    }

    /// Move staged data into the store (glance-direct import): a rename on the same disk.
    pub async fn promote_staged(&self, id: &str) -> std::io::Result<()> {
        let from = self.staging_path(id);
        let to = self.data_path(id);
        tokio::task::spawn_blocking(move || {
            std::fs::rename(&from, &to)?;
            sync_parent(&to)
        })
        .await
        .map_err(std::io::Error::other)?
    }

    /// Hash a staged file (glance-direct imports compute checksums when importing).
    pub async fn hash_staged(&self, id: &str) -> std::io::Result<(u64, String, String)> {
        let path = self.staging_path(id);
        let file = tokio::fs::File::open(&path).await?;
        let stream = file_stream(file, None);
        match receive_hash_only(stream).await {
            Ok(x) => Ok(x),
            Err(ReceiveError::Io(e)) => Err(e),
            Err(e) => Err(std::io::Error::other(e.to_string())),
        }
    }

    /// The image's data from `offset`, `len` bytes (all if `None`).
    pub async fn read(
        &self,
        id: &str,
        offset: u64,
        len: Option<u64>,
    ) -> std::io::Result<futures::stream::BoxStream<'static, std::io::Result<Bytes>>> {
        use tokio::io::AsyncSeekExt;
        if offset == 0 {
            return direct_read_stream(self.data_path(id), len).await;
        }
        let mut file = tokio::fs::File::open(self.data_path(id)).await?;
        if offset > 0 {
            file.seek(std::io::SeekFrom::Start(offset)).await?;
        }
        Ok(file_stream(file, len))
    }
}

fn remove_quietly(p: &Path) {
    if let Err(e) = std::fs::remove_file(p)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(path = %p.display(), error = %e, "could not remove image data");
    }
}

fn sync_parent(p: &Path) -> std::io::Result<()> {
    if let Some(parent) = p.parent() {
        std::fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
}

fn commit_file(temp: &Path, dest: &Path) -> std::io::Result<()> {
    std::fs::OpenOptions::new()
        .write(true)
        .open(temp)?
        .sync_all()?;
    std::fs::rename(temp, dest)?;
    sync_parent(dest)
}

/// The file from its start, read with direct I/O (when possible) on a blocking thread into an
/// aligned buffer, handed out in 2 MiB chunks through a bounded channel (memory stays flat:
/// a slow client stops the reads).
async fn direct_read_stream(
    path: PathBuf,
    len: Option<u64>,
) -> std::io::Result<futures::stream::BoxStream<'static, std::io::Result<Bytes>>> {
    use std::io::Read;
    let (mut file, _) = tokio::task::spawn_blocking(move || open_direct(&path, false))
        .await
        .map_err(std::io::Error::other)??;
    // Two 2 MiB chunks in flight at most: flat memory whatever the client's speed.
    let (tx, rx) = mpsc::channel::<std::io::Result<Bytes>>(2);
    tokio::task::spawn_blocking(move || {
        // Direct reads get no read-ahead: big reads keep the disk busy.
        let mut buf = AlignedBuf::new(2 * DIRECT_BUF);
        let mut left = len.unwrap_or(u64::MAX);
        while left > 0 {
            let r = file.read(buf.get_mut());
            let item = match r {
                Ok(0) => break,
                Ok(n) => {
                    let n = n.min(usize::try_from(left).unwrap_or(n));
                    left -= n as u64;
                    Ok(Bytes::copy_from_slice(&buf.get()[..n]))
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => Err(e),
            };
            let failed = item.is_err();
            if tx.blocking_send(item).is_err() || failed {
                break;
            }
        }
    });
    Ok(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
    .boxed())
}

fn file_stream(
    file: tokio::fs::File,
    len: Option<u64>,
) -> futures::stream::BoxStream<'static, std::io::Result<Bytes>> {
    use tokio::io::AsyncReadExt;
    futures::stream::try_unfold(
        (file, len.unwrap_or(u64::MAX)),
        |(mut file, left)| async move {
            if left == 0 {
                return Ok(None);
            }
            let want = READ_CHUNK.min(usize::try_from(left).unwrap_or(READ_CHUNK));
            let mut buf = vec![0u8; want];
            let n = file.read(&mut buf).await?;
            if n == 0 {
                return Ok(None);
            }
            buf.truncate(n);
            Ok(Some((Bytes::from(buf), (file, left - n as u64))))
        },
    )
    .boxed()
}

/// Direct I/O wants buffers, offsets and lengths aligned to the device's block size; 4 KiB
/// covers every common one.
const ALIGN: usize = 4096;
/// Size of the aligned buffer direct I/O goes through.
const DIRECT_BUF: usize = 1 << 20;

/// A heap buffer whose usable part starts at an `ALIGN`ed address (no `unsafe`: a Vec one
/// alignment larger, used from the first aligned byte).
struct AlignedBuf {
    buf: Vec<u8>,
    off: usize,
    len: usize,
}

impl AlignedBuf {
    fn new(len: usize) -> Self {
        let buf = vec![0u8; len + ALIGN];
        let off = (ALIGN - (buf.as_ptr() as usize % ALIGN)) % ALIGN;
        Self { buf, off, len }
    }
    fn get(&self) -> &[u8] {
        &self.buf[self.off..self.off + self.len]
    }
    fn get_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.off..self.off + self.len]
    }
}

/// Open for writing with O_DIRECT when the filesystem allows it (tmpfs does not).
///
/// Why: on the VMs kumo is measured on, filling fresh page-cache pages from user space costs
/// ~3 s per GiB, while direct writes reach the disk at its speed and leave nothing to flush.
fn open_direct(path: &Path, write: bool) -> std::io::Result<(std::fs::File, bool)> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut o = std::fs::OpenOptions::new();
    if write {
        o.write(true).create_new(true);
    } else {
        o.read(true);
    }
    let mut direct = o.clone();
    direct.custom_flags(nix::fcntl::OFlag::O_DIRECT.bits());
    match direct.open(path) {
        Ok(f) => Ok((f, true)),
        // Refused because of the flag alone (nothing was created): go buffered.
        Err(e) if e.raw_os_error() == Some(nix::libc::EINVAL) => o.open(path).map(|f| (f, false)),
        Err(e) => Err(e),
    }
}

/// Where received data goes: through an aligned buffer with direct I/O, or buffered.
struct Sink {
    file: std::fs::File,
    direct: Option<(AlignedBuf, usize)>,
    total: u64,
}

impl Sink {
    fn open(path: &Path) -> std::io::Result<Self> {
        let (file, direct) = open_direct(path, true)?;
        Ok(Self {
            file,
            direct: direct.then(|| (AlignedBuf::new(DIRECT_BUF), 0)),
            total: 0,
        })
    }

    fn write(&mut self, mut data: &[u8]) -> std::io::Result<()> {
        self.total += data.len() as u64;
        let Some((buf, fill)) = &mut self.direct else {
            return self.file.write_all(data);
        };
        while !data.is_empty() {
            let n = data.len().min(DIRECT_BUF - *fill);
            buf.get_mut()[*fill..*fill + n].copy_from_slice(&data[..n]);
            *fill += n;
            data = &data[n..];
            if *fill == DIRECT_BUF {
                self.file.write_all(buf.get())?;
                *fill = 0;
            }
        }
        Ok(())
    }

    /// Write what is buffered (the last block padded, then cut back to the real length).
    fn finish(mut self) -> std::io::Result<()> {
        if let Some((buf, fill)) = &mut self.direct
            && *fill > 0
        {
            let padded = fill.div_ceil(ALIGN) * ALIGN;
            buf.get_mut()[*fill..padded].fill(0);
            self.file.write_all(&buf.get()[..padded])?;
            self.file.set_len(self.total)?;
        }
        self.file.flush()
    }
}

/// Feed `source` to three threads: the writer (which mostly waits for the disk), md5 and sha512
/// (one core each: the two hashes are what an upload costs).
async fn receive_into<S, E>(
    temp: &Path,
    mut source: S,
    cap: u64,
) -> Result<(u64, String, String), ReceiveError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let sink = Sink::open(temp)?;
    let (wtx, mut wrx) = mpsc::channel::<Batch>(QUEUE);
    let (mtx, mut mrx) = mpsc::channel::<Batch>(QUEUE);
    let (htx, mut hrx) = mpsc::channel::<Batch>(QUEUE);
    let writer = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        let mut sink = sink;
        while let Some(batch) = wrx.blocking_recv() {
            for chunk in batch.iter() {
                sink.write(chunk)?;
            }
        }
        sink.finish()
    });
    let md5er = tokio::task::spawn_blocking(move || {
        let mut md5 = md5::Md5::new();
        while let Some(batch) = mrx.blocking_recv() {
            for chunk in batch.iter() {
                md5.update(chunk);
            }
        }
        hex::encode(md5.finalize())
    });
    let hasher = tokio::task::spawn_blocking(move || {
        let mut sha = ring::digest::Context::new(&ring::digest::SHA512);
        while let Some(batch) = hrx.blocking_recv() {
            for chunk in batch.iter() {
                sha.update(chunk);
            }
        }
        hex::encode(sha.finish().as_ref())
    });
    let mut size: u64 = 0;
    let mut failure = None;
    let mut pending: Vec<Bytes> = Vec::new();
    let mut pending_len = 0usize;
    loop {
        let item = source.next().await;
        let last = item.is_none();
        match item {
            Some(Ok(chunk)) => {
                size += chunk.len() as u64;
                if size > cap {
                    failure = Some(ReceiveError::TooLarge { cap });
                    break;
                }
                pending_len += chunk.len();
                pending.push(chunk);
            }
            Some(Err(e)) => {
                failure = Some(ReceiveError::Source(e.to_string()));
                break;
            }
            None => {}
        }
        if (pending_len >= BATCH || last) && !pending.is_empty() {
            let batch: Batch = std::sync::Arc::new(std::mem::take(&mut pending));
            pending_len = 0;
            // A closed channel means the writer failed; its error is reported below.
            if htx.send(batch.clone()).await.is_err()
                || mtx.send(batch.clone()).await.is_err()
                || wtx.send(batch).await.is_err()
            {
                break;
            }
        }
        if last {
            break;
        }
    }
    drop(wtx);
    drop(mtx);
    drop(htx);
    let written = writer.await.map_err(std::io::Error::other)?;
    let md5 = md5er.await.map_err(std::io::Error::other)?;
    let sha = hasher.await.map_err(std::io::Error::other)?;
    if let Some(f) = failure {
        return Err(f);
    }
    written?;
    Ok((size, md5, sha))
}

async fn receive_hash_only<S>(mut source: S) -> Result<(u64, String, String), ReceiveError>
where
    S: Stream<Item = std::io::Result<Bytes>> + Unpin,
{
    let (mtx, mut mrx) = mpsc::channel::<Bytes>(QUEUE);
    let (htx, mut hrx) = mpsc::channel::<Bytes>(QUEUE);
    let m = tokio::task::spawn_blocking(move || {
        let mut md5 = md5::Md5::new();
        while let Some(chunk) = mrx.blocking_recv() {
            md5.update(&chunk);
        }
        hex::encode(md5.finalize())
    });
    let h = tokio::task::spawn_blocking(move || {
        let mut sha = ring::digest::Context::new(&ring::digest::SHA512);
        while let Some(chunk) = hrx.blocking_recv() {
            sha.update(&chunk);
        }
        hex::encode(sha.finish().as_ref())
    });
    let mut size = 0u64;
    let mut failure = None;
    while let Some(item) = source.next().await {
        match item {
            Ok(chunk) => {
                size += chunk.len() as u64;
                if htx.send(chunk.clone()).await.is_err() || mtx.send(chunk).await.is_err() {
                    break;
                }
            }
            Err(e) => {
                failure = Some(ReceiveError::Io(e));
                break;
            }
        }
    }
    drop(mtx);
    drop(htx);
    let md5 = m.await.map_err(std::io::Error::other)?;
    let sha = h.await.map_err(std::io::Error::other)?;
    match failure {
        Some(f) => Err(f),
        None => Ok((size, md5, sha)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(data: &[u8]) -> impl Stream<Item = Result<Bytes, String>> + Unpin {
        let v: Vec<Result<Bytes, String>> = data
            .chunks(1000)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        futures::stream::iter(v)
    }

    #[tokio::test]
    async fn receive_hashes_and_commits_atomically() {
        let d = tempfile::tempdir().unwrap();
        let s = FileStore::open(d.path()).unwrap();
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let r = s
            .receive("img", false, chunks(&data), 1 << 20)
            .await
            .unwrap();
        assert_eq!(r.size, 10_000);
        assert_eq!(r.md5, hex::encode(md5::Md5::digest(&data)));
        assert!(!s.data_path("img").exists(), "not visible before commit");
        s.commit(&r, "img", false).await.unwrap();
        assert_eq!(std::fs::read(s.data_path("img")).unwrap(), data);
        let body: Vec<Bytes> = s
            .read("img", 10, Some(5))
            .await
            .unwrap()
            .map(|c| c.unwrap())
            .collect()
            .await;
        assert_eq!(body.concat(), data[10..15].to_vec());
        let (n, md5, sha) = {
            std::fs::copy(s.data_path("img"), s.staging_path("img")).unwrap();
            s.hash_staged("img").await.unwrap()
        };
        assert_eq!((n, md5), (10_000, r.md5.clone()));
        assert_eq!(sha, r.sha512);
    }

    #[tokio::test]
    async fn too_large_and_broken_sources_leave_nothing() {
        let d = tempfile::tempdir().unwrap();
        let s = FileStore::open(d.path()).unwrap();
        let data = vec![7u8; 5000];
        let e = s
            .receive("a", false, chunks(&data), 4000)
            .await
            .unwrap_err();
        assert!(matches!(e, ReceiveError::TooLarge { cap: 4000 }));
        let broken = futures::stream::iter(vec![
            Ok(Bytes::from_static(b"abc")),
            Err("connection reset".to_string()),
        ]);
        let e = s.receive("b", true, broken, 1 << 20).await.unwrap_err();
        assert!(matches!(e, ReceiveError::Source(_)));
        let left: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .chain(std::fs::read_dir(d.path().join("staging")).unwrap())
            .flatten()
            .filter(|e| e.file_type().unwrap().is_file())
            .collect();
        assert!(left.is_empty(), "leftovers: {left:?}");
    }
}
