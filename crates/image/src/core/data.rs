//! Image data: upload (`queued -> saving -> active`), staging and interoperable import
//! (glance-direct, web-download) run as tasks, download, and the tasks API.

use bytes::Bytes;
use chrono::Utc;
use common::auth::AuthContext;
use futures::{Stream, StreamExt};
use serde_json::{Value, json};
use std::sync::Arc;

use super::{IMPORT_LOCK, ImageService};
use crate::error::{ImageError, Result};
use crate::filestore::{ReceiveError, Received};
use crate::inspect::{self, InspectError};
use crate::model::*;
use crate::store;

/// What a download sends: the image (for headers) and the byte range.
pub struct Download {
    pub image: Image,
    /// `None`: the image has no data (Glance answers 204).
    pub size: Option<u64>,
}

/// A validated `POST /v2/images/{id}/import` body.
#[derive(Debug, Clone)]
pub struct ImportRequest {
    pub method: ImportMethod,
    /// The request body, kept as the task's input.
    pub body: Value,
}

impl ImageService {
    fn too_large(&self, detail: impl std::fmt::Display) -> ImageError {
        ImageError::TooLarge(format!("The incoming image is too large: {detail}"))
    }

    fn missing_formats(img: &Image) -> Option<ImageError> {
        let missing: Vec<&str> = [
            ("disk_format", img.disk_format.is_none()),
            ("container_format", img.container_format.is_none()),
        ]
        .into_iter()
        .filter(|(_, m)| *m)
        .map(|(n, _)| n)
        .collect();
        match missing.len() {
            0 => None,
            1 => Some(ImageError::bad(format!(
                "Property {} must be set prior to saving data.",
                missing[0]
            ))),
            _ => Some(ImageError::bad(format!(
                "Properties {} must be set prior to saving data.",
                missing.join(", ")
            ))),
        }
    }

    /// Claim the image for a transfer: `from -> to` in one compare-and-set.
    async fn claim(&self, ctx: &AuthContext, id: &str, policy: &str, to: Status) -> Result<Image> {
        let w = self.db.write().await?;
        let mut img = self.lookup(&*w, ctx, id).await?;
        self.enforce_on(ctx, &img, policy)?;
        let from = img.status;
        if from != Status::Queued || !from.can_become(to) {
            return Err(ImageError::transition(from.as_str(), to.as_str()));
        }
        if let Some(e) = Self::missing_formats(&img) {
            return Err(e);
        }
        img.status = to;
        img.updated_at = Utc::now();
        if !store::save_image_if(&*w, &img, from).await? {
            return Err(ImageError::transition(from.as_str(), to.as_str()));
        }
        w.commit().await?;
        Ok(img)
    }

    /// Put an image whose transfer failed back to `queued` (Glance's `_restore`).
    async fn restore(&self, id: &str, from: Status) {
        let r: Result<()> = async {
            let w = self.db.write().await?;
            if let Some(row) = store::get_image(&*w, id).await?
                && !row.deleted
                && row.image.status == from
            {
                let mut img = row.image;
                img.status = Status::Queued;
                img.size = None;
                img.virtual_size = None;
                img.updated_at = Utc::now();
                store::save_image_if(&*w, &img, from).await?;
                w.commit().await?;
            }
            Ok(())
        }
        .await;
        if let Err(e) = r {
            tracing::error!(image = %id, error = %e, "could not restore the image to queued");
        }
    }

    fn receive_error(&self, e: ReceiveError) -> ImageError {
        match e {
            ReceiveError::TooLarge { cap } => {
                self.too_large(format!("more than the {cap} bytes allowed"))
            }
            ReceiveError::Source(m) => {
                ImageError::bad(format!("Error reading the image data: {m}"))
            }
            ReceiveError::Io(e) => ImageError::Io(e),
        }
    }

