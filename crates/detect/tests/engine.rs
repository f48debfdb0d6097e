//! The engine and the rule language: compile errors, operators, exceptions, overrides, kind
//! indexing, evidence, aggregation keys and findings.

// Test helpers outside #[test] functions (event builders, table checkers) fail by panicking,
// which clippy's allow-*-in-tests settings do not cover.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use peregrine_detect::{
    AggregationResource, Catalog, Engine, EngineWarning, KeyScope, Match, Maturity, RuleError,
    RuleSet, to_finding,
};
use peregrine_event::{Kind, Timestamp};
use peregrine_finding::{FindingEnv, severity_label};
use peregrine_testkit::builders::finding_env;
use serde_json::{Value, json};

/// A one-rule YAML file around a condition (and optional extra keys).
fn rule_yaml(kinds: &str, condition: &str, extra: &str) -> String {
    format!(
        "version: 1.0.0\nrules:\n  - id: test-rule\n    maturity: stable\n    title: Test rule fired\n    type: Execution:Runtime/Test\n    severity: 5\n    kinds: {kinds}\n    condition: {condition}\n{extra}"
    )
}

fn compile(kinds: &str, condition: &str, extra: &str) -> Result<RuleSet, RuleError> {
    RuleSet::from_yaml("user.yaml", &rule_yaml(kinds, condition, extra))
}

fn engine_of(kinds: &str, condition: &str, extra: &str) -> Engine {
    match compile(kinds, condition, extra) {
        Ok(set) => Engine::new([set]),
        Err(e) => panic!("{e}"),
    }
}

fn fires(engine: &Engine, e: E) -> bool {
    !eval(engine, &e.ev()).is_empty()
}

