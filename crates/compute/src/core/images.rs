//! Nova's image proxy (`/images`, below microversion 2.36): the image service's images with
//! the caller's token, in Nova's internal form (`nova/image/glance.py`: the image service's
//! own attributes at the top, every other one under `properties`). No HTTP here.

use reqwest::{Method, StatusCode};
use serde_json::{Map, Value, json};

use super::ComputeService;
use crate::error::{ComputeError, Result};

/// The attributes of the image service's image schema; the rest are properties.
const BASE_ATTRIBUTES: &[&str] = &[
    "id",
    "name",
    "status",
    "visibility",
    "protected",
    "os_hidden",
    "checksum",
    "os_hash_algo",
    "os_hash_value",
    "owner",
    "size",
    "virtual_size",
    "container_format",
    "disk_format",
    "created_at",
    "updated_at",
    "tags",
    "direct_url",
    "locations",
    "min_ram",
    "min_disk",
    "self",
    "file",
    "schema",
    "stores",
];

/// An image-service image in Nova's internal form: `id`, `name`, `status`, `min_ram`,
/// `min_disk`, `size`, `created_at`, `updated_at` and `properties`.
pub fn nova_image(image: &Value) -> Value {
    let mut properties = Map::new();
    if let Some(o) = image.as_object() {
        for (k, v) in o {
            if !BASE_ATTRIBUTES.contains(&k.as_str()) {
                properties.insert(k.clone(), v.clone());
            }
        }
    }
    json!({
        "id": image["id"],
        "name": image["name"],
        "status": image["status"],
        "min_ram": image["min_ram"],
        "min_disk": image["min_disk"],
        "size": if image["size"].is_null() { json!(0) } else { image["size"].clone() },
        "created_at": image["created_at"],
        "updated_at": image["updated_at"],
        "properties": properties,
    })
}

/// The filters Nova passes on (`SUPPORTED_FILTERS`, `property-*`) as the image service's
/// query, with `limit` and `marker`.
pub fn image_query(pairs: &[(String, String)]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (k, v) in pairs {
        let (key, value) = match k.as_str() {
            "name" => ("name".to_string(), v.clone()),
            "status" => ("status".to_string(), v.to_lowercase()),
            // the server's id, or its URL
            "server" => (
                "instance_uuid".to_string(),
                v.rsplit('/').next().unwrap_or(v).to_string(),
            ),
            "type" => ("image_type".to_string(), v.clone()),
            "limit" | "marker" => (k.clone(), v.clone()),
            other => match other.strip_prefix("property-") {
                Some(p) if !p.is_empty() => (p.to_string(), v.clone()),
                _ => continue,
            },
        };
        out.retain(|(k2, _): &(String, String)| *k2 != key);
        out.push((key, value));
    }
    out
}

fn image_not_found() -> ComputeError {
    ComputeError::NotFound("Image not found.".into())
}

impl ComputeService {
    /// `GET /images/{id}`.
    pub async fn proxy_image(&self, token: &str, request_id: &str, id: &str) -> Result<Value> {
        let image = self
            .clients()?
            .image_get(token, id, request_id)
            .await?
            .ok_or_else(image_not_found)?;
        Ok(nova_image(&image))
    }

    /// `DELETE /images/{id}`.
    pub async fn proxy_image_delete(&self, token: &str, request_id: &str, id: &str) -> Result<()> {
        let a = self
            .clients()?
            .image(
                Method::DELETE,
                &format!("/v2/images/{id}"),
                token,
                request_id,
            )
            .await?;
        match a.status {
            s if s.is_success() => Ok(()),
            StatusCode::NOT_FOUND | StatusCode::BAD_REQUEST => Err(image_not_found()),
            StatusCode::FORBIDDEN => Err(ComputeError::Forbidden(
                "You are not allowed to delete the image.".into(),
            )),
            s => Err(ComputeError::Upstream {
                service: "image",
                message: format!("deleting image {id}: {s}"),
            }),
        }
    }

    /// `GET /images` and `/images/detail`: the images the caller sees, filtered; every page
    /// of the image service's list, up to `limit`.
    pub async fn proxy_images(
        &self,
        token: &str,
        request_id: &str,
        pairs: &[(String, String)],
        limit: Option<usize>,
    ) -> Result<Vec<Value>> {
        let query = image_query(pairs);
        let mut path = "/v2/images".to_string();
        if !query.is_empty() {
            let q = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(query)
                .finish();
            path = format!("{path}?{q}");
        }
        let mut out = Vec::new();
        // a bound on the pages followed, should the image service keep answering `next`
        for _ in 0..1000 {
            let a = self
                .clients()?
                .image(Method::GET, &path, token, request_id)
                .await?;
            match a.status {
                s if s.is_success() => {}
                StatusCode::BAD_REQUEST => {
                    return Err(ComputeError::bad(
                        a.body["message"]
                            .as_str()
                            .unwrap_or("Invalid image filter")
                            .to_string(),
                    ));
                }
                s => {
                    return Err(ComputeError::Upstream {
                        service: "image",
                        message: format!("listing images: {s}"),
                    });
                }
            }
            out.extend(
                a.body["images"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(nova_image),
            );
            if let Some(l) = limit
                && out.len() >= l
            {
                out.truncate(l);
                break;
            }
            match a.body["next"].as_str() {
                Some(next) if !next.is_empty() => path = next.to_string(),
                _ => break,
            }
        }
        Ok(out)
    }

    /// The image service's public URL (for the `alternate` links).
    pub async fn image_endpoint(&self) -> Result<String> {
        self.clients()?.image_endpoint().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_are_the_non_schema_attributes() {
        let g = json!({"id": "i", "name": "n", "status": "active", "min_ram": 0, "min_disk": 1,
            "size": null, "visibility": "private", "image_type": "snapshot",
            "instance_uuid": "s", "created_at": "2026-01-01T00:00:00Z", "tags": []});
        let n = nova_image(&g);
        assert_eq!(n["size"], 0);
        assert_eq!(
            n["properties"],
            json!({"image_type": "snapshot", "instance_uuid": "s"})
        );
    }

    #[test]
    fn filters_as_nova_maps_them() {
        let p = |k: &str, v: &str| (k.to_string(), v.to_string());
        let q = image_query(&[
            p("status", "ACTIVE"),
            p("server", "http://x/v2.1/servers/abc"),
            p("type", "snapshot"),
            p("property-os_distro", "debian"),
            p("sort", "name"),
            p("limit", "2"),
        ]);
        assert_eq!(
            q,
            vec![
                p("status", "active"),
                p("instance_uuid", "abc"),
                p("image_type", "snapshot"),
                p("os_distro", "debian"),
                p("limit", "2"),
            ]
        );
    }
}
