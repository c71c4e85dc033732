//! Image metadata: create, list, show, JSON-patch updates, delete, (de)activation, tags,
//! members.

use chrono::{DateTime, Utc};
use common::auth::AuthContext;
use serde_json::{Value, json};
use std::collections::BTreeSet;

use super::{IMPORT_LOCK, ImageService, RESERVED_NAMESPACE};
use crate::error::{ImageError, Result};
use crate::model::*;
use crate::store::{self, ColFilter, ImageCol, ListQuery, Viewer};

/// A validated `POST /v2/images` body.
#[derive(Debug, Clone, Default)]
pub struct CreateRequest {
    pub id: Option<String>,
    pub name: Option<String>,
    pub visibility: Option<Visibility>,
    pub owner: Option<Option<String>>,
    pub disk_format: Option<String>,
    pub container_format: Option<String>,
    pub min_disk: Option<i64>,
    pub min_ram: Option<i64>,
    pub protected: Option<bool>,
    pub os_hidden: Option<bool>,
    pub tags: Vec<String>,
    pub properties: Properties,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeOp {
    Add,
    Replace,
    Remove,
}

/// One JSON-patch operation on an image, its path already decoded to the attribute name.
#[derive(Debug, Clone)]
pub struct Change {
    pub op: ChangeOp,
    pub path: String,
    pub value: Value,
    /// `application/openstack-images-v2.0-json-patch` (draft 4): `add` of an existing
    /// attribute is a conflict.
    pub draft4: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    Name,
    Status,
    ContainerFormat,
    DiskFormat,
    Size,
    Id,
    CreatedAt,
    UpdatedAt,
}

impl SortKey {
    pub const NAMES: &'static str =
        "name, status, container_format, disk_format, size, id, created_at, updated_at";
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "name" => SortKey::Name,
            "status" => SortKey::Status,
            "container_format" => SortKey::ContainerFormat,
            "disk_format" => SortKey::DiskFormat,
            "size" => SortKey::Size,
            "id" => SortKey::Id,
            "created_at" => SortKey::CreatedAt,
            "updated_at" => SortKey::UpdatedAt,
            _ => return None,
        })
    }
    fn col(self) -> ImageCol {
        match self {
            SortKey::Name => ImageCol::Name,
            SortKey::Status => ImageCol::Status,
            SortKey::ContainerFormat => ImageCol::ContainerFormat,
            SortKey::DiskFormat => ImageCol::DiskFormat,
            SortKey::Size => ImageCol::Size,
            SortKey::Id => ImageCol::Id,
            SortKey::CreatedAt => ImageCol::CreatedAt,
            SortKey::UpdatedAt => ImageCol::UpdatedAt,
        }
    }
}

/// A parsed `GET /v2/images` query.
#[derive(Debug, Clone, Default)]
pub struct ListParams {
    pub limit: Option<u64>,
    pub marker: Option<String>,
    /// `None`: `member_status=all`.
    pub member_status: Option<MemberStatus>,
    pub visibility: Option<Option<Visibility>>,
    pub filters: Vec<ColFilter>,
    pub tags: Vec<String>,
    pub properties: Vec<(String, String)>,
    /// (key, ascending)
    pub sort: Vec<(SortKey, bool)>,
}

pub struct ListResult {
    pub images: Vec<Image>,
    pub next_marker: Option<String>,
}

fn now() -> DateTime<Utc> {
    Utc::now()
}

fn quota_exceeded(kind: &str, limit: i64, n: usize) -> Option<ImageError> {
    (limit >= 0 && n as i64 > limit).then(|| {
        ImageError::TooLarge(format!(
            "Maximum number of {kind} exceeded: {n} > {limit} allowed."
        ))
    })
}

