//! Engine tests: grammar, substitution, credentials, loading and scope.

use super::parser::parse;
use super::*;
use serde_json::{Value, json};

fn creds(roles: &[&str]) -> Credentials {
    Credentials {
        user_id: Some("u1".into()),
        project_id: Some("p1".into()),
        project_domain_id: Some("d1".into()),
        roles: roles.iter().map(|r| r.to_string()).collect(),
        ..Default::default()
    }
}

/// Evaluate a lone check string (no `rule:` references) against target and creds.
fn eval(rule: &str, target: &Value, c: &Credentials) -> bool {
    let e = Enforcer::builder()
        .defaults([RuleDefault::new("x", rule)])
        .build();
    match e {
        Ok(e) => e.check("x", target, c),
        Err(err) => panic!("{rule:?} failed to load: {err}"),
    }
}

fn t(rule: &str) -> bool {
    eval(rule, &json!({}), &creds(&[]))
}

#[test]
fn special_checks() {
    assert!(t("@"));
    assert!(!t("!"));
    assert!(t(""));
    assert!(t("(@)"));
    assert!(t("((( @ )))"));
}

#[test]
fn precedence_not_and_or() {
    assert!(t("@ or ! and !"), "and binds tighter than or");
    assert!(t("! and ! or @"));
    assert!(!t("(@ or !) and !"));
    assert!(t("not ! and @"), "not binds tighter than and");
    assert!(!t("not (@ and @)"));
    assert!(t("not not @"));
    assert!(t("! or not ! and @"));
    assert!(t("@ AND @ Or !"), "operators are case-insensitive");
    assert!(t("(! or @) and (not ! or !) and @"));
}

/// oslo's shift-reduce parser, re-expressed over truth values, as a reference for
/// every short sentence over `@ ! and or not ( )`.
mod oslo_reference {
    #[derive(Clone, Debug)]
    pub enum V {
        Leaf(bool),
        And(Vec<V>),
        Or(Vec<V>),
        Not(Box<V>),
    }

    impl V {
        pub fn eval(&self) -> bool {
            match self {
                V::Leaf(b) => *b,
                V::And(v) => v.iter().all(V::eval),
                V::Or(v) => v.iter().any(V::eval),
                V::Not(v) => !v.eval(),
            }
        }
    }

    pub fn run(words: &[&str]) -> Option<bool> {
        let mut toks: Vec<&'static str> = Vec::new();
        let mut vals: Vec<Option<V>> = Vec::new();
        for w in words {
            let (tok, val) = match *w {
                "@" => ("check", Some(V::Leaf(true))),
                "!" => ("check", Some(V::Leaf(false))),
                "and" => ("and", None),
                "or" => ("or", None),
                "not" => ("not", None),
                "(" => ("(", None),
                _ => (")", None),
            };
            toks.push(tok);
            vals.push(val);
            reduce(&mut toks, &mut vals);
        }
        match (toks.as_slice(), vals.pop()) {
            ([t], Some(Some(v))) if *t != "(" && *t != ")" => Some(v.eval()),
            _ => None,
        }
    }

    fn reduce(toks: &mut Vec<&'static str>, vals: &mut Vec<Option<V>>) {
        loop {
            let n = toks.len();
            if n >= 3 {
                let last3 = (toks[n - 3], toks[n - 2], toks[n - 1]);
                let replace = |toks: &mut Vec<&'static str>, vals: &mut Vec<Option<V>>, t, v| {
                    toks.truncate(n - 3);
                    vals.truncate(n - 3);
                    toks.push(t);
                    vals.push(Some(v));
                };
                match last3 {
                    ("(", "check" | "and_expr" | "or_expr", ")") => {
                        let v = vals[n - 2].clone();
                        if let Some(v) = v {
                            replace(toks, vals, "check", v);
                            continue;
                        }
                    }
                    ("check", "and", "check")
                    | ("check", "or", "check")
                    | ("and_expr", "or", "check") => {
                        let (a, b) = (vals[n - 3].clone(), vals[n - 1].clone());
                        if let (Some(a), Some(b)) = (a, b) {
                            let (t, v) = if last3.1 == "and" {
                                ("and_expr", V::And(vec![a, b]))
                            } else {
                                ("or_expr", V::Or(vec![a, b]))
                            };
                            replace(toks, vals, t, v);
                            continue;
                        }
                    }
                    ("and_expr", "and", "check") | ("or_expr", "or", "check") => {
                        if let (Some(V::And(mut xs) | V::Or(mut xs)), Some(b)) =
                            (vals[n - 3].clone(), vals[n - 1].clone())
                        {
                            xs.push(b);
                            let v = if last3.0 == "and_expr" {
                                V::And(xs)
                            } else {
                                V::Or(xs)
                            };
                            replace(toks, vals, last3.0, v);
                            continue;
                        }
                    }
                    ("or_expr", "and", "check") => {
                        if let (Some(V::Or(mut xs)), Some(b)) =
                            (vals[n - 3].clone(), vals[n - 1].clone())
                        {
                            let last = xs.pop();
                            let and = match last {
                                Some(V::And(mut ys)) => {
                                    ys.push(b);
                                    V::And(ys)
                                }
                                Some(other) => V::And(vec![other, b]),
                                None => b,
                            };
                            xs.push(and);
                            replace(toks, vals, "or_expr", V::Or(xs));
                            continue;
                        }
                    }
                    _ => {}
                }
            }
            if n >= 2
                && toks[n - 2] == "not"
                && toks[n - 1] == "check"
                && let Some(Some(v)) = vals.pop()
            {
                vals.pop();
                toks.truncate(n - 2);
                toks.push("check");
                vals.push(Some(V::Not(Box::new(v))));
                continue;
            }
            return;
        }
    }
}

