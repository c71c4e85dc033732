//! Request schemas, with upstream placement's rules (placement/schemas/*.py), per
//! microversion. Query strings are validated the same way, as an object of last values.

use serde_json::{Value, json};
use std::sync::LazyLock;

use crate::error::ApiError;
use crate::model::{MAX_INT, MAX_RATIO};

const UUID_PATTERN: &str = "^[0-9a-fA-F-]{36}$";
const RC_PATTERN: &str = "^[A-Z0-9_]+$";
const CUSTOM_PATTERN: &str = "^CUSTOM_[A-Z0-9_]+$";
const CONSUMER_TYPE_GET_PATTERN: &str = "^[A-Z0-9_]+$|^all|^unknown$";
pub const GROUP_PAT: &str = "[1-9][0-9]*";
pub const GROUP_PAT_1_33: &str = "[a-zA-Z0-9_-]{1,64}";

/// oslo's `is_uuid_like`: what `uuid.UUID()` accepts, dashes optional, any case.
pub fn is_uuid_like(s: &str) -> bool {
    let t = s.trim_start_matches("urn:").trim_start_matches("uuid:");
    let t = t.trim_start_matches('{').trim_end_matches('}');
    let hex: String = t.chars().filter(|c| *c != '-').collect();
    hex.len() == 32
        && hex.chars().all(|c| c.is_ascii_hexdigit())
        && uuid::Uuid::parse_str(t).is_ok()
}

fn compile(schema: Value) -> jsonschema::Validator {
    // Draft 4, as placement validates (and far less memory than the default 2020-12 draft).
    match jsonschema::options()
        .with_draft(jsonschema::Draft::Draft4)
        .with_format("uuid", is_uuid_like)
        .should_validate_formats(true)
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

fn uuid() -> Value {
    json!({"type": "string", "format": "uuid"})
}

// ---------------------------------------------------------------- resource providers

fn rp_props(with_uuid: bool, with_parent: bool) -> Value {
    let mut props = json!({"name": {"type": "string", "maxLength": 200}});
    if with_uuid {
        props["uuid"] = uuid();
    }
    if with_parent {
        props["parent_provider_uuid"] = json!({"anyOf": [uuid(), {"type": "null"}]});
    }
    json!({"type": "object", "properties": props, "required": ["name"], "additionalProperties": false})
}

schema!(POST_RP, rp_props(true, false));
schema!(POST_RP_1_14, rp_props(true, true));
schema!(PUT_RP, rp_props(false, false));
schema!(PUT_RP_1_14, rp_props(false, true));

fn get_rps(minor: u16) -> Value {
    let mut props = json!({"name": {"type": "string"}, "uuid": uuid()});
    if minor >= 3 {
        props["member_of"] = json!({"type": "string"});
    }
    if minor >= 4 {
        props["resources"] = json!({"type": "string"});
    }
    if minor >= 14 {
        props["in_tree"] = uuid();
    }
    if minor >= 18 {
        props["required"] = json!({"type": "string"});
    }
    json!({"type": "object", "properties": props, "additionalProperties": false})
}

schema!(GET_RPS_1_0, get_rps(0));
schema!(GET_RPS_1_3, get_rps(3));
schema!(GET_RPS_1_4, get_rps(4));
schema!(GET_RPS_1_14, get_rps(14));
schema!(GET_RPS_1_18, get_rps(18));

// ---------------------------------------------------------------- inventories

fn inventory(generation_required: bool, with_class: bool) -> Value {
    let int = |min: i64| json!({"type": "integer", "maximum": MAX_INT, "minimum": min});
    let mut props = json!({
        "resource_provider_generation": {"type": "integer"},
        "total": int(1),
        "reserved": int(0),
        "min_unit": int(1),
        "max_unit": int(1),
        "step_size": int(1),
        "allocation_ratio": {"type": "number", "maximum": MAX_RATIO},
    });
    let mut required = vec!["total"];
    if generation_required {
        required.push("resource_provider_generation");
    }
    if with_class {
        props["resource_class"] = json!({"type": "string", "pattern": RC_PATTERN});
        required.push("resource_class");
    }
    json!({"type": "object", "properties": props, "required": required, "additionalProperties": false})
}

fn put_inventories() -> Value {
    json!({
        "type": "object",
        "properties": {
            "resource_provider_generation": {"type": "integer"},
            "inventories": {"type": "object", "patternProperties": {RC_PATTERN: inventory(false, false)}},
        },
        "required": ["resource_provider_generation", "inventories"],
        "additionalProperties": false,
    })
}

schema!(POST_INVENTORY, inventory(false, true));
schema!(PUT_INVENTORY, inventory(true, false));
schema!(PUT_INVENTORIES, put_inventories());

// ---------------------------------------------------------------- classes, traits, aggregates

schema!(
    RESOURCE_CLASS,
    json!({"type": "object", "properties": {"name": {"type": "string", "pattern": CUSTOM_PATTERN, "maxLength": 255}},
           "required": ["name"], "additionalProperties": false})
);
schema!(
    CUSTOM_TRAIT,
    json!({"type": "string", "minLength": 1, "maxLength": 255, "pattern": CUSTOM_PATTERN})
);
schema!(
    PUT_RP_TRAITS,
    json!({"type": "object", "properties": {
        "traits": {"type": "array", "items": {"type": "string", "minLength": 1, "maxLength": 255}},
        "resource_provider_generation": {"type": "integer"}},
        "required": ["traits", "resource_provider_generation"], "additionalProperties": false})
);
schema!(
    LIST_TRAITS,
    json!({"type": "object", "properties": {"name": {"type": "string"}, "associated": {"type": "string"}},
           "additionalProperties": false})
);

fn aggregates_list() -> Value {
    json!({"type": "array", "items": uuid(), "uniqueItems": true})
}
schema!(PUT_AGGREGATES_1_1, aggregates_list());
schema!(
    PUT_AGGREGATES_1_19,
    json!({"type": "object", "properties": {
        "aggregates": aggregates_list(), "resource_provider_generation": {"type": "integer"}},
        "required": ["aggregates", "resource_provider_generation"], "additionalProperties": false})
);

// ---------------------------------------------------------------- usages

fn get_usages(with_type: bool) -> Value {
    let mut props = json!({
        "project_id": {"type": "string", "minLength": 1, "maxLength": 255},
        "user_id": {"type": "string", "minLength": 1, "maxLength": 255},
    });
    if with_type {
        props["consumer_type"] = json!({"type": "string", "pattern": CONSUMER_TYPE_GET_PATTERN,
                                        "minLength": 1, "maxLength": 255});
    }
    json!({"type": "object", "properties": props, "required": ["project_id"], "additionalProperties": false})
}
schema!(GET_USAGES_1_9, get_usages(false));
schema!(GET_USAGES_1_38, get_usages(true));

// ---------------------------------------------------------------- allocations

fn resources_obj() -> Value {
    json!({"type": "object", "minProperties": 1,
           "patternProperties": {RC_PATTERN: {"type": "integer", "minimum": 1}},
           "additionalProperties": false})
}

fn id_string() -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": 255})
}