fn err(kinds: &str, condition: &str, extra: &str) -> String {
    match compile(kinds, condition, extra) {
        Ok(_) => panic!("expected an error for {condition}"),
        Err(e) => e.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// Compile errors: precise, naming the set, the rule and the problem.

#[test]
fn unknown_field_is_named_with_a_suggestion() {
    let e = compile("[open]", "{field: file.pathh, op: eq, value: /x}", "").unwrap_err();
    assert!(
        matches!(&e, RuleError::UnknownField { field, suggestion: Some("file.path"), at } if field == "file.pathh" && at.rule == "test-rule" && at.set == "user.yaml"),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains("user.yaml")
            && msg.contains("test-rule")
            && msg.contains("file.pathh")
            && msg.contains("did you mean `file.path`"),
        "{msg}"
    );
}

#[test]
fn unknown_operator() {
    let e = compile(
        "[open]",
        "{field: file.path, op: startswith, value: /x}",
        "",
    )
    .unwrap_err();
    assert!(
        matches!(&e, RuleError::UnknownOperator { op, .. } if op == "startswith"),
        "{e:?}"
    );
    assert!(
        e.to_string().contains("prefix"),
        "lists the known operators: {e}"
    );
}

#[test]
fn type_mismatches() {
    // gt on a string.
    let e = compile("[open]", "{field: file.path, op: gt, value: 3}", "").unwrap_err();
    assert!(
        matches!(&e, RuleError::OperatorNotForType { op, ty: "string", .. } if op == "gt"),
        "{e:?}"
    );
    // A string where an integer is needed.
    let e = err("[exec]", "{field: process.uid, op: eq, value: root}", "");
    assert!(e.contains("\"root\" is not an integer"), "{e}");
    // A number where a string is needed.
    let e = err("[exec]", "{field: process.name, op: eq, value: 123}", "");
    assert!(
        e.contains("expected a string") && e.contains("quote it"),
        "{e}"
    );
    // A bool field compared with a string.
    let e = err(
        "[open]",
        "{field: file.write, op: eq, value: yes please}",
        "",
    );
    assert!(e.contains("expected true or false"), "{e}");
    // An IP that is not one.
    let e = err(
        "[connect]",
        "{field: net.address, op: in, values: [10.0.0.1, 10.0.0.256]}",
        "",
    );
    assert!(e.contains("10.0.0.256"), "{e}");
    // Context-only fields in a condition.
    let e = compile(
        "[exec]",
        "{field: exec.new_binary.modified_by, op: exists}",
        "",
    )
    .unwrap_err();
    assert!(matches!(e, RuleError::ContextOnlyField { .. }), "{e:?}");
    // `container` is presence only.
    let e = compile("[exec]", "{field: container, op: eq, value: true}", "").unwrap_err();
    assert!(matches!(e, RuleError::OperatorNotForType { .. }), "{e:?}");
}

#[test]
fn value_shape_errors() {
    assert!(
        err(
            "[exec]",
            "{field: process.name, op: eq, values: [a, b]}",
            ""
        )
        .contains("use `in`")
    );
    assert!(err("[exec]", "{field: process.name, op: eq}", "").contains("a value is required"));
    assert!(
        err("[exec]", "{field: process.name, op: exists, value: x}", "").contains("takes no value")
    );
    assert!(err("[exec]", "{field: process.name, op: in, values: []}", "").contains("empty"));
    assert!(
        err(
            "[exec]",
            "{field: process.name, op: eq, value: a, values: [b]}",
            ""
        )
        .contains("not both")
    );
    assert!(
        err(
            "[exec]",
            "{field: process.uid, op: eq, value: 0, ignore_case: true}",
            ""
        )
        .contains("ignore_case")
    );
    assert!(err("[open]", "{field: file.flags, op: bits_any, value: 0}", "").contains("positive"));
    // Closed value sets catch typos.
    assert!(err("[open]", "{field: kind, op: eq, value: opne}", "").contains("open"));
    assert!(
        err(
            "[open]",
            "{field: file.operation, op: eq, value: write}",
            ""
        )
        .contains("Write")
    );
    // Globs with syntax we do not support are refused, not taken literally.
    let e = err(
        "[open]",
        "{field: file.path, op: glob, value: \"/etc/cron.{daily,weekly}/*\"}",
        "",
    );
    assert!(e.contains("not supported"), "{e}");
}

#[test]
fn structure_errors() {
    assert!(err("[open]", "{all: []}", "").contains("empty list"));
    assert!(
        err("[open]", "{al: [{field: kind, op: exists}]}", "")
            .contains("unknown condition key `al`")
    );
    assert!(
        err("[open]", "{field: kind, op: exists, valeu: 1}", "").contains("unknown key `valeu`")
    );
    assert!(err("[open]", "[{field: kind, op: exists}]", "").contains("a condition is a mapping"));
    let e = compile("[]", "{field: kind, op: exists}", "").unwrap_err();
    assert!(matches!(e, RuleError::NoKinds { .. }), "{e:?}");
    let e = compile("[exec, teleport]", "{field: kind, op: exists}", "").unwrap_err();
    assert!(
        matches!(&e, RuleError::UnknownKind { kind, .. } if kind == "teleport"),
        "{e:?}"
    );
    // A field no event of the rule's kinds carries.
    let e = compile("[exec]", "{field: file.path, op: eq, value: /x}", "").unwrap_err();
    assert!(
        matches!(&e, RuleError::FieldNeverPresent { field, .. } if field == "file.path"),
        "{e:?}"
    );
    assert!(e.to_string().contains("open, rename"), "{e}");
    // Unknown top-level keys (a misspelt `exceptions`) are YAML errors with a location.
    let e = compile("[open]", "{field: kind, op: exists}", "    exeptions: []\n").unwrap_err();
    assert!(
        matches!(&e, RuleError::Yaml { message, .. } if message.contains("exeptions") && message.contains("line")),
        "{e:?}"
    );
}

#[test]
fn rule_metadata_errors() {
    let bad_sev = "version: 1.0.0\nrules:\n  - {id: r, maturity: stable, title: t, type: 'Execution:Runtime/X', severity: 11, kinds: [exec], condition: {field: kind, op: exists}}\n";
    assert!(matches!(
        RuleSet::from_yaml("u", bad_sev),
        Err(RuleError::BadSeverity { .. })
    ));
    let bad_type = "version: 1.0.0\nrules:\n  - {id: r, maturity: stable, title: t, type: 'not a type', severity: 5, kinds: [exec], condition: {field: kind, op: exists}}\n";
    assert!(matches!(
        RuleSet::from_yaml("u", bad_type),
        Err(RuleError::BadFindingType { .. })
    ));
    let bad_id = "version: 1.0.0\nrules:\n  - {id: 'a b', maturity: stable, title: t, type: 'Execution:Runtime/X', severity: 5, kinds: [exec], condition: {field: kind, op: exists}}\n";
    assert!(matches!(
        RuleSet::from_yaml("u", bad_id),
        Err(RuleError::BadId { .. })
    ));
    let dup = "version: 1.0.0\nrules:\n  - {id: r, maturity: stable, title: t, type: 'Execution:Runtime/X', severity: 5, kinds: [exec], condition: {field: kind, op: exists}}\n  - {id: r, maturity: stable, title: t, type: 'Execution:Runtime/X', severity: 5, kinds: [exec], condition: {field: kind, op: exists}}\n";
    assert!(matches!(
        RuleSet::from_yaml("u", dup),
        Err(RuleError::DuplicateRuleId { .. })
    ));
}

#[test]
fn pack_version_and_maturity_are_required_and_checked() {
    let one = |header: &str, maturity: &str| {
        RuleSet::from_yaml(
            "u.yaml",
            &format!(
                "{header}rules:\n  - {{id: r, {maturity}title: t, type: 'Execution:Runtime/X', severity: 5, kinds: [exec], condition: {{field: kind, op: exists}}}}\n"
            ),
        )
    };
    let set = one("version: 1.4.2\n", "maturity: incubating, ").unwrap();
    let info = set.rules().next().unwrap();
    assert_eq!(info.pack_version, "1.4.2");
    assert_eq!(info.maturity, Maturity::Incubating);
    let m = eval(&Engine::new([set]), &E::exec("/bin/true").ev());
    assert_eq!(
        (m[0].maturity, m[0].pack_version.as_str()),
        (Maturity::Incubating, "1.4.2")
    );

    let e = one("", "maturity: stable, ").unwrap_err();
    assert!(
        matches!(&e, RuleError::BadPackVersion { set, reason } if set == "u.yaml" && reason.contains("`version` is missing")),
        "{e:?}"
    );
    let e = one("version: 2.0.0\n", "maturity: stable, ").unwrap_err();
    assert!(
        e.to_string().contains("\"2.0.0\" is newer") && e.to_string().contains("1.x.y"),
        "{e}"
    );
    // A newer pack may use keys this build does not know: the version is what is reported.
    let e = RuleSet::from_yaml("u.yaml", "version: 2.0.0\nimports: [x]\n").unwrap_err();
    assert!(matches!(e, RuleError::BadPackVersion { .. }), "{e:?}");
    let e = one("version: one\n", "maturity: stable, ").unwrap_err();
    assert!(e.to_string().contains("MAJOR.MINOR.PATCH"), "{e}");

    let e = one("version: 1.0.0\n", "").unwrap_err();
    assert!(
        matches!(&e, RuleError::BadMaturity { at, reason } if at.rule == "r" && at.set == "u.yaml" && reason.contains("`maturity` is missing")),
        "{e:?}"
    );
    let e = one("version: 1.0.0\n", "maturity: beta, ").unwrap_err();
    assert!(
        e.to_string()
            .contains("rule \"r\", maturity: unknown maturity \"beta\""),
        "{e}"
    );
}

#[test]
fn the_catalog_loads_stable_rules_unless_asked_for_more() {
    assert_eq!(Catalog::DEFAULT_MATURITIES, [Maturity::Stable]);
    let default = Catalog::builtin().unwrap();
    assert!(default.rules().all(|r| r.maturity == Maturity::Stable));
    assert!(default.rules().all(|r| r.pack_version == "1.0.0"));
    let all = Catalog::with_maturities(&Maturity::ALL).unwrap();
    // The incubating rules today are the suspicious-command ones (new, not yet run against a
    // fleet); asking for every maturity adds exactly those.
    let incubating: Vec<&str> = all
        .rules()
        .filter(|r| r.maturity == Maturity::Incubating)
        .map(|r| r.id)
        .collect();
    assert!(!incubating.is_empty());
    assert!(
        incubating
            .iter()
            .all(|id| id.starts_with("suspicious-command-")),
        "{incubating:?}"
    );
    assert_eq!(all.len(), default.len() + incubating.len());
    assert!(
        default
            .rules()
            .all(|r| !r.id.starts_with("suspicious-command-"))
    );
    assert!(
        Catalog::with_maturities(&[Maturity::Sandbox])
            .unwrap()
            .is_empty()
    );

    let mut mixed = RuleSet::from_yaml(
        "u.yaml",
        "version: 1.0.0\nrules:\n  - {id: a, maturity: stable, title: t, type: 'Execution:Runtime/X', severity: 5, kinds: [exec], condition: {field: kind, op: exists}}\n  - {id: b, maturity: sandbox, title: t, type: 'Execution:Runtime/X', severity: 5, kinds: [exec], condition: {field: kind, op: exists}}\n",
    )
    .unwrap();
    mixed.retain_maturities(&[Maturity::Stable, Maturity::Incubating]);
    assert_eq!(mixed.rules().map(|r| r.id).collect::<Vec<_>>(), ["a"]);
}

#[test]
fn every_error_in_a_file_is_reported() {
    let yaml = "version: 1.0.0\nrules:\n  - {id: a, maturity: stable, title: t, type: 'Execution:Runtime/X', severity: 5, kinds: [exec], condition: {field: nope, op: exists}}\n  - {id: b, maturity: stable, title: t, type: 'Execution:Runtime/X', severity: 5, kinds: [exec], condition: {field: process.uid, op: glob, value: x}}\n  - {id: c, maturity: stable, title: t, type: 'Execution:Runtime/X', severity: 5, kinds: [exec], condition: {field: process.uid, op: eq, value: 0}}\n";
    let e = RuleSet::from_yaml("u", yaml).unwrap_err();
    let all = e.errors();
    assert_eq!(all.len(), 2, "{e}");
    assert!(
        e.to_string().contains("\"a\"") && e.to_string().contains("\"b\""),
        "{e}"
    );
}

#[test]
fn exception_and_context_errors() {
    let exc = |s: &str| compile("[exec]", "{field: kind, op: exists}", s);
    let e = exc(
        "    exceptions:\n      - {name: x, fields: [process.name, process.exe], values: [[a]]}\n",
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("values[0] has 1 values for 2 fields"),
        "{e}"
    );
    let e = exc("    exceptions:\n      - {name: x, fields: [process.name], ops: [eq, eq], values: [[a]]}\n").unwrap_err();
    assert!(e.to_string().contains("one operator per field"), "{e}");
    let e = exc("    exceptions:\n      - {name: x, fields: [process.nam], values: [[a]]}\n")
        .unwrap_err();
    assert!(matches!(e, RuleError::UnknownField { .. }), "{e:?}");
    let e = exc("    context:\n      socketPth: process.exe\n").unwrap_err();
    assert!(
        matches!(
            &e,
            RuleError::UnknownContextTarget {
                suggestion: Some("socketPath"),
                ..
            }
        ),
        "{e:?}"
    );
    let e = exc("    context:\n      modifyingProcess: process.exe\n").unwrap_err();
    assert!(
        e.to_string().contains("does not fit `modifyingProcess`"),
        "{e}"
    );
    let e = exc("    context:\n      ianaProtocolNumber: {value: tcp}\n").unwrap_err();
    assert!(matches!(e, RuleError::BadContext { .. }), "{e:?}");
    let e = exc("    aggregate_by: [container]\n").unwrap_err();
    assert!(matches!(e, RuleError::BadAggregateBy { .. }), "{e:?}");
}

#[test]
fn a_bad_user_rule_never_affects_builtin_rules() {
    let user = RuleSet::from_yaml(
        "user.yaml",
        &rule_yaml("[open]", "{field: file.path, op: gt, value: 1}", ""),
    );
    assert!(user.is_err());
    // The loader keeps going with what loaded: built-ins still detect.
    let engine = Engine::new([Catalog::builtin().unwrap()].into_iter().chain(user.ok()));
    assert!(fires(&engine, E::open("/tmp/release_agent", WRITE)));

    // A user rule that reuses a built-in id is ignored, with a warning; the built-in stays.
    let clash = RuleSet::from_yaml(
        "user.yaml",
        "version: 1.0.0\nrules:\n  - {id: cgroups-release-agent-modified, maturity: stable, title: mine, type: 'Execution:Runtime/X', severity: 2, kinds: [exec], condition: {field: kind, op: exists}}\n",
    )
    .unwrap();
    let engine = Engine::new([Catalog::builtin().unwrap(), clash]);
    assert!(
        matches!(&engine.warnings()[0], EngineWarning::DuplicateRule { ignored_from, .. } if ignored_from == "user.yaml")
    );
    let m = eval(&engine, &E::open("/tmp/release_agent", WRITE).ev());
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].severity, 8.0);
    assert!(eval(&engine, &E::exec("/bin/true").ev()).is_empty());
}

