//! `/v2/schemas/*`: the JSON schemas Glance's clients fetch (python-glanceclient builds its
//! models from them). Same properties, types and constraints as Glance's; descriptions ours.

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use serde_json::{Value, json};

use super::{Api, json_ok};

pub fn routes() -> Router<Api> {
    Router::new()
        .route("/schemas/image", get(image))
        .route("/schemas/images", get(images))
        .route("/schemas/member", get(member))
        .route("/schemas/members", get(members))
        .route("/schemas/task", get(task))
        .route("/schemas/tasks", get(tasks))
}

const UUID_PATTERN: &str =
    "^([0-9a-fA-F]){8}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){12}$";

fn with_null(list: &[String]) -> Value {
    let mut v = vec![Value::Null];
    v.extend(list.iter().map(|s| json!(s)));
    Value::Array(v)
}

pub fn image_properties(disk_formats: &[String], container_formats: &[String]) -> Value {
    json!({
        "id": {"type": "string", "description": "Image identifier (a UUID).", "pattern": UUID_PATTERN},
        "name": {"type": ["null", "string"], "description": "Name of the image.", "maxLength": 255},
        "status": {"type": "string", "readOnly": true, "description": "Where the image is in its life cycle.",
            "enum": ["queued", "saving", "active", "killed", "deleted", "uploading", "importing",
                     "pending_delete", "deactivated"]},
        "visibility": {"type": "string", "description": "Who may see the image.",
            "enum": ["community", "public", "private", "shared"]},
        "protected": {"type": "boolean", "description": "A protected image cannot be deleted."},
        "os_hidden": {"type": "boolean", "description": "Hidden images are left out of default lists."},
        "checksum": {"type": ["null", "string"], "readOnly": true, "description": "MD5 of the image data.", "maxLength": 32},
        "os_hash_algo": {"type": ["null", "string"], "readOnly": true, "description": "Algorithm of os_hash_value.", "maxLength": 64},
        "os_hash_value": {"type": ["null", "string"], "readOnly": true, "description": "Hex digest of the image data (os_hash_algo).", "maxLength": 128},
        "owner": {"type": ["null", "string"], "description": "Project that owns the image.", "maxLength": 255},
        "size": {"type": ["null", "integer"], "readOnly": true, "description": "Size of the image data in bytes."},
        "virtual_size": {"type": ["null", "integer"], "readOnly": true, "description": "Size of the virtual disk in bytes."},
        "container_format": {"type": ["null", "string"], "description": "Container of the disk.", "enum": with_null(container_formats)},
        "disk_format": {"type": ["null", "string"], "description": "Format of the disk.", "enum": with_null(disk_formats)},
        "created_at": {"type": "string", "readOnly": true, "description": "When the image was registered."},
        "updated_at": {"type": "string", "readOnly": true, "description": "When the image last changed."},
        "tags": {"type": "array", "description": "Free-form labels.", "items": {"type": "string", "maxLength": 255}},
        "direct_url": {"type": "string", "readOnly": true, "description": "URL of the data in its store."},
        "min_ram": {"type": "integer", "description": "RAM (MB) needed to boot the image."},
        "min_disk": {"type": "integer", "description": "Disk (GB) needed to boot the image."},
        "self": {"type": "string", "readOnly": true, "description": "URL of the image."},
        "file": {"type": "string", "readOnly": true, "description": "URL of the image data."},
        "stores": {"type": "string", "readOnly": true, "description": "Stores holding the image data (comma-separated)."},
        "schema": {"type": "string", "readOnly": true, "description": "URL of this schema."},
        "locations": {"type": "array", "description": "Where the image data is kept.",
            "items": {"type": "object", "properties": {
                "url": {"type": "string", "maxLength": 255},
                "metadata": {"type": "object"}},
                "required": ["url", "metadata"]}}
    })
}

fn image_links() -> Value {
    json!([
        {"rel": "self", "href": "{self}"},
        {"rel": "enclosure", "href": "{file}"},
        {"rel": "describedby", "href": "{schema}"}
    ])
}

pub fn image_schema(api: &Api) -> Value {
    json!({
        "name": "image",
        "properties": image_properties(&api.svc.cfg.disk_formats, &api.svc.cfg.container_formats),
        "additionalProperties": {"type": "string"},
        "links": image_links(),
    })
}

fn collection(name: &str, item: Value) -> Value {
    json!({
        "name": name,
        "properties": {
            name: {"type": "array", "items": item},
            "first": {"type": "string"},
            "next": {"type": "string"},
            "schema": {"type": "string"}
        },
        "links": [
            {"rel": "first", "href": "{first}"},
            {"rel": "next", "href": "{next}"},
            {"rel": "describedby", "href": "{schema}"}
        ]
    })
}

async fn image(State(api): State<Api>) -> Response {
    json_ok(image_schema(&api))
}

async fn images(State(api): State<Api>) -> Response {
    json_ok(collection("images", image_schema(&api)))
}

fn member_schema() -> Value {
    json!({
        "name": "member",
        "properties": {
            "member_id": {"type": "string", "description": "Project the image is shared with."},
            "image_id": {"type": "string", "description": "The shared image.", "pattern": UUID_PATTERN},
            "created_at": {"type": "string", "description": "When the membership was created."},
            "updated_at": {"type": "string", "description": "When the membership last changed."},
            "status": {"type": "string", "description": "Whether the member accepted the image.",
                "enum": ["pending", "accepted", "rejected"]},
            "schema": {"readOnly": true, "type": "string"}
        }
    })
}

async fn member() -> Response {
    json_ok(member_schema())
}

async fn members() -> Response {
    json_ok(json!({
        "name": "members",
        "properties": {
            "members": {"type": "array", "items": member_schema()},
            "schema": {"type": "string"}
        },
        "links": [{"rel": "describedby", "href": "{schema}"}]
    }))
}

fn task_properties(full: bool) -> Value {
    let mut p = json!({
        "id": {"description": "Task identifier.", "pattern": UUID_PATTERN, "type": "string"},
        "type": {"description": "What the task does.", "enum": ["import", "api_image_import", "location_import"], "type": "string"},
        "status": {"description": "Where the task is.", "enum": ["pending", "processing", "success", "failure"], "type": "string"},
        "owner": {"description": "Project that owns the task.", "type": "string"},
        "image_id": {"description": "Image the task works on.", "type": "string"},
        "request_id": {"description": "Request that created the task.", "type": "string"},
        "user_id": {"description": "User who created the task.", "type": "string"},
        "expires_at": {"description": "When the task will be removed.", "type": ["null", "string"]},
        "created_at": {"description": "When the task was created.", "type": "string"},
        "updated_at": {"description": "When the task last changed.", "type": "string"},
        "self": {"readOnly": true, "type": "string"},
        "schema": {"readOnly": true, "type": "string"}
    });
    if full && let Some(o) = p.as_object_mut() {
        o.insert(
            "input".into(),
            json!({"description": "Parameters of the task.", "type": ["null", "object"]}),
        );
        o.insert(
            "result".into(),
            json!({"description": "Outcome of the task.", "type": ["null", "object"]}),
        );
        o.insert(
            "message".into(),
            json!({"description": "Why the task failed, if it did.", "type": "string"}),
        );
    }
    p
}

async fn task() -> Response {
    json_ok(json!({"name": "task", "properties": task_properties(true)}))
}

async fn tasks() -> Response {
    json_ok(collection(
        "tasks",
        json!({"name": "task", "properties": task_properties(false)}),
    ))
}