fn alloc_list_schema(with_ids: bool) -> Value {
    let mut s = json!({
        "type": "object",
        "properties": {"allocations": {"type": "array", "minItems": 1, "items": {
            "type": "object",
            "properties": {
                "resource_provider": {"type": "object", "properties": {"uuid": uuid()},
                                      "additionalProperties": false, "required": ["uuid"]},
                "resources": resources_obj(),
            },
            "required": ["resource_provider", "resources"],
            "additionalProperties": false}}},
        "required": ["allocations"],
        "additionalProperties": false,
    });
    if with_ids {
        s["properties"]["project_id"] = id_string();
        s["properties"]["user_id"] = id_string();
        s["required"] = json!(["allocations", "project_id", "user_id"]);
    }
    s
}

/// The dict-shaped body of 1.12+: `min` allocations, and the fields of later versions.
fn alloc_dict_schema(min: u64, minor: u16) -> Value {
    let mut s = json!({
        "type": "object",
        "properties": {
            "allocations": {
                "type": "object", "minProperties": min,
                "patternProperties": {UUID_PATTERN: {
                    "type": "object",
                    "properties": {"generation": {"type": "integer"}, "resources": resources_obj()},
                    "required": ["resources"], "additionalProperties": false}},
                "additionalProperties": false},
            "project_id": id_string(),
            "user_id": id_string(),
        },
        "additionalProperties": false,
        "required": ["allocations", "project_id", "user_id"],
    });
    let mut required = vec!["allocations", "project_id", "user_id"];
    if minor >= 28 {
        s["properties"]["consumer_generation"] = json!({"type": ["integer", "null"]});
        required.push("consumer_generation");
    }
    if minor >= 34 {
        s["properties"]["mappings"] = json!({"type": "object", "minProperties": 1,
            "patternProperties": {GROUP_PAT_1_33: {"type": "array", "minItems": 1, "items": uuid()}}});
    }
    if minor >= 38 {
        s["properties"]["consumer_type"] = json!({"type": "string", "pattern": RC_PATTERN,
                                                  "minLength": 1, "maxLength": 255});
        required.push("consumer_type");
    }
    s["required"] = json!(required);
    s
}