// ---------------------------------------------------------------------------------------------
// Operators.

#[test]
fn operator_semantics() {
    let cases: Vec<(&str, &str, E, bool)> = vec![
        (
            "[exec]",
            "{field: process.name, op: eq, value: curl}",
            E::exec("/usr/bin/curl"),
            true,
        ),
        (
            "[exec]",
            "{field: process.name, op: eq, value: Curl}",
            E::exec("/usr/bin/curl"),
            false,
        ),
        (
            "[exec]",
            "{field: process.name, op: eq, value: Curl, ignore_case: true}",
            E::exec("/usr/bin/curl"),
            true,
        ),
        (
            "[exec]",
            "{field: process.name, op: neq, value: curl}",
            E::exec("/usr/bin/wget"),
            true,
        ),
        (
            "[exec]",
            "{field: process.name, op: neq, value: curl}",
            E::exec("/usr/bin/curl"),
            false,
        ),
        // A missing field satisfies nothing but `not exists`, not even neq.
        (
            "[exec]",
            "{field: container.image, op: neq, value: x}",
            E::exec("/bin/x").host(),
            false,
        ),
        (
            "[exec]",
            "{not: {field: container, op: exists}}",
            E::exec("/bin/x").host(),
            true,
        ),
        (
            "[exec]",
            "{field: process.exe, op: prefix, values: [/tmp/, /dev/shm/]}",
            E::exec("/dev/shm/x"),
            true,
        ),
        (
            "[exec]",
            "{field: process.exe, op: suffix, value: .sh}",
            E::exec("/tmp/a.sh"),
            true,
        ),
        (
            "[exec]",
            "{field: process.exe, op: contains, value: /.cache/}",
            E::exec("/root/.cache/x"),
            true,
        ),
        (
            "[exec]",
            "{field: process.exe, op: glob, value: \"/home/*/bin/*\"}",
            E::exec("/home/u/bin/x"),
            true,
        ),
        (
            "[exec]",
            "{field: process.exe, op: glob, value: \"/home/*/bin/*\"}",
            E::exec("/home/u/x/bin/y"),
            false,
        ),
        // Lists: any element.
        (
            "[exec]",
            "{field: process.argv, op: eq, value: -e}",
            E::exec("/bin/nc").argv(&["nc", "-e", "/bin/sh"]),
            true,
        ),
        (
            "[exec]",
            "{field: process.argv, op: neq, value: -e}",
            E::exec("/bin/nc").argv(&["nc", "-e", "/bin/sh"]),
            false,
        ),
        (
            "[exec]",
            "{field: ancestors.name, op: in, values: [containerd-shim-runc-v2]}",
            E::exec("/bin/x"),
            true,
        ),
        (
            "[exec]",
            "{field: parent.name, op: eq, value: sh}",
            E::exec("/bin/x"),
            true,
        ),
        (
            "[exec]",
            "{field: process.cmdline, op: contains, value: \"-e /bin/sh\"}",
            E::exec("/bin/nc").argv(&["nc", "-e", "/bin/sh"]),
            true,
        ),
        // Integers.
        (
            "[exec]",
            "{field: process.uid, op: gt, value: 999}",
            E::exec("/bin/x"),
            true,
        ),
        (
            "[exec]",
            "{field: process.uid, op: lt, value: 1000}",
            E::exec("/bin/x"),
            false,
        ),
        (
            "[exec]",
            "{field: process.uid, op: lte, value: 1000}",
            E::exec("/bin/x"),
            true,
        ),
        (
            "[exec]",
            "{field: process.uid, op: gte, value: 1001}",
            E::exec("/bin/x"),
            false,
        ),
        (
            "[exec]",
            "{field: process.uid, op: in, values: [0, 1000]}",
            E::exec("/bin/x"),
            true,
        ),
        (
            "[chmod]",
            "{field: file.mode, op: bits_any, value: \"0o6000\"}",
            E::chmod("/tmp/x", 0o4755),
            true,
        ),
        (
            "[chmod]",
            "{field: file.mode, op: bits_all, value: \"0o6000\"}",
            E::chmod("/tmp/x", 0o4755),
            false,
        ),
        (
            "[chmod]",
            "{field: file.mode, op: bits_all, value: 0x800}",
            E::chmod("/tmp/x", 0o4755),
            true,
        ),
        // IPs and ports.
        (
            "[connect]",
            "{field: net.address, op: in, values: [169.254.169.254, \"fd00:ec2::254\"]}",
            E::connect_inet("169.254.169.254", 80),
            true,
        ),
        (
            "[connect]",
            "{field: net.address, op: eq, value: 169.254.169.254}",
            E::connect_inet("10.0.0.1", 80),
            false,
        ),
        (
            "[connect]",
            "{all: [{field: net.family, op: eq, value: inet}, {field: net.port, op: eq, value: 80}]}",
            E::connect_inet("10.0.0.1", 80),
            true,
        ),
        // Booleans.
        (
            "[open]",
            "{field: file.write, op: eq, value: false}",
            E::open("/x", O_RDONLY),
            true,
        ),
        (
            "[open]",
            "{field: file.write, op: neq, value: true}",
            E::open("/x", WRITE),
            false,
        ),
        (
            "[exec]",
            "{field: exec.new_binary, op: eq, value: false}",
            E::exec("/x"),
            true,
        ),
    ];
    for (kinds, cond, e, want) in cases {
        let engine = engine_of(kinds, cond, "");
        assert_eq!(fires(&engine, e), want, "{cond}");
    }
}