#[test]
fn grammar_matches_oslo_on_every_short_sentence() {
    const WORDS: [&str; 7] = ["@", "!", "and", "or", "not", "(", ")"];
    let mut checked = 0;
    let mut accepted = 0;
    for len in 1..=7u32 {
        for mut code in 0..WORDS.len().pow(len) {
            let mut words = Vec::new();
            for _ in 0..len {
                words.push(WORDS[code % WORDS.len()]);
                code /= WORDS.len();
            }
            let text = words.join(" ");
            let ours = parse(&text).ok().map(|n| {
                n.eval(&check::Env {
                    target: &Value::Null,
                    creds: &Credentials::default(),
                    rules: &[],
                })
            });
            assert_eq!(ours, oslo_reference::run(&words), "{text:?}");
            checked += 1;
            accepted += usize::from(ours.is_some());
        }
    }
    assert!(
        checked > 100_000 && accepted > 1_000,
        "{checked} {accepted}"
    );
}

#[test]
fn substitution_from_nested_and_flat_targets() {
    let c = creds(&["reader"]);
    let rule = "project_id:%(target.project.id)s";
    assert!(eval(
        rule,
        &json!({"target": {"project": {"id": "p1"}}}),
        &c
    ));
    assert!(eval(rule, &json!({"target.project.id": "p1"}), &c));
    assert!(!eval(
        rule,
        &json!({"target": {"project": {"id": "p2"}}}),
        &c
    ));
    // Missing keys fail the check, and only that check.
    assert!(!eval(rule, &json!({"target": {}}), &c));
    assert!(!eval(rule, &json!(null), &c));
    assert!(eval(&format!("not {rule}"), &json!({}), &c));
    assert!(eval(&format!("{rule} or role:reader"), &json!({}), &c));
    // Text around substitutions, and several of them.
    assert!(eval("user_id:u%(a)s", &json!({"a": 1}), &creds(&[])));
    assert!(eval(
        "'p1/d1':%(p)s/%(d)s",
        &json!({"p": "p1", "d": "d1"}),
        &creds(&[])
    ));
}

#[test]
fn literal_left_hand_sides() {
    let c = creds(&[]);
    let target = json!({"role": {"name": "member"}, "user": {"enabled": true}, "x": null, "n": 5});
    assert!(eval("'member':%(role.name)s", &target, &c));
    assert!(eval("\"member\":%(role.name)s", &target, &c));
    assert!(!eval("'reader':%(role.name)s", &target, &c));
    assert!(eval("True:%(user.enabled)s", &target, &c));
    assert!(!eval("False:%(user.enabled)s", &target, &c));
    assert!(eval("None:%(x)s", &target, &c));
    assert!(eval("5:%(n)s", &target, &c));
    assert!(
        eval("'a:b':a:b", &target, &c),
        "a quoted literal may hold ':'"
    );
}

#[test]
fn unset_credentials_compare_as_none() {
    // Keystone's `role:manager and not domain_id:None` relies on this.
    let c = creds(&["manager"]);
    assert!(!eval("role:manager and not domain_id:None", &json!({}), &c));
    let mut d = creds(&["manager"]);
    d.domain_id = Some("d1".into());
    assert!(eval("role:manager and not domain_id:None", &json!({}), &d));
}

