//! A streaming reader of `multipart/form-data` bodies (RFC 7578), enough for the image upload
//! form: its small text fields are read whole, and the file is handed on in chunks as they
//! arrive, so an image is never held in memory. (axum's own multipart needs a crate this
//! build does not have.)

use axum::body::Bytes;
use futures::{Stream, StreamExt};

/// Part headers longer than this are refused (they are a few hundred bytes from a browser).
const MAX_HEAD: usize = 16 * 1024;
/// Text fields longer than this are refused (names, formats, the CSRF token).
const MAX_FIELD: usize = 64 * 1024;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MultipartError {
    #[error("the upload is not multipart/form-data")]
    NotMultipart,
    #[error("the upload ended before its end")]
    Truncated,
    #[error("a part of the upload is too large or malformed")]
    Malformed,
    #[error("the upload could not be read: {0}")]
    Read(String),
}

/// The boundary of a `multipart/form-data; boundary=...` content type.
pub fn boundary(content_type: &str) -> Option<String> {
    let (kind, params) = content_type.split_once(';')?;
    if !kind.trim().eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    params.split(';').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        let v = v.trim().trim_matches('"');
        (k.trim().eq_ignore_ascii_case("boundary") && !v.is_empty()).then(|| v.to_string())
    })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// What a part's headers say: its form field name and, for a file, its file name.
#[derive(Debug, Clone, PartialEq)]
pub struct PartHead {
    pub name: String,
    pub filename: Option<String>,
}

/// `Content-Disposition: form-data; name="x"; filename="y"` among a part's header lines.
pub fn part_head(block: &str) -> Option<PartHead> {
    let line = block.split("\r\n").find(|l| {
        l.split_once(':')
            .is_some_and(|(k, _)| k.trim().eq_ignore_ascii_case("content-disposition"))
    })?;
    let (_, value) = line.split_once(':')?;
    let mut name = None;
    let mut filename = None;
    for p in value.split(';').skip(1) {
        if let Some((k, v)) = p.split_once('=') {
            let v = v.trim().trim_matches('"').to_string();
            match k.trim().to_ascii_lowercase().as_str() {
                "name" => name = Some(v),
                "filename" => filename = Some(v),
                _ => {}
            }
        }
    }
    Some(PartHead {
        name: name?,
        filename,
    })
}

pub struct MultipartReader<S> {
    stream: S,
    buf: Vec<u8>,
    /// `\r\n--boundary`: what ends every part
    delimiter: Vec<u8>,
    eof: bool,
}