#[test]
fn in_with_a_large_list_uses_the_set() {
    let names: Vec<String> = (0..5000).map(|i| format!("\"bad{i}.example\"")).collect();
    let cond = format!(
        "{{field: process.name, op: in, values: [{}]}}",
        names.join(", ")
    );
    let engine = engine_of("[exec]", &cond, "");
    assert!(fires(&engine, E::exec("/x/bad4999.example")));
    assert!(fires(&engine, E::exec("/x/bad0.example")));
    assert!(!fires(&engine, E::exec("/x/bad5000.example")));
    // Evidence summarises the list rather than copying 5000 values into every finding.
    let m = eval(&engine, &E::exec("/x/bad42.example").ev());
    assert_eq!(m[0].evidence[0].expected, json!("bad42.example"));
}

// ---------------------------------------------------------------------------------------------
// Exceptions and overrides.

#[test]
fn exceptions_suppress_matching_tuples_only() {
    let extra = "    exceptions:\n      - name: build-tools\n        fields: [container.image, process.exe]\n        ops: [prefix, in]\n        values:\n          - [ci.example.com/, [/usr/bin/make, /usr/bin/cc]]\n          - [public.ecr.aws/nginx/, /usr/sbin/nginx]\n";
    let engine = engine_of("[exec]", "{field: process.uid, op: gte, value: 0}", extra);
    let ci = E::exec("/usr/bin/make").image("ci.example.com/runner:1");
    assert!(!fires(&engine, ci.clone()), "first tuple");
    assert!(!fires(&engine, E::exec("/usr/sbin/nginx")), "second tuple");
    // A tuple only applies when every field matches.
    assert!(fires(&engine, E::exec("/usr/bin/make")), "image differs");
    let other = E::exec("/usr/bin/curl").image("ci.example.com/runner:1");
    assert!(fires(&engine, other), "exe differs");
    // An exception on a field the event lacks never applies.
    assert!(fires(&engine, E::exec("/usr/bin/make").host()));
}