#[test]
fn list_valued_credentials() {
    let mut c = creds(&["reader", "member"]);
    c.service_roles = vec!["service".into()];
    c.extra.insert(
        "token".into(),
        json!({"domain": {"id": "d9"}, "roles": [{"name": "x"}, {"name": "y"}]}),
    );
    let t = json!({"want": "member", "dom": "d9"});
    assert!(eval("roles:%(want)s", &t, &c));
    assert!(!eval("roles:admin", &t, &c));
    assert!(eval("service_roles:service", &t, &c));
    assert!(eval("token.roles.name:y", &t, &c));
    assert!(eval("token.domain.id:%(dom)s", &t, &c));
    assert!(!eval("token.project.domain.id:%(dom)s", &t, &c));
    assert!(!eval("nosuchkey:x", &t, &c));
}

#[test]
fn roles_compare_case_insensitively() {
    let c = creds(&["ADMIN", "Réader"]);
    assert!(eval("role:admin", &json!({}), &c));
    assert!(eval("role:Admin", &json!({}), &c));
    assert!(eval("role:rÉADER", &json!({}), &c));
    assert!(eval("role:%(r)s", &json!({"r": "aDmIn"}), &c));
    assert!(!eval("role:%(missing)s", &json!({}), &c));
    assert!(!eval("role:member", &json!({}), &c));
    // Generic checks on `roles` stay exact, as in oslo.
    assert!(!eval("roles:admin", &json!({}), &c));
}

#[test]
fn system_scope_and_bool_credentials() {
    let mut c = creds(&["reader"]);
    c.project_id = None;
    c.system_scope = Some("all".into());
    assert!(eval("role:reader and system_scope:all", &json!({}), &c));
    assert!(eval("system:all", &json!({}), &c));
    assert!(!eval("is_admin:1", &json!({}), &c));
    c.is_admin = true;
    assert!(eval("is_admin:True", &json!({}), &c));
    assert!(
        !eval("is_admin:1", &json!({}), &c),
        "str(True) is 'True', as in oslo"
    );
}

#[test]
fn remote_checks_are_false() {
    assert!(!t("http://example.invalid/check"));
    assert!(t("not https://example.invalid/check"));
}

