//! Reading a chat-completions request body the way a strict OpenAI endpoint does: the checks
//! that make real providers answer 400 (unknown fields, tool calls without results, malformed
//! tool definitions), and typed views of the fields the mock answers from.

use serde_json::Value;

use super::conversation;
use super::json_view::Field;
use super::message::Message;
use super::request_body::RequestBody;

/// A validated request, borrowing from its parsed body.
#[derive(Debug)]
pub(crate) struct ChatRequest<'a> {
    pub model: &'a str,
    pub messages: &'a [Message<'a>],
    pub tools: &'a [Value],
    pub tool_choice: ToolChoice<'a>,
    pub stream: bool,
    pub include_usage: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ToolChoice<'a> {
    Auto,
    None,
    Required,
    Function(&'a str),
}

/// Why the request was refused, shaped like OpenAI's `invalid_request_error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InvalidRequest {
    pub message: String,
    pub param: Option<String>,
}

impl InvalidRequest {
    pub(crate) fn new(param: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            param: Some(param.into()),
        }
    }

    pub(crate) fn body(&self) -> Value {
        serde_json::json!({"error": {
            "message": self.message,
            "type": "invalid_request_error",
            "param": self.param,
            "code": null,
        }})
    }
}

pub(crate) type Check<T = ()> = Result<T, InvalidRequest>;

/// Validates `body` and returns the fields the mock needs.
pub(crate) fn read<'a>(body: &'a RequestBody<'a>) -> Check<ChatRequest<'a>> {
    if !body.is_object() {
        return Err(InvalidRequest {
            message: "the request body must be a JSON object".into(),
            param: None,
        });
    }
    if let Some(unknown) = &body.first_unknown_parameter {
        return Err(InvalidRequest::new(
            unknown.as_ref(),
            format!("Unrecognized request argument supplied: {unknown}"),
        ));
    }
    let model = match &body.model {
        Some(Field::Text(model)) if !model.is_empty() => model.as_ref(),
        _ => {
            return Err(InvalidRequest::new(
                "model",
                "you must provide a model parameter",
            ));
        }
    };
    let messages = match &body.messages {
        Some(messages) if !messages.is_empty() => messages.as_slice(),
        Some(_) => {
            return Err(InvalidRequest::new(
                "messages",
                "Invalid 'messages': empty array. Expected an array with minimum length 1.",
            ));
        }
        None => {
            return Err(InvalidRequest::new(
                "messages",
                "Missing required parameter: 'messages'.",
            ));
        }
    };
    conversation::check(messages)?;
    let tools = match &body.tools {
        None => &[][..],
        Some(Value::Array(tools)) if !tools.is_empty() => tools.as_slice(),
        Some(_) => {
            return Err(InvalidRequest::new(
                "tools",
                "Invalid 'tools': expected a non-empty array of tools.",
            ));
        }
    };
    for (index, tool) in tools.iter().enumerate() {
        check_tool(index, tool)?;
    }
    let tool_choice = read_tool_choice(body.tool_choice.as_ref(), tools)?;
    let stream = match &body.stream {
        None | Some(Value::Null) => false,
        Some(Value::Bool(stream)) => *stream,
        Some(_) => return Err(InvalidRequest::new("stream", "'stream' must be a boolean.")),
    };
    let include_usage = match &body.stream_options {
        None | Some(Value::Null) => false,
        Some(_) if !stream => {
            return Err(InvalidRequest::new(
                "stream_options",
                "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            ));
        }
        Some(Value::Object(options)) => match options.get("include_usage") {
            None => false,
            Some(Value::Bool(include)) => *include,
            Some(_) => {
                return Err(InvalidRequest::new(
                    "stream_options.include_usage",
                    "'include_usage' must be a boolean.",
                ));
            }
        },
        Some(_) => {
            return Err(InvalidRequest::new(
                "stream_options",
                "'stream_options' must be an object.",
            ));
        }
    };
    Ok(ChatRequest {
        model,
        messages,
        tools,
        tool_choice,
        stream,
        include_usage,
    })
}

fn check_tool(index: usize, tool: &Value) -> Check {
    let param = || format!("tools[{index}]");
    let function = match (
        tool.get("type").and_then(Value::as_str),
        tool.get("function"),
    ) {
        (Some("function"), Some(Value::Object(function))) => function,
        _ => {
            return Err(InvalidRequest::new(
                param(),
                "each tool must be {\"type\": \"function\", \"function\": {...}}",
            ));
        }
    };
    let name = function.get("name").and_then(Value::as_str).unwrap_or("");
    let name_ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !name_ok {
        return Err(InvalidRequest::new(
            format!("{}.function.name", param()),
            format!(
                "Invalid 'tools[{index}].function.name': string does not match pattern '^[a-zA-Z0-9_-]{{1,64}}$'."
            ),
        ));
    }
    match function.get("parameters") {
        None | Some(Value::Object(_)) => Ok(()),
        Some(_) => Err(InvalidRequest::new(
            format!("{}.function.parameters", param()),
            "'parameters' must be a JSON Schema object.",
        )),
    }
}

fn read_tool_choice<'a>(choice: Option<&'a Value>, tools: &[Value]) -> Check<ToolChoice<'a>> {
    let choice = match choice {
        None | Some(Value::Null) => return Ok(ToolChoice::Auto),
        Some(choice) => choice,
    };
    if tools.is_empty() {
        return Err(InvalidRequest::new(
            "tool_choice",
            "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified.",
        ));
    }
    let forced = choice
        .get("function")
        .and_then(|function| function.get("name"))
        .and_then(Value::as_str);
    match (
        choice.as_str(),
        choice.get("type").and_then(Value::as_str),
        forced,
    ) {
        (Some("auto"), _, _) => Ok(ToolChoice::Auto),
        (Some("none"), _, _) => Ok(ToolChoice::None),
        (Some("required"), _, _) => Ok(ToolChoice::Required),
        (None, Some("function"), Some(name)) if tools.iter().any(|t| tool_name(t) == name) => {
            Ok(ToolChoice::Function(name))
        }
        (None, Some("function"), Some(name)) => Err(InvalidRequest::new(
            "tool_choice",
            format!(
                "Invalid value for 'tool_choice': no function named '{name}' was specified in the 'tools' parameter."
            ),
        )),
        _ => Err(InvalidRequest::new(
            "tool_choice",
            "Invalid value for 'tool_choice': expected 'none', 'auto', 'required' or {\"type\": \"function\", \"function\": {\"name\": ...}}.",
        )),
    }
}

/// The `function.name` of a validated tool definition.
pub(crate) fn tool_name(tool: &Value) -> &str {
    tool.pointer("/function/name")
        .and_then(Value::as_str)
        .unwrap_or("")
}