#[test]
fn exists_false_scopes_an_exception_to_the_host() {
    let extra = "    exceptions:\n      - name: host-make\n        fields: [container, process.exe]\n        ops: [exists, eq]\n        values:\n          - [false, /usr/bin/make]\n";
    let engine = engine_of("[exec]", "{field: process.uid, op: gte, value: 0}", extra);
    assert!(
        !fires(&engine, E::exec("/usr/bin/make").host()),
        "on the host"
    );
    assert!(fires(&engine, E::exec("/usr/bin/make")), "in a container");
    assert!(fires(&engine, E::exec("/tmp/make").host()), "another path");
    // `true` is plain `exists`.
    let extra = extra.replace("[false,", "[true,");
    let engine = engine_of("[exec]", "{field: process.uid, op: gte, value: 0}", &extra);
    assert!(!fires(&engine, E::exec("/usr/bin/make")));
    assert!(fires(&engine, E::exec("/usr/bin/make").host()));
    // In a condition too.
    let engine = engine_of("[exec]", "{field: container, op: exists, value: false}", "");
    assert!(fires(&engine, E::exec("/usr/bin/make").host()));
    assert!(!fires(&engine, E::exec("/usr/bin/make")));
    assert!(
        err("[exec]", "{field: container, op: exists, value: 1}", "").contains("`true` or `false`")
    );
}

#[test]
fn process_script_is_an_absolute_first_argument() {
    let engine = engine_of(
        "[exec]",
        "{field: process.script, op: eq, value: /usr/bin/dnf}",
        "",
    );
    let dnf = |argv: &[&str]| E::exec("/usr/bin/python3.9").argv(argv);
    assert!(fires(
        &engine,
        dnf(&["/usr/bin/python3", "/usr/bin/dnf", "install"])
    ));
    // Whatever argv[0] says.
    assert!(fires(&engine, dnf(&["yum", "/usr/bin/dnf"])));
    assert!(!fires(
        &engine,
        dnf(&["/usr/bin/python3", "-W", "/usr/bin/dnf", "/tmp/x.py"])
    ));
    assert!(!fires(&engine, dnf(&["/usr/bin/dnf"])));
}

