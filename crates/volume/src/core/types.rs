//! Volume types and their extra specs (`volume_backend_name` picks the backend).

use common::auth::AuthContext;

use super::*;
use crate::model::Metadata;

impl VolumeService {
    /// The default type (`[volume] default_volume_type`), made at start if missing.
    pub(crate) async fn ensure_default_type(&self) -> Result<()> {
        let w = self.db.write().await?;
        let types: Vec<VolumeType> = self.all(&*w, KIND_TYPE).await?;
        if !types.iter().any(|t| t.name == self.cfg.default_volume_type) {
            let t = VolumeType {
                id: uuid::Uuid::new_v4().to_string(),
                name: self.cfg.default_volume_type.clone(),
                description: Some("Default Volume Type".into()),
                is_public: true,
                extra_specs: Metadata::new(),
                projects: vec![],
            };
            store::insert(
                &*w,
                store::NewRow {
                    kind: KIND_TYPE,
                    id: &t.id,
                    project_id: "",
                    parent_id: None,
                    created_at: &now().to_rfc3339(),
                    body: to_body(&t)?,
                },
            )
            .await?;
        }
        w.commit().await?;
        Ok(())
    }

    fn type_visible(&self, ctx: &AuthContext, t: &VolumeType) -> bool {
        t.is_public
            || self.is_admin(ctx)
            || ctx
                .project_id()
                .is_some_and(|p| t.projects.iter().any(|x| x == p))
    }

    pub async fn list_types(
        &self,
        ctx: &AuthContext,
        is_public: Option<bool>,
    ) -> Result<Vec<VolumeType>> {
        let mut types: Vec<VolumeType> = self.all(self.db.conn(), KIND_TYPE).await?;
        types.retain(|t| self.type_visible(ctx, t));
        if let Some(p) = is_public
            && self.is_admin(ctx)
        {
            types.retain(|t| t.is_public == p);
        }
        Ok(types)
    }

    /// A type by id, or `default`.
    pub async fn get_type(&self, ctx: &AuthContext, id: &str) -> Result<VolumeType> {
        let types: Vec<VolumeType> = self.all(self.db.conn(), KIND_TYPE).await?;
        let t = if id == "default" {
            self.default_type(&types)?
        } else {
            types
                .into_iter()
                .find(|t| t.id == id)
                .ok_or_else(|| VolumeError::type_not_found(id))?
        };
        if !self.type_visible(ctx, &t) {
            return Err(VolumeError::type_not_found(id));
        }
        Ok(t)
    }

    fn admin_types(&self, ctx: &AuthContext, action: &str) -> Result<()> {
        let p = ctx.project_id().unwrap_or_default().to_string();
        self.authorize(ctx, action, &p)
    }

    pub async fn create_type(
        &self,
        ctx: &AuthContext,
        name: String,
        description: Option<String>,
        is_public: bool,
        extra_specs: Metadata,
    ) -> Result<VolumeType> {
        self.admin_types(ctx, "volume_extension:types_manage")?;
        let w = self.db.write().await?;
        let types: Vec<VolumeType> = self.all(&*w, KIND_TYPE).await?;
        if types.iter().any(|t| t.name == name) {
            return Err(VolumeError::Conflict(format!(
                "Volume Type {name} already exists."
            )));
        }
        let t = VolumeType {
            id: uuid::Uuid::new_v4().to_string(),
            name,
            description,
            is_public,
            extra_specs,
            projects: vec![],
        };
        store::insert(
            &*w,
            store::NewRow {
                kind: KIND_TYPE,
                id: &t.id,
                project_id: "",
                parent_id: None,
                created_at: &now().to_rfc3339(),
                body: to_body(&t)?,
            },
        )
        .await?;
        w.commit().await?;
        Ok(t)
    }

    pub async fn update_type(
        &self,
        ctx: &AuthContext,
        id: &str,
        name: Option<String>,
        description: Option<Option<String>>,
        is_public: Option<bool>,
    ) -> Result<VolumeType> {
        self.admin_types(ctx, "volume_extension:types_manage")?;
        let w = self.db.write().await?;
        let types: Vec<VolumeType> = self.all(&*w, KIND_TYPE).await?;
        let mut t = types
            .iter()
            .find(|t| t.id == id)
            .cloned()
            .ok_or_else(|| VolumeError::type_not_found(id))?;
        if let Some(n) = name {
            if types.iter().any(|o| o.name == n && o.id != id) {
                return Err(VolumeError::Conflict(format!(
                    "Volume Type {n} already exists."
                )));
            }
            t.name = n;
        }
        if let Some(d) = description {
            t.description = d;
        }
        if let Some(p) = is_public {
            t.is_public = p;
        }
        store::update(&*w, id, to_body(&t)?).await?;
        w.commit().await?;
        Ok(t)
    }

    pub async fn delete_type(&self, ctx: &AuthContext, id: &str) -> Result<()> {
        self.admin_types(ctx, "volume_extension:types_manage")?;
        let w = self.db.write().await?;
        let types: Vec<VolumeType> = self.all(&*w, KIND_TYPE).await?;
        let t = types
            .iter()
            .find(|t| t.id == id)
            .ok_or_else(|| VolumeError::type_not_found(id))?;
        if t.name == self.cfg.default_volume_type {
            return Err(VolumeError::bad(
                "Invalid volume type: Default volume type can not be deleted.",
            ));
        }
        let vols: Vec<Volume> = self.all(&*w, KIND_VOLUME).await?;
        if vols.iter().any(|v| v.volume_type_id == id) {
            return Err(VolumeError::bad(format!(
                "Target volume type is still in use. Volume Type {id} deletion is not allowed with volumes present with the type."
            )));
        }
        store::delete(&*w, id).await?;
        w.commit().await?;
        Ok(())
    }

    /// Extra specs: merge `specs` in (POST / PUT of one key), or remove `remove`.
    pub async fn set_extra_specs(
        &self,
        ctx: &AuthContext,
        id: &str,
        specs: Metadata,
        remove: Option<&str>,
    ) -> Result<Metadata> {
        self.admin_types(ctx, "volume_extension:types_extra_specs:create")?;
        let w = self.db.write().await?;
        let types: Vec<VolumeType> = self.all(&*w, KIND_TYPE).await?;
        let mut t = types
            .into_iter()
            .find(|t| t.id == id)
            .ok_or_else(|| VolumeError::type_not_found(id))?;
        if let Some(k) = remove
            && t.extra_specs.remove(k).is_none()
        {
            return Err(VolumeError::NotFound(format!(
                "Volume Type {id} has no extra specs with key {k}."
            )));
        }
        t.extra_specs.extend(specs);
        store::update(&*w, id, to_body(&t)?).await?;
        w.commit().await?;
        Ok(t.extra_specs)
    }
}