impl ImageService {
    fn check_formats(&self, disk: Option<&str>, container: Option<&str>) -> Result<()> {
        if let Some(d) = disk
            && !self.cfg.disk_formats.iter().any(|f| f == d)
        {
            return Err(ImageError::bad(format!(
                "Provided object does not match schema 'image': '{d}' is not one of {}",
                py_list(&self.cfg.disk_formats)
            )));
        }
        if let Some(c) = container
            && !self.cfg.container_formats.iter().any(|f| f == c)
        {
            return Err(ImageError::bad(format!(
                "Provided object does not match schema 'image': '{c}' is not one of {}",
                py_list(&self.cfg.container_formats)
            )));
        }
        Ok(())
    }

    fn check_reserved(key: &str) -> Result<()> {
        if matches!(key, "location" | "deleted" | "deleted_at")
            || key.starts_with(RESERVED_NAMESPACE)
        {
            return Err(ImageError::forbidden(format!(
                "Attribute '{key}' is reserved."
            )));
        }
        Ok(())
    }

    fn check_quotas(&self, img: &Image) -> Result<()> {
        let props = img
            .properties
            .keys()
            .filter(|k| !k.starts_with(RESERVED_NAMESPACE))
            .count();
        if let Some(e) = quota_exceeded("properties", self.cfg.image_property_quota, props) {
            return Err(e);
        }
        if let Some(e) = quota_exceeded("tags", self.cfg.image_tag_quota, img.tags.len()) {
            return Err(e);
        }
        Ok(())
    }

    /// `POST /v2/images`.
    pub async fn create(&self, ctx: &AuthContext, req: CreateRequest) -> Result<Image> {
        self.check_formats(req.disk_format.as_deref(), req.container_format.as_deref())?;
        for k in req.properties.keys() {
            Self::check_reserved(k)?;
        }
        let owner = match &req.owner {
            Some(o) => o.clone(),
            None => ctx.project_id().map(str::to_string),
        };
        let visibility = req.visibility.unwrap_or(Visibility::Shared);
        let target =
            json!({"project_id": owner, "owner": owner, "visibility": visibility.as_str()});
        if let Err(e) = self.authorize(ctx, "add_image", &target) {
            if owner.as_deref() != ctx.project_id() {
                return Err(ImageError::forbidden(format!(
                    "You are not permitted to create images owned by '{}'",
                    owner.as_deref().unwrap_or("None")
                )));
            }
            return Err(e);
        }
        self.enforce_visibility(ctx, visibility, &target)?;
        for v in [req.min_disk, req.min_ram].into_iter().flatten() {
            if v < 0 {
                return Err(ImageError::bad(format!(
                    "Invalid value '{v}' for parameter '{}': Cannot be a negative value",
                    if Some(v) == req.min_disk {
                        "min_disk"
                    } else {
                        "min_ram"
                    }
                )));
            }
        }
        let t = now();
        let img = Image {
            id: req.id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            name: req.name,
            status: Status::Queued,
            visibility,
            owner,
            disk_format: req.disk_format,
            container_format: req.container_format,
            size: None,
            virtual_size: None,
            checksum: None,
            os_hash_algo: None,
            os_hash_value: None,
            min_disk: req.min_disk.unwrap_or(0),
            min_ram: req.min_ram.unwrap_or(0),
            protected: req.protected.unwrap_or(false),
            os_hidden: req.os_hidden.unwrap_or(false),
            created_at: t,
            updated_at: t,
            properties: req.properties,
            tags: req.tags.into_iter().collect(),
        };
        self.check_quotas(&img)?;
        let w = self.db.write().await?;
        if store::get_image(&*w, &img.id).await?.is_some() {
            return Err(ImageError::conflict(format!(
                "Image with identifier {} already exists!",
                img.id
            )));
        }
        store::insert_image(&*w, &img).await?;
        w.commit().await?;
        Ok(img)
    }

    /// Making an image public needs `publicize_image`, community `communitize_image`.
    fn enforce_visibility(&self, ctx: &AuthContext, v: Visibility, target: &Value) -> Result<()> {
        match v {
            Visibility::Public => self.authorize(ctx, "publicize_image", target),
            Visibility::Community => self.authorize(ctx, "communitize_image", target),
            _ => Ok(()),
        }
    }