#[test]
fn parse_errors_carry_positions() {
    let cases: &[(&str, usize)] = &[
        ("role:admin and", 14),
        ("role:admin or (role:x", 14),
        ("role:admin )", 11),
        ("(role:admin", 0),
        ("role:a role:b", 7),
        ("and role:a", 0),
        ("role:a or foo", 10),
        ("'quoted'", 0),
        ("project_id:%(x", 11),
        ("project_id:%(x)d", 11),
        ("rule:", 5),
        ("   ", 0),
    ];
    for (rule, pos) in cases {
        match parse(rule) {
            Err(e) => assert_eq!(e.position, *pos, "{rule:?}: {e}"),
            Ok(n) => panic!("{rule:?} parsed as {n:?}"),
        }
    }
    let err = Enforcer::builder()
        .defaults([
            RuleDefault::new("good", "@"),
            RuleDefault::new("bad", "role:a or"),
        ])
        .build();
    match err {
        Err(PolicyLoadError::Parse { rule, source }) => {
            assert_eq!(rule, "bad");
            assert_eq!(source.position, 9);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let deep = format!("{}@{}", "(".repeat(10_000), ")".repeat(10_000));
    assert!(parse(&deep).is_err());
    let deep_not = format!("{}@", "not ".repeat(10_000));
    assert!(parse(&deep_not).is_err());
}

#[test]
fn unknown_rule_reference_is_a_load_error() {
    let err = Enforcer::builder()
        .defaults([RuleDefault::new("a", "role:x or rule:nope")])
        .build()
        .err();
    assert_eq!(
        err,
        Some(PolicyLoadError::UnknownRule {
            rule: "a".into(),
            reference: "nope".into()
        })
    );
}

#[test]
fn cycles_are_load_errors() {
    let err = Enforcer::builder()
        .defaults([
            RuleDefault::new("a", "rule:b"),
            RuleDefault::new("b", "role:x or rule:c"),
            RuleDefault::new("c", "rule:a"),
            RuleDefault::new("d", "rule:a"),
        ])
        .build()
        .err();
    match err {
        Some(PolicyLoadError::Cycle { rule, cycle }) => {
            assert_eq!(rule, "a");
            assert_eq!(cycle, ["a", "b", "c", "a"]);
        }
        other => panic!("{other:?}"),
    }
    let own = Enforcer::builder()
        .defaults([RuleDefault::new("self", "rule:self")])
        .build();
    assert!(matches!(own, Err(PolicyLoadError::Cycle { rule, .. }) if rule == "self"));
    // An override can introduce a cycle too.
    let via_override = Enforcer::builder()
        .defaults([RuleDefault::new("a", "@"), RuleDefault::new("b", "rule:a")])
        .overrides([("a".to_string(), "rule:b".to_string())])
        .build();
    assert!(matches!(via_override, Err(PolicyLoadError::Cycle { .. })));
}

#[test]
fn shared_rules_are_not_cycles() {
    let e = Enforcer::builder()
        .defaults([
            RuleDefault::new("base", "role:x"),
            RuleDefault::new("l", "rule:base"),
            RuleDefault::new("r", "rule:base"),
            RuleDefault::new("top", "rule:l and rule:r"),
        ])
        .build();
    assert!(e.is_ok());
}

fn sample() -> EnforcerBuilder {
    Enforcer::builder().defaults([
        RuleDefault::new("admin_required", "role:admin"),
        RuleDefault::new(
            "svc:get",
            "rule:admin_required or project_id:%(target.project_id)s",
        )
        .scope_types(&[ScopeType::Project, ScopeType::System])
        .description("Show a thing.\nSecond line."),
        RuleDefault::new("svc:sys", "role:reader").scope_types(&[ScopeType::System]),
        RuleDefault::new("svc:any", "role:reader"),
    ])
}

#[test]
fn overrides_replace_defaults_and_may_add_rules() -> Result<(), PolicyLoadError> {
    let target = json!({"target": {"project_id": "p1"}});
    let e = sample().build()?;
    assert!(e.check("svc:get", &target, &creds(&["reader"])));

    let e = sample()
        .overrides_file("\"svc:get\": \"rule:ops\"\nops: role:operator\n")?
        .build()?;
    assert!(!e.check("svc:get", &target, &creds(&["reader"])));
    assert!(e.check("svc:get", &target, &creds(&["Operator"])));
    assert!(!e.is_registered("ops"));
    assert!(e.is_registered("svc:get"));
    // The registered scope types still apply to an overridden rule; a domain-scoped
    // token is refused, an unscoped one counts as project-scoped (as in oslo).
    let mut domain_scoped = creds(&["operator"]);
    domain_scoped.project_id = None;
    domain_scoped.domain_id = Some("d1".into());
    assert!(matches!(
        e.authorize("svc:get", &target, &domain_scoped),
        Err(PolicyError::InvalidScope { .. })
    ));
    let mut unscoped = creds(&["operator"]);
    unscoped.project_id = None;
    assert!(e.check("svc:get", &target, &unscoped));

    let json_file = r#"{"svc:any": "", "svc:sys": "!"}"#;
    let e = sample().overrides_file(json_file)?.build()?;
    assert!(e.check("svc:any", &target, &creds(&[])));
    let mut sys = creds(&["reader"]);
    sys.system_scope = Some("all".into());
    assert!(!e.check("svc:sys", &target, &sys));
    Ok(())
}

#[test]
fn override_file_forms() -> Result<(), PolicyLoadError> {
    assert_eq!(load_overrides("")?, Vec::new());
    assert_eq!(load_overrides("# only a comment\n")?, Vec::new());
    assert_eq!(
        load_overrides("a:\nb: [[\"role:x\", \"role:y\"], [\"role:z\"]]\nc: []\n")?,
        vec![
            ("a".to_string(), String::new()),
            (
                "b".to_string(),
                "(role:x and role:y) or (role:z)".to_string()
            ),
            ("c".to_string(), "@".to_string()),
        ]
    );
    assert!(matches!(
        load_overrides("- a\n"),
        Err(PolicyLoadError::Document(_))
    ));
    assert!(matches!(
        load_overrides("a: 5\n"),
        Err(PolicyLoadError::InvalidEntry { rule, .. }) if rule == "a"
    ));
    assert!(matches!(
        load_overrides("{not json"),
        Err(PolicyLoadError::Document(_))
    ));
    Ok(())
}

#[test]
fn fallback_to_default_rule() -> Result<(), PolicyLoadError> {
    let c = creds(&["member"]);
    let without = sample().build()?;
    assert_eq!(
        without.authorize("svc:unknown", &json!({}), &c),
        Err(PolicyError::Denied {
            action: "svc:unknown".into()
        })
    );
    let with = sample()
        .defaults([RuleDefault::new(DEFAULT_RULE, "role:member")])
        .build()?;
    assert!(with.check("svc:unknown", &json!({}), &c));
    assert!(!with.check("svc:unknown", &json!({}), &creds(&["reader"])));
    // The fallback has no scope types of its own, so an unscoped token gets through.
    let mut unscoped = creds(&["member"]);
    unscoped.project_id = None;
    assert!(with.check("svc:unknown", &json!({}), &unscoped));
    Ok(())
}

#[test]
fn scope_types_are_enforced() -> Result<(), PolicyLoadError> {
    let e = sample().build()?;
    let project_reader = creds(&["reader"]);
    let mut system_reader = creds(&["reader"]);
    system_reader.project_id = None;
    system_reader.system_scope = Some("all".into());
    let mut domain_reader = creds(&["reader"]);
    domain_reader.project_id = None;
    domain_reader.domain_id = Some("d1".into());

    assert!(e.check("svc:sys", &json!({}), &system_reader));
    let err = e.authorize("svc:sys", &json!({}), &project_reader);
    assert_eq!(
        err,
        Err(PolicyError::InvalidScope {
            action: "svc:sys".into(),
            required: vec![ScopeType::System],
            actual: Some(ScopeType::Project),
        })
    );
    if let Err(err) = err {
        assert_eq!(err.action(), "svc:sys");
        assert_eq!(
            err.to_string(),
            "svc:sys requires a token scoped to system; the request's token is project-scoped"
        );
    }
    assert!(matches!(
        e.authorize(
            "svc:get",
            &json!({"target": {"project_id": "p1"}}),
            &domain_reader
        ),
        Err(PolicyError::InvalidScope {
            actual: Some(ScopeType::Domain),
            ..
        })
    ));
    // No scope_types: any token, even unscoped, reaches the check.
    let mut unscoped = creds(&["reader"]);
    unscoped.project_id = None;
    assert!(e.check("svc:any", &json!({}), &unscoped));
    // A denied check on an in-scope request is Denied, not InvalidScope.
    assert!(matches!(
        e.authorize("svc:sys", &json!({}), &{
            let mut c = system_reader.clone();
            c.roles.clear();
            c
        }),
        Err(PolicyError::Denied { .. })
    ));

    let lax = sample().enforce_scope(false).build()?;
    assert!(lax.check("svc:sys", &json!({}), &project_reader));
    Ok(())
}

#[test]
fn defaults_document_forms() -> Result<(), PolicyLoadError> {
    let doc = r#"
rules:
  short: "role:a"
  full:
    check: "rule:short"
    scope_types: [system, project]
    description: "Full form."
  empty: {check: ""}
"#;
    let d = load_defaults(doc)?;
    assert_eq!(
        d,
        vec![
            RuleDefault::new("short", "role:a"),
            RuleDefault::new("full", "rule:short")
                .scope_types(&[ScopeType::System, ScopeType::Project])
                .description("Full form."),
            RuleDefault::new("empty", ""),
        ]
    );
    assert!(matches!(
        load_defaults("rules:\n  x: {check: '@', scope_types: [galaxy]}\n"),
        Err(PolicyLoadError::InvalidEntry { rule, .. }) if rule == "x"
    ));
    assert!(matches!(
        load_defaults("rules:\n  x: {check: '@', scopes: [system]}\n"),
        Err(PolicyLoadError::InvalidEntry { rule, .. }) if rule == "x"
    ));
    assert!(matches!(
        load_defaults("nope: 1\n"),
        Err(PolicyLoadError::Document(_))
    ));
    let dup = Enforcer::builder()
        .defaults([RuleDefault::new("a", "@"), RuleDefault::new("a", "!")])
        .build();
    assert_eq!(
        dup.err(),
        Some(PolicyLoadError::DuplicateDefault { rule: "a".into() })
    );
    Ok(())
}

#[test]
fn rendered_policy_round_trips() -> Result<(), PolicyLoadError> {
    let e = sample()
        .overrides([
            ("svc:any".to_string(), "role:\"odd\" or 'x':y".to_string()),
            ("extra".to_string(), "@".to_string()),
        ])
        .build()?;
    let yaml = e.render_yaml();
    assert!(
        yaml.contains("# Show a thing.\n# Second line.\n# Intended scope(s): project, system\n")
    );
    assert!(yaml.contains("# Overridden; default: \"role:reader\"\n"));
    assert!(yaml.contains("# Operator-defined rule"));
    let back = load_overrides(&yaml)?;
    assert_eq!(back.len(), 5);
    assert!(back.contains(&("svc:any".to_string(), "role:\"odd\" or 'x':y".to_string())));
    assert!(back.contains(&(
        "svc:get".to_string(),
        "rule:admin_required or project_id:%(target.project_id)s".to_string()
    )));
    // Feeding the rendering back as overrides changes nothing.
    let again = sample().overrides(back).build()?;
    assert_eq!(again.render_yaml(), yaml);
    Ok(())
}