    /// Does the data at `path` match the image's disk_format? (Only `bare` containers are
    /// inspected, as Glance does: other containers wrap the disk.)
    async fn check_format(
        &self,
        img: &Image,
        path: &std::path::Path,
    ) -> std::result::Result<Option<i64>, InspectError> {
        if !self.cfg.require_image_format_match || img.container_format.as_deref() != Some("bare") {
            return Ok(None);
        }
        let found = inspect::inspect(&self.cfg.qemu_img, path).await?;
        inspect::judge(img.disk_format.as_deref().unwrap_or("raw"), &found)
    }

    /// `PUT /v2/images/{id}/file`: stream the body into the store.
    pub async fn upload<S, E>(
        &self,
        ctx: &AuthContext,
        id: &str,
        declared_size: Option<u64>,
        body: S,
    ) -> Result<()>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let cap = self.cfg.image_size_cap;
        if let Some(s) = declared_size
            && s > cap
        {
            return Err(self.too_large(format!("{s} bytes is more than the {cap} allowed")));
        }
        let img = self.claim(ctx, id, "upload_image", Status::Saving).await?;
        let t0 = std::time::Instant::now();
        let received = match self.store.receive(id, false, body, cap).await {
            Ok(r) => r,
            Err(e) => {
                self.restore(id, Status::Saving).await;
                return Err(self.receive_error(e));
            }
        };
        let t_received = t0.elapsed();
        let virtual_size = match self.check_format(&img, &received.temp).await {
            Ok(v) => v,
            Err(e) => {
                let _ = std::fs::remove_file(&received.temp);
                self.restore(id, Status::Saving).await;
                return Err(match e {
                    InspectError::Failed(m) => {
                        ImageError::Internal(format!("inspecting image {id}: {m}"))
                    }
                    other => ImageError::UnsupportedMediaType(other.to_string()),
                });
            }
        };
        let t_checked = t0.elapsed();
        if let Err(e) = self.store.commit(&received, id, false).await {
            let _ = std::fs::remove_file(&received.temp);
            self.restore(id, Status::Saving).await;
            return Err(e.into());
        }
        tracing::info!(image = %id, bytes = received.size,
            receive_ms = t_received.as_millis() as u64,
            inspect_ms = (t_checked - t_received).as_millis() as u64,
            flush_ms = (t0.elapsed() - t_checked).as_millis() as u64, "image data stored");
        self.activate(id, Status::Saving, &received, virtual_size, |_| {})
            .await
    }

    /// The data is in the store: `from -> active` with its size and hashes, unless the image
    /// was deleted meanwhile (then the data goes, and the client gets Glance's 410).
    async fn activate(
        &self,
        id: &str,
        from: Status,
        r: &Received,
        virtual_size: Option<i64>,
        also: impl FnOnce(&mut Image),
    ) -> Result<()> {
        let w = self.db.write().await?;
        let row = store::get_image(&*w, id).await?;
        let Some(mut img) = row
            .filter(|r| !r.deleted && r.image.status == from)
            .map(|r| r.image)
        else {
            drop(w);
            self.store.remove_data(id);
            return Err(ImageError::Gone(format!(
                "Image {id} could not be found after upload. The image may have been deleted \
                 during the upload, cleaning up the chunks uploaded."
            )));
        };
        img.status = Status::Active;
        img.size = Some(r.size as i64);
        img.virtual_size = Some(virtual_size.unwrap_or(r.size as i64));
        img.checksum = Some(r.md5.clone());
        img.os_hash_algo = Some("sha512".into());
        img.os_hash_value = Some(r.sha512.clone());
        img.updated_at = Utc::now();
        also(&mut img);
        if !store::save_image_if(&*w, &img, from).await? {
            drop(w);
            self.store.remove_data(id);
            return Err(ImageError::Gone(format!(
                "Image {id} was deleted during the upload."
            )));
        }
        w.commit().await?;
        Ok(())
    }

    /// `PUT /v2/images/{id}/stage`: the glance-direct upload, kept aside until imported.
    pub async fn stage<S, E>(
        &self,
        ctx: &AuthContext,
        id: &str,
        declared_size: Option<u64>,
        body: S,
    ) -> Result<()>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        if !self.import_enabled("glance-direct") {
            return Err(ImageError::not_found(
                "'glance-direct' method is not available at this site.",
            ));
        }
        let cap = self.cfg.image_size_cap;
        if let Some(s) = declared_size
            && s > cap
        {
            return Err(self.too_large(format!("{s} bytes is more than the {cap} allowed")));
        }
        // Glance checks modify_image here, and the status transition queued -> uploading.
        let w = self.db.write().await?;
        let mut img = self.lookup(&*w, ctx, id).await?;
        self.enforce_on(ctx, &img, "modify_image")?;
        if img.status != Status::Queued {
            return Err(ImageError::transition(
                img.status.as_str(),
                Status::Uploading.as_str(),
            ));
        }
        img.status = Status::Uploading;
        img.updated_at = Utc::now();
        if !store::save_image_if(&*w, &img, Status::Queued).await? {
            return Err(ImageError::transition("queued", "uploading"));
        }
        w.commit().await?;
        let received = match self.store.receive(id, true, body, cap).await {
            Ok(r) => r,
            Err(e) => {
                self.restore(id, Status::Uploading).await;
                return Err(self.receive_error(e));
            }
        };
        if let Err(e) = self.store.commit(&received, id, true).await {
            let _ = std::fs::remove_file(&received.temp);
            self.restore(id, Status::Uploading).await;
            return Err(e.into());
        }
        let w = self.db.write().await?;
        match store::get_image(&*w, id).await? {
            Some(row) if !row.deleted && row.image.status == Status::Uploading => {
                let mut img = row.image;
                img.size = Some(received.size as i64);
                img.updated_at = Utc::now();
                store::save_image_if(&*w, &img, Status::Uploading).await?;
                w.commit().await?;
                Ok(())
            }
            _ => {
                drop(w);
                self.store.remove_staged(id);
                Err(ImageError::Gone(format!(
                    "Image {id} was deleted while its data was being staged."
                )))
            }
        }
    }

    /// `GET /v2/images/{id}/file`: checks; the API streams [`FileStore::read`].
    pub async fn download(&self, ctx: &AuthContext, id: &str) -> Result<Download> {
        let img = self.lookup(self.db.conn(), ctx, id).await?;
        if img.status == Status::Deactivated && !self.is_admin(ctx) {
            return Err(ImageError::forbidden(
                "The requested image has been deactivated. Image data download is forbidden.",
            ));
        }
        self.enforce_on(ctx, &img, "download_image")?;
        let size = if img.status.has_data() {
            img.size.map(|s| s as u64)
        } else {
            None
        };
        Ok(Download { image: img, size })
    }

    // ------------------------------------------------------------ import

    pub fn import_enabled(&self, method: &str) -> bool {
        self.cfg.enabled_import_methods.iter().any(|m| m == method)
    }

    /// Glance's `[import_filtering_opts]` on a web-download URI.
    fn uri_allowed(&self, uri: &str) -> bool {
        let f = &self.cfg.import_filter;
        let Ok(u) = reqwest::Url::parse(uri) else {
            return false;
        };
        let Some(host) = u.host_str() else {
            return false;
        };
        let port = u.port_or_known_default().unwrap_or(0);
        (f.allowed_schemes.is_empty() || f.allowed_schemes.iter().any(|s| s == u.scheme()))
            && (f.allowed_hosts.is_empty() || f.allowed_hosts.iter().any(|h| h == host))
            && !f.disallowed_hosts.iter().any(|h| h == host)
            && (f.allowed_ports.is_empty() || f.allowed_ports.contains(&port))
            && !f.disallowed_ports.contains(&port)
    }

    /// `POST /v2/images/{id}/import`: checks, then a task that runs in the background.
    pub async fn import(
        self: &Arc<Self>,
        ctx: &AuthContext,
        id: &str,
        req: ImportRequest,
        request_id: Option<String>,
    ) -> Result<String> {
        let w = self.db.write().await?;
        let mut img = self.lookup(&*w, ctx, id).await?;
        let method = req.method.name();
        if img.status == Status::Active {
            return Err(ImageError::conflict(
                "Image with status active cannot be target for import",
            ));
        }
        match &req.method {
            ImportMethod::WebDownload { .. } if img.status != Status::Queued => {
                return Err(ImageError::conflict(format!(
                    "Image needs to be in 'queued' state to use '{method}' method"
                )));
            }
            ImportMethod::GlanceDirect if img.status != Status::Uploading => {
                return Err(ImageError::conflict(
                    "Image needs to be staged before 'glance-direct' method can be used",
                ));
            }
            _ => {}
        }
        if img.container_format.is_none() {
            return Err(ImageError::conflict(
                "'container_format' needs to be set before import",
            ));
        }
        if img.disk_format.is_none() {
            return Err(ImageError::conflict(
                "'disk_format' needs to be set before import",
            ));
        }
        self.enforce_on(ctx, &img, "modify_image")?;
        if img.properties.contains_key(IMPORT_LOCK) {
            return Err(ImageError::conflict(format!(
                "New operation on image '{id}' is not permitted as prior operation is still in \
                 progress"
            )));
        }
        if let ImportMethod::WebDownload { uri } = &req.method
            && !self.uri_allowed(uri)
        {
            return Err(ImageError::bad(format!(
                "URI for web-download does not pass filtering: {uri}"
            )));
        }
        if req.method == ImportMethod::GlanceDirect {
            // The data is already here: a mismatch is answered now, clearly, instead of as a
            // failed task later.
            match self.check_format(&img, &self.store.staging_path(id)).await {
                Ok(_) => {}
                Err(InspectError::Failed(m)) => {
                    return Err(ImageError::Internal(format!("inspecting image {id}: {m}")));
                }
                Err(e) => return Err(ImageError::bad(e.to_string())),
            }
        }
        let now = Utc::now();
        let task = Task {
            id: uuid::Uuid::new_v4().to_string(),
            task_type: "api_image_import".into(),
            status: TaskStatus::Pending,
            owner: ctx.project_id().map(str::to_string),
            image_id: Some(id.to_string()),
            request_id,
            user_id: Some(ctx.user_id.clone()),
            input: json!({"image_id": id, "import_req": req.body, "backend": [self.cfg.store_id]}),
            result: None,
            message: String::new(),
            expires_at: None,
            created_at: now,
            updated_at: now,
        };
        let before = img.status;
        img.properties
            .insert(IMPORT_LOCK.into(), Value::String(task.id.clone()));
        img.properties.insert(
            "os_glance_importing_to_stores".into(),
            Value::String(self.cfg.store_id.clone()),
        );
        img.properties.insert(
            "os_glance_failed_import".into(),
            Value::String(String::new()),
        );
        img.updated_at = now;
        if !store::save_image_if(&*w, &img, before).await? {
            return Err(ImageError::conflict(format!(
                "New operation on image '{id}' is not permitted as prior operation is still in \
                 progress"
            )));
        }
        store::insert_task(&*w, &task).await?;
        w.commit().await?;
        let svc = self.clone();
        let (task_id, image_id, method) = (task.id.clone(), id.to_string(), req.method);
        tokio::spawn(async move {
            svc.run_import(task_id, image_id, method).await;
        });
        Ok(task.id)
    }

    async fn set_task(&self, id: &str, status: TaskStatus, message: &str, result: Option<Value>) {
        let r: Result<()> = async {
            let w = self.db.write().await?;
            if let Some(mut t) = store::get_task(&*w, id).await? {
                let now = Utc::now();
                t.status = status;
                t.message = message.to_string();
                t.updated_at = now;
                if result.is_some() {
                    t.result = result;
                }
                if matches!(status, TaskStatus::Success | TaskStatus::Failure) {
                    t.expires_at = Some(now + self.task_ttl());
                }
                store::update_task(&*w, &t).await?;
                w.commit().await?;
            }
            Ok(())
        }
        .await;
        if let Err(e) = r {
            tracing::error!(task = %id, error = %e, "could not record the task status");
        }
    }

    /// The import task: fetch (web-download) or take the staged data, check it, move it into
    /// the store, activate the image. Any failure puts the image back to `queued`, its staged
    /// data removed, and fails the task with the reason.
    async fn run_import(self: Arc<Self>, task_id: String, id: String, method: ImportMethod) {
        self.set_task(&task_id, TaskStatus::Processing, "", None)
            .await;
        match self.import_steps(&id, &method).await {
            Ok(()) => {
                self.set_task(
                    &task_id,
                    TaskStatus::Success,
                    "",
                    Some(json!({"image_id": id})),
                )
                .await;
                tracing::info!(image = %id, task = %task_id, method = method.name(), "image imported");
            }
            Err(e) => {
                let msg = match &e {
                    ImageError::Db(_) | ImageError::Io(_) | ImageError::Internal(_) => {
                        tracing::error!(image = %id, error = %e, "import failed");
                        format!("Import failed: {e}")
                    }
                    other => other.to_string(),
                };
                tracing::info!(image = %id, task = %task_id, reason = %msg, "import failed");
                self.store.remove_staged(&id);
                self.fail_import(&id).await;
                self.set_task(&task_id, TaskStatus::Failure, &msg, None)
                    .await;
            }
        }
    }

    async fn fail_import(&self, id: &str) {
        let r: Result<()> = async {
            let w = self.db.write().await?;
            if let Some(row) = store::get_image(&*w, id).await?
                && !row.deleted
            {
                let mut img = row.image;
                let from = img.status;
                if matches!(from, Status::Importing | Status::Uploading | Status::Queued) {
                    img.status = Status::Queued;
                    img.size = None;
                    img.virtual_size = None;
                }
                img.properties.remove(IMPORT_LOCK);
                img.properties.insert(
                    "os_glance_importing_to_stores".into(),
                    Value::String(String::new()),
                );
                img.properties.insert(
                    "os_glance_failed_import".into(),
                    Value::String(self.cfg.store_id.clone()),
                );
                img.updated_at = Utc::now();
                store::save_image_if(&*w, &img, from).await?;
                w.commit().await?;
            }
            Ok(())
        }
        .await;
        if let Err(e) = r {
            tracing::error!(image = %id, error = %e, "could not reset the image after a failed import");
        }
    }

    async fn to_importing(&self, id: &str) -> Result<Image> {
        let w = self.db.write().await?;
        let row = store::get_image(&*w, id).await?;
        let Some(mut img) = row.filter(|r| !r.deleted).map(|r| r.image) else {
            return Err(ImageError::image_not_found(id));
        };
        let from = img.status;
        if !from.can_become(Status::Importing) {
            return Err(ImageError::transition(from.as_str(), "importing"));
        }
        img.status = Status::Importing;
        img.updated_at = Utc::now();
        if !store::save_image_if(&*w, &img, from).await? {
            return Err(ImageError::transition(from.as_str(), "importing"));
        }
        w.commit().await?;
        Ok(img)
    }

    async fn import_steps(&self, id: &str, method: &ImportMethod) -> Result<()> {
        let img = self.to_importing(id).await?;
        if let ImportMethod::WebDownload { uri } = method {
            self.fetch_to_staging(id, uri).await?;
        }
        let staged = self.store.staging_path(id);
        let virtual_size = self
            .check_format(&img, &staged)
            .await
            .map_err(|e| match e {
                InspectError::Failed(m) => ImageError::Internal(m),
                other => ImageError::bad(other.to_string()),
            })?;
        let (size, md5, sha512) = self.store.hash_staged(id).await?;
        if size > self.cfg.image_size_cap {
            return Err(self.too_large(format!("{size} bytes")));
        }
        self.store.promote_staged(id).await?;
        let received = Received {
            temp: staged,
            size,
            md5,
            sha512,
        };
        self.activate(id, Status::Importing, &received, virtual_size, |img| {
            img.properties.remove(IMPORT_LOCK);
            img.properties.insert(
                "os_glance_importing_to_stores".into(),
                Value::String(String::new()),
            );
        })
        .await
    }

    async fn fetch_to_staging(&self, id: &str, uri: &str) -> Result<()> {
        let filter_ok = {
            let me = self.cfg.import_filter.clone();
            move |u: &reqwest::Url| {
                let port = u.port_or_known_default().unwrap_or(0);
                let host = u.host_str().unwrap_or("");
                (me.allowed_schemes.is_empty()
                    || me.allowed_schemes.iter().any(|s| s == u.scheme()))
                    && (me.allowed_hosts.is_empty() || me.allowed_hosts.iter().any(|h| h == host))
                    && !me.disallowed_hosts.iter().any(|h| h == host)
                    && (me.allowed_ports.is_empty() || me.allowed_ports.contains(&port))
                    && !me.disallowed_ports.contains(&port)
            }
        };
        // Redirects are followed only to URLs that pass the same filter.
        let policy = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() > 5 {
                attempt.error("too many redirects")
            } else if filter_ok(attempt.url()) {
                attempt.follow()
            } else {
                attempt.error("redirect to a URL that does not pass filtering")
            }
        });
        let client = reqwest::Client::builder()
            .redirect(policy)
            .connect_timeout(std::time::Duration::from_secs(30))
            // A server that stops sending must not keep the image importing forever.
            .read_timeout(std::time::Duration::from_secs(120))
            .build()
            .map_err(|e| ImageError::Internal(e.to_string()))?;
        let resp = client
            .get(uri)
            .send()
            .await
            .map_err(|e| ImageError::bad(format!("Cannot fetch {uri}: {e}")))?;
        if !resp.status().is_success() {
            return Err(ImageError::bad(format!(
                "Cannot fetch {uri}: HTTP {}",
                resp.status()
            )));
        }
        let stream = resp.bytes_stream().boxed();
        let received = self
            .store
            .receive(id, true, stream, self.cfg.image_size_cap)
            .await
            .map_err(|e| self.receive_error(e))?;
        if let Err(e) = self.store.commit(&received, id, true).await {
            let _ = std::fs::remove_file(&received.temp);
            return Err(e.into());
        }
        Ok(())
    }

    // ------------------------------------------------------------ tasks

    /// `GET /v2/images/{id}/tasks`.
    pub async fn image_tasks(&self, ctx: &AuthContext, id: &str) -> Result<Vec<Task>> {
        let c = self.db.conn();
        let img = self.lookup(c, ctx, id).await?;
        self.enforce_on(ctx, &img, "get_image")?;
        Ok(store::list_tasks(c, Utc::now(), Some(id), None, None, false).await?)
    }

    fn task_visible(&self, ctx: &AuthContext, t: &Task) -> bool {
        self.is_admin(ctx) || t.owner.as_deref() == ctx.project_id()
    }

    /// `GET /v2/tasks`.
    pub async fn list_tasks(
        &self,
        ctx: &AuthContext,
        status: Option<TaskStatus>,
        task_type: Option<&str>,
        ascending: bool,
    ) -> Result<Vec<Task>> {
        let target = json!({"project_id": ctx.project_id()});
        self.authorize(ctx, "tasks_api_access", &target)?;
        self.authorize(ctx, "get_tasks", &target)?;
        Ok(store::list_tasks(
            self.db.conn(),
            Utc::now(),
            None,
            status,
            task_type,
            ascending,
        )
        .await?
        .into_iter()
        .filter(|t| self.task_visible(ctx, t))
        .collect())
    }

    /// `GET /v2/tasks/{id}`.
    pub async fn get_task(&self, ctx: &AuthContext, id: &str) -> Result<Task> {
        let target = json!({"project_id": ctx.project_id()});
        self.authorize(ctx, "tasks_api_access", &target)?;
        self.authorize(ctx, "get_task", &target)?;
        match store::get_task(self.db.conn(), id).await? {
            Some(t) if self.task_visible(ctx, &t) => Ok(t),
            _ => Err(ImageError::not_found(format!(
                "Task with identifier {id} not found"
            ))),
        }
    }
}
