//! The records against the documents earlier builds stored: same JSON text back, defaults for
//! missing fields, PATCH merging metadata, text borrowed when read.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::{Value, json};

use super::agent_tool::ToolKind;
use super::*;

/// The stored text of a record read from `stored` and written back.
fn round_trip<'a, T: Deserialize<'a> + Serialize>(stored: &'a Value) -> String {
    let record = T::deserialize(stored).expect("the stored body reads");
    serde_json::to_string(&to_body(&record).expect("the record writes")).expect("text")
}

/// JSON text as the store writes it.
fn text(value: &Value) -> String {
    serde_json::to_string(value).expect("text")
}

#[test]
fn agents_users_and_tools_write_back_what_was_stored() {
    let agent = json!({
        "name": "Ada", "about": "math", "model": "m1", "instructions": ["one", "two"],
        "default_settings": {"temperature": 0.5, "note": "kept"},
        "metadata": {"team": "red", "n": 2, "nested": {"a": [1, null]}},
    });
    assert_eq!(round_trip::<AgentRecord>(&agent), text(&agent));
    let user = json!({"name": "u", "about": "", "metadata": {}});
    assert_eq!(round_trip::<UserRecord>(&user), text(&user));
    let tool = json!({
        "type": "function", "name": "lookup", "description": "d",
        "function": {"name": "lookup", "description": "d",
                     "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}},
    });
    assert_eq!(round_trip::<AgentToolRecord>(&tool), text(&tool));
}

#[test]
fn sessions_keep_nulls_and_leave_out_unset_optional_fields() {
    // What a create with only an agent stored: nulls for situation, token_budget and
    // context_overflow; no system_template nor tool flags.
    let minimal = json!({
        "agents": ["a1"], "users": [], "situation": null, "metadata": {},
        "token_budget": null, "context_overflow": null,
    });
    assert_eq!(round_trip::<SessionRecord>(&minimal), text(&minimal));
    let full = json!({
        "agents": ["a1", "a2"], "users": ["u1"], "situation": "planning",
        "system_template": "{{agent.name}}", "metadata": {"k": "v"}, "token_budget": 100,
        "context_overflow": "truncate", "render_templates": false, "auto_run_tools": true,
        "forward_tool_calls": false,
    });
    assert_eq!(round_trip::<SessionRecord>(&full), text(&full));
}

#[test]
fn a_new_record_is_what_a_full_create_stored() {
    let mut agent = AgentRecord::default();
    agent.apply(AgentPatch {
        name: Some("A".into()),
        ..AgentPatch::default()
    });
    assert_eq!(
        Value::Object(to_body(&agent).unwrap()),
        json!({"name": "A", "about": "", "model": "", "instructions": [],
               "default_settings": {}, "metadata": {}})
    );
    let mut session = SessionRecord::default();
    session.apply(SessionPatch {
        agents: Some(vec!["a1".into()]),
        ..SessionPatch::default()
    });
    assert_eq!(
        Value::Object(to_body(&session).unwrap()),
        json!({"agents": ["a1"], "users": [], "situation": null, "metadata": {},
               "token_budget": null, "context_overflow": null})
    );
    let tool = AgentToolRecord::new("t".into(), String::new(), no_parameters());
    assert_eq!(
        Value::Object(to_body(&tool).unwrap()),
        json!({"type": "function", "name": "t", "description": "",
               "function": {"name": "t", "description": "",
                            "parameters": {"type": "object", "properties": {}}}})
    );
}

#[test]
fn a_record_with_fields_missing_reads_with_defaults() {
    let stored = json!({"name": "old"});
    let agent: AgentRecord<'_> = AgentRecord::deserialize(&stored).unwrap();
    assert_eq!(agent.name.as_str(), "old");
    assert_eq!(agent.about.as_str(), "");
    assert!(agent.instructions.is_empty() && agent.metadata.is_empty());
    let stored = json!({"agents": ["a"]});
    let session: SessionRecord<'_> = SessionRecord::deserialize(&stored).unwrap();
    assert_eq!(session.situation, None);
    assert_eq!(session.token_budget, None);
    assert!(session.users.is_empty());
    assert_eq!(
        Value::Object(to_body(&session).unwrap()),
        json!({"agents": ["a"], "users": [], "situation": null, "metadata": {},
               "token_budget": null, "context_overflow": null})
    );
    let stored = json!({"name": "t"});
    let tool: AgentToolRecord<'_> = AgentToolRecord::deserialize(&stored).unwrap();
    assert_eq!(tool.kind, ToolKind::Function);
    assert_eq!(tool.function.parameters, no_parameters());
}

#[test]
fn a_patch_merges_metadata_and_keeps_what_it_does_not_name() {
    let stored = json!({"name": "A", "about": "x", "model": "m", "instructions": ["i"],
                        "default_settings": {"seed": 1}, "metadata": {"team": "red", "n": 1}});
    let mut agent: AgentRecord<'_> = AgentRecord::deserialize(&stored).unwrap();
    agent.apply(AgentPatch {
        about: Some("y".into()),
        default_settings: Some(json!({"top_p": 0.5}).as_object().unwrap().clone()),
        metadata: Some(json!({"n": 2, "size": null}).as_object().unwrap().clone()),
        ..AgentPatch::default()
    });
    assert_eq!(
        Value::Object(to_body(&agent).unwrap()),
        json!({"name": "A", "about": "y", "model": "m", "instructions": ["i"],
               "default_settings": {"top_p": 0.5},
               "metadata": {"team": "red", "n": 2, "size": null}})
    );

    let stored = json!({"name": "u", "metadata": {"a": 1}});
    let mut user: UserRecord<'_> = UserRecord::deserialize(&stored).unwrap();
    user.apply(UserPatch {
        metadata: Some(json!({"b": 2}).as_object().unwrap().clone()),
        ..UserPatch::default()
    });
    assert_eq!(user.name.as_str(), "u");
    assert_eq!(Value::Object(user.metadata), json!({"a": 1, "b": 2}));

    let stored = json!({"agents": ["a1"], "users": ["u1"], "situation": "s", "metadata": {"k": 1},
                        "token_budget": 10, "context_overflow": null, "auto_run_tools": true});
    let mut session: SessionRecord<'_> = SessionRecord::deserialize(&stored).unwrap();
    session.apply(SessionPatch {
        situation: Some("review".into()),
        context_overflow: Some(ContextOverflow::Truncate),
        metadata: Some(json!({"j": 2}).as_object().unwrap().clone()),
        ..SessionPatch::default()
    });
    assert_eq!(
        Value::Object(to_body(&session).unwrap()),
        json!({"agents": ["a1"], "users": ["u1"], "situation": "review",
               "metadata": {"k": 1, "j": 2}, "token_budget": 10,
               "context_overflow": "truncate", "auto_run_tools": true})
    );
}

#[test]
fn a_tool_patch_changes_both_copies_of_name_and_description() {
    let mut tool = AgentToolRecord::new("t".into(), "old".into(), no_parameters());
    tool.apply(ToolPatch {
        function_name: Some("from_function".into()),
        description: Some("new".into()),
        ..ToolPatch::default()
    });
    assert_eq!(
        (tool.name.as_str(), tool.function.name.as_str()),
        ("from_function", "from_function")
    );
    assert_eq!(
        (
            tool.description.as_str(),
            tool.function.description.as_str()
        ),
        ("new", "new")
    );
    // The top-level name wins over the function's.
    tool.apply(ToolPatch {
        name: Some("top".into()),
        function_name: Some("inner".into()),
        ..ToolPatch::default()
    });
    assert_eq!(
        (tool.name.as_str(), tool.function.name.as_str()),
        ("top", "top")
    );
}

#[test]
fn reading_for_a_turn_borrows_text_and_skips_what_a_turn_does_not_use() {
    let stored = json!({
        "name": "Ada", "about": "math", "model": "", "instructions": ["one"],
        "default_settings": {"temperature": 0.5, "stop": null, "note": "not for the model"},
        "metadata": {"big": "x".repeat(100)},
    });
    let agent: AgentRecord<'_, ModelSettings, Unread> = AgentRecord::deserialize(&stored).unwrap();
    assert!(matches!(agent.name.0, Cow::Borrowed("Ada")));
    assert!(matches!(agent.instructions[0].0, Cow::Borrowed("one")));
    assert_eq!(
        Value::Object(agent.default_settings.0),
        json!({"temperature": 0.5, "stop": null})
    );
    let stored = json!({"agents": ["a1"], "situation": "s", "system_template": null,
                        "metadata": {"k": "v"}, "context_overflow": "truncate"});
    let session: SessionRecord<'_, Unread> = SessionRecord::deserialize(&stored).unwrap();
    assert!(matches!(session.agents[0].0, Cow::Borrowed("a1")));
    assert!(matches!(session.situation, Some(Text(Cow::Borrowed("s")))));
    assert_eq!(session.system_template, None);
    assert_eq!(session.context_overflow, Some(ContextOverflow::Truncate));
}

#[test]
fn a_body_of_another_shape_is_an_internal_error() {
    let record = Record {
        id: "r".into(),
        parent: None,
        body: json!({"name": 5}),
        created_at: time::OffsetDateTime::UNIX_EPOCH,
        updated_at: time::OffsetDateTime::UNIX_EPOCH,
    };
    assert!(matches!(
        read::<AgentRecord>(&record),
        Err(ApiError::Internal)
    ));
    assert!(matches!(
        read_owned::<AgentRecord<'static>>(&record),
        Err(ApiError::Internal)
    ));
}
