//! Request body schemas, with the rules of Keystone's own (`additionalProperties` allowed
//! where Keystone keeps extra attributes), and its error wording.

use serde_json::{Value, json};
use std::sync::LazyLock;

use crate::error::{IdentityError, Result};

fn name(max: u64) -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": max, "pattern": "[\\S]+"})
}

fn id_or_null() -> Value {
    json!({"type": ["string", "null"], "minLength": 1, "maxLength": 64})
}

fn description() -> Value {
    json!({"type": ["string", "null"]})
}

fn boolean() -> Value {
    json!({"type": "boolean"})
}

fn tags() -> Value {
    json!({"type": "array", "maxItems": 80, "uniqueItems": true,
           "items": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[^,/]*$"}})
}

fn object(props: Value, required: &[&str], additional: bool) -> Value {
    let mut o = json!({"type": "object", "properties": props, "additionalProperties": additional});
    // Draft 4 wants at least one name in `required`.
    if !required.is_empty() {
        o["required"] = json!(required);
    }
    o
}

/// Draft 4, as Keystone validates. (Without a `$schema`, the crate would pick 2020-12, whose
/// meta-schema validator keeps ~1 MB per compiled schema resident: 30 MB after a bootstrap.)
fn compile(schema: Value) -> jsonschema::Validator {
    match jsonschema::options()
        .with_draft(jsonschema::Draft::Draft4)
        .build(&schema)
    {
        Ok(v) => v,
        // Schemas are constants; a broken one is caught by the unit test below.
        Err(e) => panic!("invalid built-in schema: {e}"),
    }
}

macro_rules! schema {
    ($name:ident, $body:expr) => {
        pub static $name: LazyLock<jsonschema::Validator> = LazyLock::new(|| compile($body));
    };
}

schema!(
    DOMAIN_CREATE,
    object(
        json!({
            "name": name(64), "description": description(), "enabled": boolean(), "tags": tags(),
            "options": {"type": "object"}, "explicit_domain_id": {"type": "string"}
        }),
        &["name"],
        true
    )
);
schema!(
    DOMAIN_UPDATE,
    json!({"type": "object", "minProperties": 1, "properties": {
        "name": name(64), "description": description(), "enabled": boolean(), "tags": tags(),
        "options": {"type": "object"}
    }})
);
schema!(
    PROJECT_CREATE,
    object(
        json!({
            "name": name(64), "description": description(), "enabled": boolean(), "tags": tags(),
            "domain_id": id_or_null(), "parent_id": id_or_null(), "is_domain": boolean(),
            "options": {"type": "object"}
        }),
        &["name"],
        true
    )
);
schema!(
    PROJECT_UPDATE,
    json!({"type": "object", "minProperties": 1, "properties": {
        "name": name(64), "description": description(), "enabled": boolean(), "tags": tags(),
        "domain_id": id_or_null(), "options": {"type": "object"}
    }})
);
schema!(
    USER_CREATE,
    object(
        json!({
            "name": name(255), "description": description(), "enabled": boolean(),
            "domain_id": id_or_null(), "default_project_id": id_or_null(),
            "password": {"type": ["string", "null"]}, "options": {"type": "object"},
            "email": {"type": ["string", "null"]}
        }),
        &["name"],
        true
    )
);
schema!(
    USER_UPDATE,
    json!({"type": "object", "minProperties": 1, "properties": {
        "name": name(255), "description": description(), "enabled": boolean(),
        "domain_id": id_or_null(), "default_project_id": id_or_null(),
        "password": {"type": ["string", "null"]}, "options": {"type": "object"}
    }})
);
schema!(
    PASSWORD_CHANGE,
    object(
        json!({
            "original_password": {"type": "string"}, "password": {"type": "string"}
        }),
        &["original_password", "password"],
        false
    )
);
schema!(
    GROUP_CREATE,
    object(
        json!({
            "name": name(64), "description": description(), "domain_id": id_or_null()
        }),
        &["name"],
        true
    )
);
schema!(
    GROUP_UPDATE,
    json!({"type": "object", "minProperties": 1, "properties": {
        "name": name(64), "description": description(), "domain_id": id_or_null()
    }})
);
schema!(
    ROLE_CREATE,
    object(
        json!({
            "name": name(255), "description": description(), "domain_id": id_or_null(),
            "options": {"type": "object"}
        }),
        &["name"],
        true
    )
);
schema!(
    ROLE_UPDATE,
    json!({"type": "object", "minProperties": 1, "properties": {
        "name": name(255), "description": description(), "options": {"type": "object"}
    }})
);
schema!(
    REGION_CREATE,
    object(
        json!({
            "id": {"type": "string", "minLength": 1, "maxLength": 255},
            "description": {"type": ["string", "null"]}, "parent_region_id": {"type": ["string", "null"]}
        }),
        &[],
        true
    )
);
schema!(
    REGION_UPDATE,
    json!({"type": "object", "minProperties": 1, "properties": {
        "description": {"type": ["string", "null"]}, "parent_region_id": {"type": ["string", "null"]}
    }})
);
schema!(
    SERVICE_CREATE,
    object(
        json!({
            "type": {"type": "string", "minLength": 1, "maxLength": 255},
            "name": {"type": ["string", "null"], "maxLength": 255},
            "description": description(), "enabled": boolean()
        }),
        &["type"],
        true
    )
);
schema!(
    SERVICE_UPDATE,
    json!({"type": "object", "minProperties": 1, "properties": {
        "type": {"type": "string", "minLength": 1, "maxLength": 255},
        "name": {"type": ["string", "null"], "maxLength": 255},
        "description": description(), "enabled": boolean()
    }})
);
schema!(
    ENDPOINT_CREATE,
    object(
        json!({
            "service_id": {"type": "string"}, "interface": {"type": "string", "enum": ["admin", "internal", "public"]},
            "url": {"type": "string", "minLength": 1, "maxLength": 225},
            "region_id": {"type": ["string", "null"]}, "region": {"type": ["string", "null"]},
            "enabled": boolean()
        }),
        &["service_id", "interface", "url"],
        true
    )
);
schema!(
    ENDPOINT_UPDATE,
    json!({"type": "object", "minProperties": 1, "properties": {
        "service_id": {"type": "string"}, "interface": {"type": "string", "enum": ["admin", "internal", "public"]},
        "url": {"type": "string", "minLength": 1, "maxLength": 225},
        "region_id": {"type": ["string", "null"]}, "region": {"type": ["string", "null"]},
        "enabled": boolean()
    }})
);
schema!(
    CREDENTIAL_CREATE,
    object(
        json!({
            "user_id": {"type": "string", "minLength": 1, "maxLength": 64},
            "project_id": {"type": ["string", "null"]}, "type": {"type": "string", "minLength": 1, "maxLength": 255},
            "blob": {"type": "string"}
        }),
        &["user_id", "type", "blob"],
        true
    )
);
schema!(
    CREDENTIAL_UPDATE,
    json!({"type": "object", "minProperties": 1, "properties": {
        "user_id": {"type": "string"}, "project_id": {"type": ["string", "null"]},
        "type": {"type": "string"}, "blob": {"type": "string"}
    }})
);
schema!(
    POLICY_CREATE,
    object(
        json!({
            "type": {"type": "string", "minLength": 1, "maxLength": 255}, "blob": {"type": "string"}
        }),
        &["type", "blob"],
        true
    )
);
schema!(
    POLICY_UPDATE,
    json!({"type": "object", "minProperties": 1, "properties": {
        "type": {"type": "string"}, "blob": {"type": "string"}
    }})
);
schema!(
    APP_CRED_CREATE,
    object(
        json!({
            "name": {"type": "string", "minLength": 1, "maxLength": 255},
            "description": description(), "secret": {"type": ["string", "null"]},
            "expires_at": {"type": ["string", "null"]},
            "roles": {"type": "array", "items": {"type": "object", "properties": {
                "id": {"type": "string"}, "name": {"type": "string"}}, "minProperties": 1}},
            "unrestricted": {"type": ["boolean", "null"]},
            "access_rules": {"type": "array", "items": {"type": "object", "properties": {
                "id": {"type": "string"}, "service": {"type": "string"}, "path": {"type": "string"},
                "method": {"type": "string", "enum": ["POST", "GET", "HEAD", "PATCH", "PUT", "DELETE"]}}}}
        }),
        &["name"],
        false
    )
);

/// Python's `repr` of a JSON value, as Keystone's messages quote request values.
pub fn py_repr(v: &Value) -> String {
    match v {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'")),
        Value::Array(a) => format!("[{}]", a.iter().map(py_repr).collect::<Vec<_>>().join(", ")),
        Value::Object(m) => format!(
            "{{{}}}",
            m.iter()
                .map(|(k, v)| format!("'{k}': {}", py_repr(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Validate the `member` object (`{"project": {...}}` → `project`) against `schema`, with
/// Keystone's wording: `Invalid input for field/attribute <attr>. Value: <value>. <reason>`.
pub fn check(schema: &jsonschema::Validator, member: &str, v: &Value) -> Result<()> {
    match schema.validate(v) {
        Ok(()) => Ok(()),
        Err(e) => {
            let path = e.instance_path.to_string();
            let attr = path
                .rsplit('/')
                .find(|p| !p.is_empty())
                .unwrap_or(member)
                .to_string();
            let value = v.pointer(&path).unwrap_or(v);
            let reason = e.to_string().replace('"', "'");
            Err(IdentityError::Validation(format!(
                "Invalid input for field/attribute {attr}. Value: {}. {reason}",
                py_repr(value).trim_matches('\'')
            )))
        }
    }
}

/// The object under `key` in a request body (`{"project": {...}}`), or Keystone's 400.
pub fn member<'a>(body: &'a Value, key: &str) -> Result<&'a Value> {
    match body.get(key) {
        Some(v) if v.is_object() => Ok(v),
        Some(_) => Err(IdentityError::Validation(format!(
            "Invalid input for field '{key}': the value must be an object"
        ))),
        None => Err(IdentityError::Validation(format!(
            "'{key}' is a required property"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemas_compile_and_report_like_keystone() {
        let all: &[&LazyLock<jsonschema::Validator>] = &[
            &DOMAIN_CREATE,
            &DOMAIN_UPDATE,
            &PROJECT_CREATE,
            &PROJECT_UPDATE,
            &USER_CREATE,
            &USER_UPDATE,
            &PASSWORD_CHANGE,
            &GROUP_CREATE,
            &GROUP_UPDATE,
            &ROLE_CREATE,
            &ROLE_UPDATE,
            &REGION_CREATE,
            &REGION_UPDATE,
            &SERVICE_CREATE,
            &SERVICE_UPDATE,
            &ENDPOINT_CREATE,
            &ENDPOINT_UPDATE,
            &CREDENTIAL_CREATE,
            &CREDENTIAL_UPDATE,
            &POLICY_CREATE,
            &POLICY_UPDATE,
            &APP_CRED_CREATE,
        ];
        for s in all {
            let _ = s.is_valid(&json!({}));
        }
        let e = check(&PROJECT_CREATE, "project", &json!({"description": "d"}))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "Invalid input for field/attribute project. Value: {'description': 'd'}. \
             'name' is a required property"
        );
        let e = check(
            &PROJECT_CREATE,
            "project",
            &json!({"name": "x", "enabled": "yes"}),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("Invalid input for field/attribute enabled. Value: yes."),
            "{e}"
        );
        assert!(
            check(
                &PROJECT_CREATE,
                "project",
                &json!({"name": "x", "color": "red"})
            )
            .is_ok()
        );
        assert!(check(&PROJECT_CREATE, "project", &json!({"name": "   "})).is_err());
    }
}
