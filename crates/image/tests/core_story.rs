//! The image core without HTTP: policy and visibility across projects, the upload state
//! machine, and recovery after a crash in the middle of a transfer.

#![allow(clippy::unwrap_used)] // a test crate: a failed unwrap is a failed test

use bytes::Bytes;
use chrono::Utc;
use common::auth::{AuthContext, RoleRef, Scope};
use image::ImageService;
use image::config::ImageConfig;
use image::core::{Change, ChangeOp, CreateRequest, ListParams, SortKey};
use image::error::ImageError;
use image::model::*;
use serde_json::json;
use std::sync::Arc;

fn ctx(project: &str, roles: &[&str]) -> AuthContext {
    AuthContext {
        user_id: format!("user-{project}"),
        user_name: format!("user-{project}"),
        user_domain_id: "default".into(),
        user_domain_name: "Default".into(),
        scope: Scope::Project {
            id: project.into(),
            name: project.into(),
            domain_id: "default".into(),
            domain_name: "Default".into(),
        },
        roles: roles
            .iter()
            .map(|r| RoleRef {
                id: r.to_string(),
                name: r.to_string(),
            })
            .collect(),
        methods: vec!["password".into()],
        audit_ids: vec![],
        issued_at: Utc::now(),
        expires_at: Utc::now(),
        app_cred: None,
        is_admin_project: false,
    }
}

fn member(p: &str) -> AuthContext {
    ctx(p, &["member", "reader"])
}

async fn open(dir: &std::path::Path) -> Arc<ImageService> {
    let mut cfg = ImageConfig::defaults(dir);
    cfg.require_image_format_match = false;
    ImageService::open(cfg).await.unwrap()
}

fn body(data: &'static [u8]) -> impl futures::Stream<Item = Result<Bytes, String>> + Unpin {
    futures::stream::iter(vec![Ok(Bytes::from_static(data))])
}

fn raw_image(name: &str) -> CreateRequest {
    CreateRequest {
        name: Some(name.into()),
        disk_format: Some("raw".into()),
        container_format: Some("bare".into()),
        ..Default::default()
    }
}

fn list_all() -> ListParams {
    ListParams {
        member_status: Some(MemberStatus::Accepted),
        sort: vec![(SortKey::CreatedAt, false)],
        ..Default::default()
    }
}

#[tokio::test]
async fn visibility_sharing_and_policy() {
    let d = tempfile::tempdir().unwrap();
    let svc = open(d.path()).await;
    let (a, b) = (member("a"), member("b"));
    let img = svc.create(&a, raw_image("x")).await.unwrap();
    assert_eq!(img.visibility, Visibility::Shared, "Glance's default");
    assert!(matches!(
        svc.get(&b, &img.id).await,
        Err(ImageError::NotFound(_))
    ));
    // creating for another project is refused
    let mut other = raw_image("y");
    other.owner = Some(Some("b".into()));
    assert!(matches!(
        svc.create(&a, other).await,
        Err(ImageError::Forbidden(_))
    ));
    // a reader may not create
    assert!(
        svc.create(&ctx("a", &["reader"]), raw_image("z"))
            .await
            .is_err()
    );

    svc.add_member(&a, &img.id, "b").await.unwrap();
    assert_eq!(svc.get(&b, &img.id).await.unwrap().id, img.id);
    assert!(svc.list(&b, list_all()).await.unwrap().images.is_empty());
    // the owner cannot accept for b; b can, and then lists it
    assert!(
        svc.update_member(&a, &img.id, "b", MemberStatus::Accepted)
            .await
            .is_err()
    );
    svc.update_member(&b, &img.id, "b", MemberStatus::Accepted)
        .await
        .unwrap();
    assert_eq!(svc.list(&b, list_all()).await.unwrap().images.len(), 1);
    // b may read but not change it
    let rename = vec![Change {
        op: ChangeOp::Replace,
        path: "name".into(),
        value: json!("mine"),
        draft4: false,
    }];
    assert!(matches!(
        svc.update(&b, &img.id, rename.clone()).await,
        Err(ImageError::Forbidden(_))
    ));
    assert_eq!(
        svc.update(&a, &img.id, rename)
            .await
            .unwrap()
            .name
            .as_deref(),
        Some("mine")
    );
    // public needs an admin
    let public = vec![Change {
        op: ChangeOp::Replace,
        path: "visibility".into(),
        value: json!("public"),
        draft4: false,
    }];
    assert!(svc.update(&a, &img.id, public.clone()).await.is_err());
    let admin = ctx("admin-project", &["admin", "member", "reader"]);
    svc.update(&admin, &img.id, public).await.unwrap();
    assert_eq!(
        svc.list(&member("c"), list_all())
            .await
            .unwrap()
            .images
            .len(),
        1
    );
}