fn post_allocations(min_consumers: u64, minor: u16) -> Value {
    json!({"type": "object", "minProperties": min_consumers, "additionalProperties": false,
           "patternProperties": {UUID_PATTERN: alloc_dict_schema(0, minor)}})
}

schema!(PUT_ALLOCATIONS_1_0, alloc_list_schema(false));
schema!(PUT_ALLOCATIONS_1_8, alloc_list_schema(true));
schema!(PUT_ALLOCATIONS_1_12, alloc_dict_schema(1, 12));
schema!(PUT_ALLOCATIONS_1_28, alloc_dict_schema(0, 28));
schema!(PUT_ALLOCATIONS_1_34, alloc_dict_schema(0, 34));
schema!(PUT_ALLOCATIONS_1_38, alloc_dict_schema(0, 38));
schema!(POST_ALLOCATIONS_1_13, post_allocations(1, 13));
schema!(POST_ALLOCATIONS_1_28, post_allocations(1, 28));
schema!(POST_ALLOCATIONS_1_34, post_allocations(1, 34));
schema!(POST_ALLOCATIONS_1_38, post_allocations(1, 38));

fn reshaper(minor: u16) -> Value {
    json!({
        "type": "object",
        "properties": {
            "inventories": {"type": "object",
                            "patternProperties": {UUID_PATTERN: put_inventories()},
                            "minProperties": 1, "additionalProperties": false},
            "allocations": post_allocations(0, minor),
        },
        "required": ["inventories", "allocations"],
        "additionalProperties": false,
    })
}
schema!(RESHAPER_1_30, reshaper(28));
schema!(RESHAPER_1_34, reshaper(34));
schema!(RESHAPER_1_38, reshaper(38));

// ---------------------------------------------------------------- allocation candidates

fn candidates(minor: u16) -> Value {
    let mut props = serde_json::Map::new();
    let mut pattern = serde_json::Map::new();
    let s = json!({"type": "string"});
    if minor >= 16 {
        props.insert(
            "limit".into(),
            json!({"type": ["integer", "string"], "pattern": "^[1-9][0-9]*$", "minimum": 1, "minLength": 1}),
        );
    }
    let mut required: Vec<&str> = Vec::new();
    if minor < 25 {
        props.insert("resources".into(), s.clone());
        required.push("resources");
        if minor >= 17 {
            props.insert("required".into(), s.clone());
        }
        if minor >= 21 {
            props.insert("member_of".into(), s.clone());
        }
    } else {
        props.insert(
            "group_policy".into(),
            json!({"type": "string", "enum": ["none", "isolate"]}),
        );
        let group = if minor >= 33 {
            GROUP_PAT_1_33
        } else {
            GROUP_PAT
        };
        let mut kinds = vec!["resources", "required", "member_of"];
        if minor >= 31 {
            kinds.push("in_tree");
        }
        for k in kinds {
            pattern.insert(format!("^{k}({group})?$"), s.clone());
        }
        if minor >= 35 {
            props.insert("root_required".into(), s.clone());
        }
        if minor >= 36 {
            props.insert("same_subtree".into(), s.clone());
        }
    }
    let mut out = json!({"type": "object", "properties": props, "additionalProperties": false});
    if !pattern.is_empty() {
        out["patternProperties"] = Value::Object(pattern);
    }
    if !required.is_empty() {
        out["required"] = json!(required);
    }
    out
}
schema!(CANDIDATES_1_10, candidates(10));
schema!(CANDIDATES_1_16, candidates(16));
schema!(CANDIDATES_1_17, candidates(17));
schema!(CANDIDATES_1_21, candidates(21));
schema!(CANDIDATES_1_25, candidates(25));
schema!(CANDIDATES_1_31, candidates(31));
schema!(CANDIDATES_1_33, candidates(33));
schema!(CANDIDATES_1_35, candidates(35));
schema!(CANDIDATES_1_36, candidates(36));

// ---------------------------------------------------------------- helpers