    /// `GET /v2/images`: one page, and the marker of the next one when the page is full.
    pub async fn list(&self, ctx: &AuthContext, p: ListParams) -> Result<ListResult> {
        let project = ctx.project_id().map(str::to_string);
        self.authorize(ctx, "get_images", &json!({"project_id": project}))?;
        let conn = self.db.conn();
        let marker = match &p.marker {
            Some(m) => Some(
                self.lookup(conn, ctx, m)
                    .await
                    .map_err(|_| ImageError::bad(format!("No image found with ID {m}")))?,
            ),
            None => None,
        };
        let mut sort: Vec<(ImageCol, bool)> = p.sort.iter().map(|(k, a)| (k.col(), *a)).collect();
        let default_asc = sort.last().map(|(_, a)| *a).unwrap_or(false);
        for k in [ImageCol::CreatedAt, ImageCol::Id] {
            if !sort
                .iter()
                .any(|(c, _)| std::mem::discriminant(c) == std::mem::discriminant(&k))
            {
                sort.push((k, default_asc));
            }
        }
        let limit = p
            .limit
            .unwrap_or(self.cfg.limit_param_default)
            .min(self.cfg.api_limit_max);
        let post_filter = !p.tags.is_empty() || !p.properties.is_empty();
        let q = ListQuery {
            viewer: if self.is_admin(ctx) {
                Viewer::Admin {
                    project: project.clone(),
                }
            } else {
                Viewer::Project(project.clone())
            },
            member_status: p.member_status,
            visibility: p.visibility,
            filters: p.filters,
            sort,
            marker,
            limit: (!post_filter).then_some(limit),
        };
        let mut images = store::list_images(conn, &q).await?;
        if post_filter {
            images.retain(|i| {
                p.tags.iter().all(|t| i.tags.contains(t))
                    && p.properties
                        .iter()
                        .all(|(k, v)| i.properties.get(k).and_then(Value::as_str) == Some(v))
            });
            images.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        }
        let full = images.len() as u64 == limit && limit > 0;
        images.retain(|i| self.allowed(ctx, "get_image", &Self::target(ctx, i)));
        let next_marker = if full {
            images.last().map(|i| i.id.clone())
        } else {
            None
        };
        Ok(ListResult {
            images,
            next_marker,
        })
    }

    /// `PATCH /v2/images/{id}`.
    pub async fn update(&self, ctx: &AuthContext, id: &str, changes: Vec<Change>) -> Result<Image> {
        let is_admin = self.is_admin(ctx);
        let w = self.db.write().await?;
        let mut img = self.lookup(&*w, ctx, id).await?;
        let before = img.status;
        for ch in &changes {
            self.apply_change(ctx, &mut img, ch, is_admin)?;
        }
        if !changes.is_empty() {
            self.check_quotas(&img)?;
            img.updated_at = now();
            if !store::save_image_if(&*w, &img, before).await? {
                return Err(ImageError::image_not_found(id));
            }
            w.commit().await?;
        }
        Ok(img)
    }

    fn apply_change(
        &self,
        ctx: &AuthContext,
        img: &mut Image,
        ch: &Change,
        is_admin: bool,
    ) -> Result<()> {
        let name = ch.path.as_str();
        if name == "locations" {
            // kumo keeps image data in its own store and does not expose locations
            // (Glance with show_multiple_locations = False answers the same).
            return Err(ImageError::forbidden(
                "It's not allowed to update locations if locations are invisible.",
            ));
        }
        if ch.op == ChangeOp::Replace && name == "owner" && !is_admin {
            return Err(ImageError::forbidden(
                "Owner can't be updated by non admin.",
            ));
        }
        let target = Self::target(ctx, img);
        if name == "visibility"
            && let Some(v) = ch.value.as_str().and_then(Visibility::parse)
        {
            self.enforce_visibility(ctx, v, &target)?;
        }
        self.enforce_on(ctx, img, "modify_image")?;
        let is_base = matches!(
            name,
            "name"
                | "visibility"
                | "protected"
                | "os_hidden"
                | "owner"
                | "disk_format"
                | "container_format"
                | "min_disk"
                | "min_ram"
                | "tags"
        );
        match ch.op {
            ChangeOp::Remove => {
                if is_base {
                    return Err(ImageError::forbidden(format!(
                        "Property {name} may not be removed."
                    )));
                }
                if img.properties.remove(name).is_none() {
                    return Err(ImageError::conflict(format!(
                        "Property {name} does not exist."
                    )));
                }
            }
            ChangeOp::Add | ChangeOp::Replace => {
                if ch.op == ChangeOp::Add
                    && ch.draft4
                    && (is_base || img.properties.contains_key(name))
                {
                    return Err(ImageError::conflict(format!(
                        "Property {name} already present."
                    )));
                }
                if is_base {
                    self.set_base(img, name, &ch.value)?;
                } else if ch.op == ChangeOp::Replace && !img.properties.contains_key(name) {
                    return Err(ImageError::conflict(format!(
                        "Property {name} does not exist."
                    )));
                } else {
                    img.properties.insert(name.to_string(), ch.value.clone());
                }
            }
        }
        Ok(())
    }