#[test]
fn overrides_disable_or_add_exceptions_to_builtin_rules() {
    let user = RuleSet::from_yaml(
        "site.yaml",
        "version: 1.0.0\noverrides:\n  - rule: new-binary-executed\n    exceptions:\n      - name: ci-runners\n        fields: [container.image]\n        ops: [prefix]\n        values: [[ci.example.com/]]\n  - rule: suspicious-tool-network-sniffer\n    enabled: false\n  - rule: no-such-rule\n    enabled: false\n",
    )
    .unwrap();
    let engine = Engine::new([Catalog::builtin().unwrap(), user]);
    assert_eq!(
        engine.warnings(),
        &[EngineWarning::UnknownOverrideTarget {
            set: "site.yaml".into(),
            rule: "no-such-rule".into()
        }]
    );
    let ci = E::exec("/tmp/built")
        .new_binary(None)
        .image("ci.example.com/runner:1");
    assert!(eval(&engine, &ci.ev()).is_empty());
    assert!(!eval(&engine, &E::exec("/tmp/built").new_binary(None).ev()).is_empty());
    assert!(eval(&engine, &E::exec("/usr/sbin/tcpdump").ev()).is_empty());
    assert!(
        !engine
            .candidates(Kind::Exec)
            .any(|id| id == "suspicious-tool-network-sniffer")
    );
    // The built-in set alone is unchanged.
    assert!(!eval(builtin(), &E::exec("/usr/sbin/tcpdump").ev()).is_empty());
}

// ---------------------------------------------------------------------------------------------
// Kind indexing.