impl<S, E> MultipartReader<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    pub fn new(stream: S, boundary: &str) -> Self {
        MultipartReader {
            stream,
            // the body starts with `--boundary`: the CRLF before it makes it a delimiter
            // like the others
            buf: b"\r\n".to_vec(),
            delimiter: format!("\r\n--{boundary}").into_bytes(),
            eof: false,
        }
    }

    /// More bytes into the buffer; false at the end of the body.
    async fn fill(&mut self) -> Result<bool, MultipartError> {
        if self.eof {
            return Ok(false);
        }
        match self.stream.next().await {
            Some(Ok(b)) => {
                self.buf.extend_from_slice(&b);
                Ok(true)
            }
            Some(Err(e)) => Err(MultipartError::Read(e.to_string())),
            None => {
                self.eof = true;
                Ok(false)
            }
        }
    }

    /// Fill until `needle` is in the buffer (its position), within `limit` bytes.
    async fn until(&mut self, needle: &[u8], limit: usize) -> Result<usize, MultipartError> {
        loop {
            if let Some(p) = find(&self.buf, needle) {
                return Ok(p);
            }
            if self.buf.len() > limit {
                return Err(MultipartError::Malformed);
            }
            if !self.fill().await? {
                return Err(MultipartError::Truncated);
            }
        }
    }

    /// The next part's headers; None after the last part. The buffer must start at (or
    /// before, in the preamble) a delimiter.
    pub async fn next_part(&mut self) -> Result<Option<PartHead>, MultipartError> {
        let delimiter = self.delimiter.clone();
        let p = self.until(&delimiter, MAX_HEAD).await?;
        self.buf.drain(..p + delimiter.len());
        while self.buf.len() < 2 {
            if !self.fill().await? {
                return Err(MultipartError::Truncated);
            }
        }
        if self.buf.starts_with(b"--") {
            return Ok(None);
        }
        let end = self.until(b"\r\n\r\n", MAX_HEAD).await?;
        let block = String::from_utf8_lossy(&self.buf[..end]).into_owned();
        self.buf.drain(..end + 4);
        part_head(&block).map(Some).ok_or(MultipartError::Malformed)
    }

    /// The whole body of the current (small, text) part.
    pub async fn text(&mut self) -> Result<String, MultipartError> {
        let delimiter = self.delimiter.clone();
        let p = self.until(&delimiter, MAX_FIELD).await?;
        let value = String::from_utf8_lossy(&self.buf[..p]).into_owned();
        self.buf.drain(..p);
        Ok(value)
    }

    /// The next chunk of the current (file) part's body; None at its end. Bytes that could be
    /// the start of the delimiter stay in the buffer until the next chunk tells.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, MultipartError> {
        loop {
            if let Some(p) = find(&self.buf, &self.delimiter) {
                if p == 0 {
                    return Ok(None);
                }
                let out: Vec<u8> = self.buf.drain(..p).collect();
                return Ok(Some(Bytes::from(out)));
            }
            let keep = self.delimiter.len() - 1;
            if self.buf.len() > keep {
                let n = self.buf.len() - keep;
                let out: Vec<u8> = self.buf.drain(..n).collect();
                return Ok(Some(Bytes::from(out)));
            }
            if !self.fill().await? {
                return Err(MultipartError::Truncated);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(parts: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
        let mut out = b"preamble\r\n".to_vec();
        for (name, file, data) in parts {
            out.extend_from_slice(b"--XyZ\r\nContent-Disposition: form-data; name=\"");
            out.extend_from_slice(name.as_bytes());
            out.push(b'"');
            if let Some(f) = file {
                out.extend_from_slice(
                    format!("; filename=\"{f}\"\r\nContent-Type: application/octet-stream")
                        .as_bytes(),
                );
            }
            out.extend_from_slice(b"\r\n\r\n");
            out.extend_from_slice(data);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"--XyZ--\r\n");
        out
    }

    /// Reads the fields and the file of `raw` fed in chunks of `size` bytes.
    async fn read(
        raw: &[u8],
        size: usize,
    ) -> Result<(Vec<(String, String)>, Vec<u8>), MultipartError> {
        let chunks: Vec<Result<Bytes, std::convert::Infallible>> = raw
            .chunks(size)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let mut r = MultipartReader::new(futures::stream::iter(chunks), "XyZ");
        let mut fields = Vec::new();
        let mut file = Vec::new();
        while let Some(head) = r.next_part().await? {
            if head.filename.is_some() {
                while let Some(c) = r.chunk().await? {
                    file.extend_from_slice(&c);
                }
            } else {
                fields.push((head.name, r.text().await?));
            }
        }
        Ok((fields, file))
    }

    #[tokio::test]
    async fn fields_and_a_file_whatever_the_chunking() {
        // a file with CRLFs and near-delimiters in it (a sender picks a boundary its data
        // does not hold)
        let data: Vec<u8> = b"\r\n--XyQ\r\n--Xy\x00\xff\r\n-"
            .iter()
            .copied()
            .cycle()
            .take(5000)
            .collect();
        let raw = body(&[
            ("csrf_token", None, b"abc"),
            ("name", None, b"my image"),
            ("file", Some("t.qcow2"), &data),
        ]);
        for size in [1, 2, 7, 64, 4096, raw.len()] {
            let (fields, file) = read(&raw, size).await.unwrap();
            assert_eq!(
                fields,
                vec![
                    ("csrf_token".into(), "abc".into()),
                    ("name".into(), "my image".into())
                ],
                "chunks of {size}"
            );
            assert_eq!(file, data, "chunks of {size}");
        }
    }

    #[tokio::test]
    async fn a_cut_body_is_an_error() {
        let raw = body(&[("file", Some("f"), b"0123456789")]);
        let cut = &raw[..raw.len() - 12];
        assert_eq!(read(cut, 5).await.unwrap_err(), MultipartError::Truncated);
    }

    #[test]
    fn boundaries_and_heads() {
        assert_eq!(
            boundary("multipart/form-data; boundary=----WebKitFormBoundaryA1").as_deref(),
            Some("----WebKitFormBoundaryA1")
        );
        assert_eq!(
            boundary("multipart/form-data; boundary=\"q\"").as_deref(),
            Some("q")
        );
        assert_eq!(boundary("application/x-www-form-urlencoded"), None);
        let h = part_head("Content-Disposition: form-data; name=\"file\"; filename=\"a b.img\"\r\nContent-Type: x").unwrap();
        assert_eq!(
            (h.name.as_str(), h.filename.as_deref()),
            ("file", Some("a b.img"))
        );
        assert!(part_head("Content-Type: x").is_none());
    }
}