/// Parse a JSON body and validate it, with upstream's messages.
pub fn parse(body: &[u8], schema: &jsonschema::Validator) -> Result<Value, ApiError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("Malformed JSON: {e}")))?;
    validate(&v, schema, "JSON does not validate")?;
    Ok(v)
}

pub fn validate(v: &Value, schema: &jsonschema::Validator, prefix: &str) -> Result<(), ApiError> {
    match schema.validate(v) {
        Ok(()) => Ok(()),
        Err(e) => Err(ApiError::bad_request(format!("{prefix}: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_schema_compiles() {
        let all: &[&LazyLock<jsonschema::Validator>] = &[
            &POST_RP,
            &POST_RP_1_14,
            &PUT_RP,
            &PUT_RP_1_14,
            &GET_RPS_1_0,
            &GET_RPS_1_3,
            &GET_RPS_1_4,
            &GET_RPS_1_14,
            &GET_RPS_1_18,
            &POST_INVENTORY,
            &PUT_INVENTORY,
            &PUT_INVENTORIES,
            &RESOURCE_CLASS,
            &CUSTOM_TRAIT,
            &PUT_RP_TRAITS,
            &LIST_TRAITS,
            &PUT_AGGREGATES_1_1,
            &PUT_AGGREGATES_1_19,
            &GET_USAGES_1_9,
            &GET_USAGES_1_38,
            &PUT_ALLOCATIONS_1_0,
            &PUT_ALLOCATIONS_1_8,
            &PUT_ALLOCATIONS_1_12,
            &PUT_ALLOCATIONS_1_28,
            &PUT_ALLOCATIONS_1_34,
            &PUT_ALLOCATIONS_1_38,
            &POST_ALLOCATIONS_1_13,
            &POST_ALLOCATIONS_1_28,
            &POST_ALLOCATIONS_1_34,
            &POST_ALLOCATIONS_1_38,
            &RESHAPER_1_30,
            &RESHAPER_1_34,
            &RESHAPER_1_38,
            &CANDIDATES_1_10,
            &CANDIDATES_1_16,
            &CANDIDATES_1_17,
            &CANDIDATES_1_21,
            &CANDIDATES_1_25,
            &CANDIDATES_1_31,
            &CANDIDATES_1_33,
            &CANDIDATES_1_35,
            &CANDIDATES_1_36,
        ];
        for s in all {
            let _ = s.is_valid(&json!({}));
        }
    }

    #[test]
    fn uuid_like() {
        assert!(is_uuid_like("d04f0480-2f8e-4383-bbe5-692d21dc55a9"));
        assert!(is_uuid_like("D04F04802F8E4383BBE5692D21DC55A9"));
        assert!(!is_uuid_like("xx"));
        assert!(!is_uuid_like("d04f0480-2f8e-4383-bbe5-692d21dc55a"));
    }

    #[test]
    fn rules() {
        assert!(POST_RP.is_valid(&json!({"name": "a"})));
        assert!(!POST_RP.is_valid(&json!({"name": "a", "parent_provider_uuid": null})));
        assert!(POST_RP_1_14.is_valid(&json!({"name": "a", "parent_provider_uuid": null})));
        assert!(!POST_RP.is_valid(&json!({"name": "a", "uuid": "nope"})));
        assert!(PUT_INVENTORIES.is_valid(
            &json!({"resource_provider_generation": 0, "inventories": {"VCPU": {"total": 8}}})
        ));
        assert!(!PUT_INVENTORIES.is_valid(
            &json!({"resource_provider_generation": 0, "inventories": {"VCPU": {"total": 0}}})
        ));
        assert!(
            PUT_ALLOCATIONS_1_28.is_valid(&json!({"allocations": {}, "project_id": "p",
            "user_id": "u", "consumer_generation": null}))
        );
        assert!(
            !PUT_ALLOCATIONS_1_12
                .is_valid(&json!({"allocations": {}, "project_id": "p", "user_id": "u"}))
        );
        assert!(
            CANDIDATES_1_36.is_valid(&json!({"resources_COMPUTE": "VCPU:1", "same_subtree": "_A"}))
        );
        assert!(!CANDIDATES_1_25.is_valid(&json!({"resources_COMPUTE": "VCPU:1"})));
        assert!(CANDIDATES_1_16.is_valid(&json!({"resources": "VCPU:1", "limit": "5"})));
        assert!(!CANDIDATES_1_16.is_valid(&json!({"resources": "VCPU:1", "limit": "0"})));
    }
}