#[test]
fn events_only_visit_rules_of_their_kind() {
    // Always true, but only declared for exec.
    let set = RuleSet::from_yaml(
        "u",
        "version: 1.0.0\nrules:\n  - {id: any-exec, maturity: stable, title: t, type: 'Execution:Runtime/X', severity: 5, kinds: [exec], condition: {field: process.pid, op: gte, value: 0}}\n  - {id: any-connect, maturity: stable, title: t, type: 'Execution:Runtime/X', severity: 5, kinds: [connect], condition: {field: process.pid, op: gte, value: 0}}\n",
    )
    .unwrap();
    let engine = Engine::new([set]);
    let ids = |e: E| {
        eval(&engine, &e.ev())
            .into_iter()
            .map(|m| m.rule_id)
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(E::exec("/bin/x")), ["any-exec"]);
    assert_eq!(ids(E::connect_unix("/x")), ["any-connect"]);
    assert!(ids(E::open("/x", WRITE)).is_empty());
    assert!(ids(E::fork()).is_empty());

    let b = builtin();
    let connect: Vec<&str> = b.candidates(Kind::Connect).collect();
    assert_eq!(connect, ["docker-socket-accessed"]);
    let exec: Vec<&str> = b.candidates(Kind::Exec).collect();
    assert!(exec.contains(&"elevation-to-root") && exec.contains(&"runc-container-escape"));
    assert!(!exec.contains(&"docker-socket-accessed"));
    for k in [Kind::Fork, Kind::Exit, Kind::Loss] {
        assert_eq!(b.candidates(k).count(), 0, "{k:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Evidence, aggregation, findings.

fn release_agent_match() -> (Match, peregrine_event::Event) {
    fire(
        "cgroups-release-agent-modified",
        E::open("/sys/fs/cgroup/x/release_agent", WRITE).by("/usr/bin/tee"),
    )
}

#[test]
fn evidence_lists_each_matched_predicate_with_the_actual_value() {
    let (m, _) = release_agent_match();
    let ev: Vec<(String, String, Value, Value)> = m
        .evidence
        .iter()
        .map(|e| {
            (
                e.field.clone(),
                e.operator.clone(),
                e.expected.clone(),
                e.actual.clone(),
            )
        })
        .collect();
    assert_eq!(
        ev,
        [
            ("kind".into(), "eq".into(), json!("open"), json!("open")),
            ("file.write".into(), "eq".into(), json!(true), json!(true)),
            (
                "file.basename".into(),
                "eq".into(),
                json!("release_agent"),
                json!("release_agent")
            ),
        ]
    );
    // Under `not`, the leaf that held false is reported as "not <op>".
    let (m, _) = fire(
        "docker-socket-accessed",
        E::connect_unix("/var/run/docker.sock"),
    );
    let neg = m.evidence.iter().find(|e| e.field == "net.result").unwrap();
    assert_eq!(neg.operator, "not in");
    assert_eq!(neg.expected, json!([-2, -20, -111]));
    assert_eq!(neg.actual, json!(0));
    let glob = m.evidence.iter().find(|e| e.field == "net.path").unwrap();
    assert_eq!(
        glob.expected,
        json!("**/docker.sock"),
        "the pattern that matched"
    );
    assert_eq!(glob.actual, json!("/var/run/docker.sock"));
}

/// A scope in account `111122223333`, cluster `prod`, on `node`.
fn scope(node: &str) -> KeyScope<'_> {
    KeyScope {
        account_id: "111122223333",
        cluster_name: "prod",
        node_name: node,
    }
}

#[test]
fn aggregation_keys_are_stable_and_distinguish_resources() {
    let (a, _) = fire("crypto-miner-executed", E::exec("/tmp/xmrig"));
    let (b, _) = fire(
        "crypto-miner-executed",
        E::exec("/tmp/xmrig").argv(&["xmrig", "--other-args"]),
    );
    let n1 = scope("node-1");
    assert_eq!(
        a.aggregation_key(&n1),
        b.aggregation_key(&n1),
        "same exe, same container"
    );
    assert_eq!(
        a.aggregation.resource,
        AggregationResource::Container(CONTAINER_ID.into())
    );
    let key = a.aggregation_key(&n1);
    assert_eq!(
        key,
        format!(
            "34:Impact:Runtime/CryptoMinerExecuted|12:111122223333|4:prod|74:container:{CONTAINER_ID}|10:/tmp/xmrig|"
        )
    );
    // A container's key does not depend on the node.
    assert_eq!(key, a.aggregation_key(&scope("node-2")));

    let (c, _) = fire("crypto-miner-executed", E::exec("/opt/xmrig"));
    assert_ne!(c.aggregation_key(&n1), key, "aggregate_by process.exe");
    let (h, _) = fire("crypto-miner-executed", E::exec("/tmp/xmrig").host());
    assert_eq!(h.aggregation.resource, AggregationResource::Host);
    assert_eq!(
        h.aggregation_key(&n1),
        "34:Impact:Runtime/CryptoMinerExecuted|12:111122223333|4:prod|11:host:node-1|10:/tmp/xmrig|"
    );
    assert_ne!(h.aggregation_key(&n1), h.aggregation_key(&scope("node-2")));
    // Length prefixes: a value containing the separator cannot forge another key.
    let (x, _) = fire("crypto-miner-executed", E::exec("/tmp/xmrig|10:/tmp/xmrig"));
    assert_ne!(x.aggregation_key(&n1), key);
}

#[test]
fn aggregation_keys_are_scoped_to_the_account_and_cluster() {
    let (container, _) = fire("crypto-miner-executed", E::exec("/tmp/xmrig"));
    let (host, _) = fire("crypto-miner-executed", E::exec("/tmp/xmrig").host());
    let base = scope("node-1");
    let other_cluster = KeyScope {
        cluster_name: "staging",
        ..base
    };
    let other_account = KeyScope {
        account_id: "444455556666",
        ..base
    };
    for m in [&container, &host] {
        let key = m.aggregation_key(&base);
        assert_ne!(key, m.aggregation_key(&other_cluster), "{key}");
        assert_ne!(key, m.aggregation_key(&other_account), "{key}");
    }
    // A cluster name holding the separator cannot forge another cluster's key.
    let forged = KeyScope {
        cluster_name: "prod|11:host:node-1",
        node_name: "x",
        ..base
    };
    assert_ne!(host.aggregation_key(&base), host.aggregation_key(&forged));
}

#[test]
fn to_finding_builds_a_guardduty_shaped_finding() {
    let (m, ev) = release_agent_match();
    let now = Timestamp::from_unix_nanos(T0 + 1_500_000_000);
    let f = to_finding(&m, &ev, &finding_env(), now);
    assert_eq!(
        f.title,
        "Container escape via cgroups release_agent was attempted in pod default/web-1."
    );
    assert!(f.description.contains("Process /usr/bin/tee (pid 4242, uid 1000, euid 1000) in pod default/web-1, container web, image public.ecr.aws/nginx/nginx:1.27 matched rule cgroups-release-agent-modified."), "{}", f.description);
    assert_eq!(f.severity, 8.0);
    assert_eq!(severity_label(f.severity), "High");
    assert_eq!(
        f.id,
        peregrine_finding::finding_id(
            "111122223333",
            "eu-west-1",
            &m.finding_type,
            &m.aggregation_key(&KeyScope::of(&finding_env()))
        )
    );

    let v = serde_json::to_value(&f).unwrap();
    assert_eq!(v["schemaVersion"], "2.0");
    assert_eq!(
        v["type"],
        "PrivilegeEscalation:Runtime/CGroupsReleaseAgentModified"
    );
    assert_eq!(
        v["arn"],
        format!(
            "arn:aws:peregrine:eu-west-1:111122223333:detector/det-1/finding/{}",
            f.id
        )
    );
    assert_eq!(v["createdAt"], "2025-11-24T16:00:01.500Z");
    assert_eq!(v["service"]["eventFirstSeen"], "2025-11-24T16:00:00.000Z");
    assert_eq!(v["service"]["featureName"], "RuntimeMonitoring");
    assert_eq!(v["service"]["count"], 1);
    assert_eq!(v["resource"]["resourceType"], "EKSCluster");
    assert_eq!(
        v["resource"]["kubernetesDetails"]["kubernetesWorkloadDetails"]["name"],
        "web-1"
    );
    assert_eq!(
        v["resource"]["kubernetesDetails"]["kubernetesWorkloadDetails"]["namespace"],
        "default"
    );
    assert_eq!(v["resource"]["containerDetails"]["id"], CONTAINER_ID);
    assert_eq!(
        v["resource"]["containerDetails"]["imagePrefix"],
        "public.ecr.aws/nginx"
    );
    let rd = &v["service"]["runtimeDetails"];
    assert_eq!(rd["process"]["executablePath"], "/usr/bin/tee");
    assert_eq!(rd["process"]["name"], "tee");
    assert_eq!(
        rd["process"]["lineage"][0]["executablePath"], "/bin/sh",
        "nearest ancestor first"
    );
    assert_eq!(
        rd["context"]["releaseAgentPath"],
        "/sys/fs/cgroup/x/release_agent"
    );
    let rule = &v["service"]["detection"]["rule"];
    assert_eq!(rule["id"], "cgroups-release-agent-modified");
    assert_eq!(rule["mitre"][0]["technique"], "T1611");
    assert_eq!(rule["evidence"].as_array().unwrap().len(), 3);
    let info: Value =
        serde_json::from_str(v["service"]["additionalInfo"]["value"].as_str().unwrap()).unwrap();
    assert_eq!(
        info,
        json!({"ruleId": "cgroups-release-agent-modified", "agentDetails": {"agentId": "agent-7", "agentVersion": "0.1.0"}})
    );
}

#[test]
fn to_finding_for_a_host_process_names_the_node() {
    let (m, ev) = fire(
        "elevation-to-root",
        E::exec("/usr/bin/pkexec").uid(1000, 0).host(),
    );
    let f = to_finding(&m, &ev, &finding_env(), Timestamp::from_unix_nanos(T0));
    assert_eq!(
        f.title,
        "A process gained root through a setuid binary in node ip-10-0-1-2.eu-west-1.compute.internal (i-0abc)."
    );
    assert!(f.resource.container_details.is_none());
    assert!(f.resource.kubernetes_details.is_none());
    assert_eq!(
        f.resource
            .instance_details
            .as_ref()
            .unwrap()
            .instance_id
            .as_deref(),
        Some("i-0abc")
    );
    // Two occurrences on the same node aggregate; another node is another finding.
    let f2 = to_finding(&m, &ev, &finding_env(), Timestamp::from_unix_nanos(T0 + 1));
    assert_eq!(f.id, f2.id);
    let other = FindingEnv {
        node_name: "ip-10-0-9-9".into(),
        ..finding_env()
    };
    assert_ne!(
        f.id,
        to_finding(&m, &ev, &other, Timestamp::from_unix_nanos(T0)).id
    );
}

#[test]
fn titles_quote_workload_strings_safely() {
    let e = E::open("/tmp/release_agent", WRITE).pod("default", "evil\nFAKE: all clear\u{1b}[2J");
    let (m, ev) = fire("cgroups-release-agent-modified", e);
    let f = to_finding(&m, &ev, &finding_env(), Timestamp::from_unix_nanos(T0));
    assert!(
        !f.title.contains('\n') && !f.title.contains('\u{1b}'),
        "{:?}",
        f.title
    );
    // The structured member keeps the exact value.
    let w = f
        .resource
        .kubernetes_details
        .unwrap()
        .kubernetes_workload_details
        .unwrap();
    assert_eq!(w.name.as_deref(), Some("evil\nFAKE: all clear\u{1b}[2J"));
}

#[test]
fn one_engine_serves_many_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Engine>();
    send_sync::<RuleSet>();
    let engine = builtin();
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| assert_eq!(eval(engine, &E::exec("/tmp/xmrig").ev()).len(), 1));
        }
    });
}