#[tokio::test]
async fn upload_state_machine() {
    let d = tempfile::tempdir().unwrap();
    let svc = open(d.path()).await;
    let a = member("a");
    let img = svc.create(&a, raw_image("x")).await.unwrap();
    svc.upload(&a, &img.id, Some(5), body(b"hello"))
        .await
        .unwrap();
    let got = svc.get(&a, &img.id).await.unwrap();
    assert_eq!(got.status, Status::Active);
    assert_eq!(got.size, Some(5));
    assert_eq!(
        got.checksum.as_deref(),
        Some("5d41402abc4b2a76b9719d911017c592")
    );
    assert_eq!(got.os_hash_algo.as_deref(), Some("sha512"));
    assert!(matches!(
        svc.upload(&a, &img.id, None, body(b"again")).await,
        Err(ImageError::Conflict(_))
    ));
    // deactivated: owner cannot download, admin can
    svc.set_active(&a, &img.id, false).await.unwrap();
    assert!(matches!(
        svc.download(&a, &img.id).await,
        Err(ImageError::Forbidden(_))
    ));
    svc.set_active(&a, &img.id, true).await.unwrap();
    assert_eq!(svc.download(&a, &img.id).await.unwrap().size, Some(5));
    svc.delete(&a, &img.id).await.unwrap();
    assert!(!svc.store().data_path(&img.id).exists());
    assert!(matches!(
        svc.upload(&a, &img.id, None, body(b"late")).await,
        Err(ImageError::NotFound(_))
    ));
    // a source that breaks puts the image back to queued
    let img = svc.create(&a, raw_image("y")).await.unwrap();
    let broken = futures::stream::iter(vec![
        Ok(Bytes::from_static(b"abc")),
        Err("reset".to_string()),
    ]);
    assert!(svc.upload(&a, &img.id, None, broken).await.is_err());
    assert_eq!(svc.get(&a, &img.id).await.unwrap().status, Status::Queued);
}

#[tokio::test]
async fn recovery_after_a_crash_mid_upload() {
    let d = tempfile::tempdir().unwrap();
    let (id, staged_id) = {
        let svc = open(d.path()).await;
        let a = member("a");
        let img = svc.create(&a, raw_image("x")).await.unwrap();
        // what a kill -9 leaves: the image claimed (saving), a partial temporary file
        let w = svc.database().write().await.unwrap();
        let mut saving = img.clone();
        saving.status = Status::Saving;
        image::store::save_image_if(&*w, &saving, Status::Queued)
            .await
            .unwrap();
        w.commit().await.unwrap();
        std::fs::write(
            svc.store().dir().join(format!(".{}.x.part", img.id)),
            b"partial",
        )
        .unwrap();
        // and a staged image whose import was running
        let st = svc.create(&a, raw_image("y")).await.unwrap();
        svc.stage(&a, &st.id, None, body(b"staged")).await.unwrap();
        let w = svc.database().write().await.unwrap();
        let mut importing = svc.get(&a, &st.id).await.unwrap();
        let from = importing.status;
        importing.status = Status::Importing;
        image::store::save_image_if(&*w, &importing, from)
            .await
            .unwrap();
        w.commit().await.unwrap();
        // an orphan data file (crash between rename and commit)
        std::fs::write(svc.store().data_path("orphan"), b"x").unwrap();
        (img.id, st.id)
    };
    let svc = open(d.path()).await;
    let a = member("a");
    let img = svc.get(&a, &id).await.unwrap();
    assert_eq!(img.status, Status::Queued);
    assert_eq!(img.size, None);
    let names: Vec<String> = std::fs::read_dir(svc.store().dir())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names.iter().any(|n| n.ends_with(".part") || n == "orphan"),
        "{names:?}"
    );
    assert_eq!(
        svc.get(&a, &staged_id).await.unwrap().status,
        Status::Uploading,
        "complete staged data can still be imported"
    );
    svc.upload(&a, &id, None, body(b"again")).await.unwrap();
    assert_eq!(svc.get(&a, &id).await.unwrap().status, Status::Active);
}