    /// Set a base attribute; values were validated against the image schema by the API.
    fn set_base(&self, img: &mut Image, name: &str, v: &Value) -> Result<()> {
        let s = || v.as_str().map(str::to_string);
        match name {
            "name" => img.name = s(),
            "visibility" => {
                img.visibility = s().as_deref().and_then(Visibility::parse).ok_or_else(|| {
                    ImageError::bad(
                        "Visibility must be one of \"community\", \"public\", \"private\", or \"shared\"",
                    )
                })?
            }
            "protected" => img.protected = v.as_bool().unwrap_or(false),
            "os_hidden" => img.os_hidden = v.as_bool().unwrap_or(false),
            "owner" => img.owner = s(),
            "disk_format" | "container_format" => {
                if !matches!(img.status, Status::Queued | Status::Importing) {
                    return Err(ImageError::forbidden(format!(
                        "Attribute {name} can be only replaced for a queued image."
                    )));
                }
                if name == "disk_format" {
                    self.check_formats(s().as_deref(), None)?;
                    img.disk_format = s();
                } else {
                    self.check_formats(None, s().as_deref())?;
                    img.container_format = s();
                }
            }
            "min_disk" | "min_ram" => {
                let n = v.as_i64().unwrap_or(0);
                if n < 0 {
                    return Err(ImageError::bad(format!(
                        "Invalid value '{n}' for parameter '{name}': Cannot be a negative value"
                    )));
                }
                if name == "min_disk" {
                    img.min_disk = n;
                } else {
                    img.min_ram = n;
                }
            }
            "tags" => {
                img.tags = v
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|t| t.as_str().map(str::to_string))
                            .collect::<BTreeSet<_>>()
                    })
                    .unwrap_or_default();
            }
            _ => {}
        }
        Ok(())
    }

    /// `DELETE /v2/images/{id}`: from any status; the data goes with it.
    pub async fn delete(&self, ctx: &AuthContext, id: &str) -> Result<()> {
        let w = self.db.write().await?;
        let mut img = self
            .lookup(&*w, ctx, id)
            .await
            .map_err(|_| ImageError::not_found(format!("Failed to find image {id} to delete")))?;
        self.enforce_on(ctx, &img, "delete_image")?;
        if img.protected {
            return Err(ImageError::forbidden(format!(
                "Image {id} is protected and cannot be deleted."
            )));
        }
        let before = img.status;
        img.status = Status::Deleted;
        img.updated_at = now();
        img.properties.remove(IMPORT_LOCK);
        if !store::save_image_if(&*w, &img, before).await? {
            return Err(ImageError::not_found(format!(
                "Failed to find image {id} to delete"
            )));
        }
        store::delete_members_of(&*w, id).await?;
        w.commit().await?;
        // After the commit: a crash here leaves an orphan file, which the next start removes.
        self.store.remove_data(id);
        self.store.remove_staged(id);
        Ok(())
    }

    /// `POST /v2/images/{id}/actions/deactivate|reactivate`.
    pub async fn set_active(&self, ctx: &AuthContext, id: &str, active: bool) -> Result<()> {
        let w = self.db.write().await?;
        let mut img = self.lookup(&*w, ctx, id).await?;
        self.enforce_on(ctx, &img, if active { "reactivate" } else { "deactivate" })?;
        let (from, to) = if active {
            (Status::Deactivated, Status::Active)
        } else {
            (Status::Active, Status::Deactivated)
        };
        if img.status == to {
            return Ok(());
        }
        if img.status != from {
            return Err(ImageError::forbidden(format!(
                "Not allowed to {} image in status '{}'",
                if active { "reactivate" } else { "deactivate" },
                img.status.as_str()
            )));
        }
        img.status = to;
        img.updated_at = now();
        if !store::save_image_if(&*w, &img, from).await? {
            return Err(ImageError::transition(from.as_str(), to.as_str()));
        }
        w.commit().await?;
        Ok(())
    }

    /// `PUT /v2/images/{id}/tags/{tag}` and `DELETE` of the same.
    pub async fn set_tag(&self, ctx: &AuthContext, id: &str, tag: &str, add: bool) -> Result<()> {
        let w = self.db.write().await?;
        let mut img = self
            .lookup(&*w, ctx, id)
            .await
            .map_err(|_| ImageError::not_found(format!("Image {id} not found.")))?;
        self.enforce_on(ctx, &img, "modify_image")
            .map_err(|e| match e {
                ImageError::NotFound(_) => ImageError::not_found(format!("Image {id} not found.")),
                _ => ImageError::forbidden(format!(
                    "Not allowed to {} tags for image {id}.",
                    if add { "update" } else { "delete" }
                )),
            })?;
        let before = img.status;
        if add {
            if !img.tags.insert(tag.to_string()) {
                return Ok(());
            }
            if let Some(e) = quota_exceeded("tags", self.cfg.image_tag_quota, img.tags.len()) {
                return Err(ImageError::TooLarge(format!(
                    "Image tag limit exceeded for image {id}: {e}:"
                )));
            }
        } else if !img.tags.remove(tag) {
            return Err(ImageError::not_found("The resource could not be found."));
        }
        img.updated_at = now();
        if !store::save_image_if(&*w, &img, before).await? {
            return Err(ImageError::not_found(format!("Image {id} not found.")));
        }
        w.commit().await?;
        Ok(())
    }

    // ------------------------------------------------------------ members

    async fn member_image<C: sea_orm::ConnectionTrait>(
        &self,
        c: &C,
        ctx: &AuthContext,
        id: &str,
    ) -> Result<Image> {
        let img = self
            .lookup(c, ctx, id)
            .await
            .map_err(|_| ImageError::not_found(format!("Image {id} not found.")))?;
        if img.visibility != Visibility::Shared {
            return Err(ImageError::forbidden("Only shared images have members."));
        }
        Ok(img)
    }

    /// Member policies first need the image to be readable (Glance's MemberAPIPolicy).
    fn enforce_member(&self, ctx: &AuthContext, img: &Image, action: &str) -> Result<()> {
        self.enforce_on(ctx, img, "get_image")?;
        self.authorize(ctx, action, &Self::target(ctx, img))
    }

    /// Memberships the caller may see: all for the owner and admins, its own otherwise.
    fn member_visible(&self, ctx: &AuthContext, img: &Image, m: &Member) -> bool {
        self.is_admin(ctx)
            || img.owner.as_deref() == ctx.project_id()
            || Some(m.member_id.as_str()) == ctx.project_id()
    }

    pub async fn add_member(&self, ctx: &AuthContext, id: &str, member: &str) -> Result<Member> {
        let w = self.db.write().await?;
        let img = self.member_image(&*w, ctx, id).await.map_err(|e| match e {
            ImageError::Forbidden(_) => {
                ImageError::forbidden(format!("Not allowed to create members for image {id}."))
            }
            other => other,
        })?;
        self.enforce_member(ctx, &img, "add_member")
            .map_err(|e| match e {
                ImageError::NotFound(m) => ImageError::NotFound(m),
                _ => {
                    ImageError::forbidden(format!("Not allowed to create members for image {id}."))
                }
            })?;
        if store::get_member(&*w, id, member).await?.is_some() {
            return Err(ImageError::conflict(format!(
                "Member {member} is duplicated for image {id}"
            )));
        }
        let n = store::list_members(&*w, id).await?.len() + 1;
        if let Some(e) = quota_exceeded("image members", self.cfg.image_member_quota, n) {
            return Err(ImageError::TooLarge(format!(
                "Image member limit exceeded for image {id}: {e}:"
            )));
        }
        let t = now();
        let m = Member {
            image_id: id.to_string(),
            member_id: member.to_string(),
            status: MemberStatus::Pending,
            created_at: t,
            updated_at: t,
        };
        store::insert_member(&*w, &m).await?;
        w.commit().await?;
        Ok(m)
    }

    pub async fn list_members(&self, ctx: &AuthContext, id: &str) -> Result<Vec<Member>> {
        let c = self.db.conn();
        let img = self.member_image(c, ctx, id).await?;
        self.enforce_member(ctx, &img, "get_members")
            .map_err(|e| match e {
                ImageError::Forbidden(m) => ImageError::forbidden(format!(
                    "Not allowed to list members for image {id}: {m}"
                )),
                other => other,
            })?;
        Ok(store::list_members(c, id)
            .await?
            .into_iter()
            .filter(|m| self.member_visible(ctx, &img, m))
            .collect())
    }

    fn member_not_found(member: &str, id: &str) -> ImageError {
        ImageError::not_found(format!(
            "{member} not found in the member list of the image {id}."
        ))
    }

    pub async fn get_member(&self, ctx: &AuthContext, id: &str, member: &str) -> Result<Member> {
        let c = self.db.conn();
        // Glance answers 404 for anything it will not show here.
        let img = self
            .member_image(c, ctx, id)
            .await
            .map_err(|e| ImageError::not_found(e.to_string()))?;
        self.enforce_member(ctx, &img, "get_member")
            .map_err(|_| Self::member_not_found(member, id))?;
        match store::get_member(c, id, member).await? {
            Some(m) if self.member_visible(ctx, &img, &m) => Ok(m),
            _ => Err(Self::member_not_found(member, id)),
        }
    }

    pub async fn update_member(
        &self,
        ctx: &AuthContext,
        id: &str,
        member: &str,
        status: MemberStatus,
    ) -> Result<Member> {
        let w = self.db.write().await?;
        let img = self.member_image(&*w, ctx, id).await?;
        let mut m = match store::get_member(&*w, id, member).await? {
            Some(m) if self.member_visible(ctx, &img, &m) => m,
            _ => return Err(Self::member_not_found(member, id)),
        };
        self.enforce_member(ctx, &img, "modify_member")
            .map_err(|_| {
                ImageError::forbidden(format!("Not allowed to update members for image {id}."))
            })?;
        m.status = status;
        m.updated_at = now();
        store::update_member(&*w, &m).await?;
        w.commit().await?;
        Ok(m)
    }

    pub async fn delete_member(&self, ctx: &AuthContext, id: &str, member: &str) -> Result<()> {
        let w = self.db.write().await?;
        let img = self.member_image(&*w, ctx, id).await?;
        match store::get_member(&*w, id, member).await? {
            Some(m) if self.member_visible(ctx, &img, &m) => {}
            _ => return Err(Self::member_not_found(member, id)),
        }
        self.enforce_member(ctx, &img, "delete_member")
            .map_err(|_| {
                ImageError::forbidden(format!("Not allowed to delete members for image {id}."))
            })?;
        store::delete_member(&*w, id, member).await?;
        w.commit().await?;
        Ok(())
    }
}

/// A list as Python prints it, for Glance-worded schema errors.
pub(crate) fn py_list(items: &[String]) -> String {
    let inner: Vec<String> = items.iter().map(|i| format!("'{i}'")).collect();
    format!("[{}]", inner.join(", "))
}