#[test]
fn no_match_on_the_common_path_leaves_the_output_untouched() {
    let engine = builtin();
    let mut out: Vec<Match> = Vec::with_capacity(4);
    for e in [
        E::open("/var/lib/app/db", WRITE),
        E::connect_inet("10.0.0.1", 443),
        E::exec("/usr/bin/python3"),
    ] {
        engine.evaluate(&e.ev(), &mut out);
    }
    assert!(out.is_empty());
    assert_eq!(out.capacity(), 4);
}

/// A filtered context source gives what its filter matched: a list's matching element rather
/// than the whole list, and a regex's `value` group when it has one.
#[test]
fn filtered_context_takes_the_matched_element_or_group() {
    let extra = "    context:\n      toolName: {fields: [process.argv], op: prefix, values: [--tool=]}\n      serviceName: {fields: [process.cmdline], op: regex, values: ['\\bstop\\s+(?P<value>\\w+)']}\n      commandLineExample: {fields: [process.cmdline], op: regex, values: ['\\bstop\\b']}\n";
    let engine = engine_of("[exec]", "{field: process.uid, op: gte, value: 0}", extra);
    let ctx = |argv: &[&str]| {
        let got = eval(&engine, &E::exec("/usr/bin/x").argv(argv).ev());
        assert_eq!(got.len(), 1);
        got[0].context.clone()
    };
    let c = ctx(&["x", "-v", "--tool=nmap", "stop", "auditd", "now"]);
    assert_eq!(c.tool_name.as_deref(), Some("--tool=nmap"));
    assert_eq!(c.service_name.as_deref(), Some("auditd"));
    // No `value` group: the whole value.
    assert_eq!(
        c.command_line_example.as_deref(),
        Some("x -v --tool=nmap stop auditd now")
    );
    // A filter that does not hold fills nothing.
    let c = ctx(&["x", "start", "auditd"]);
    assert_eq!(c.tool_name, None);
    assert_eq!(c.service_name, None);
    assert_eq!(c.command_line_example, None);
}
