//! Reading a chat-completions request body the way a strict OpenAI endpoint does: the checks
//! that make real providers answer 400 (unknown fields, tool calls without results, malformed
//! tool definitions), and typed views of the fields the mock answers from.

use serde_json::{Map, Value};

use super::conversation;

/// Request body parameters the OpenAI endpoint knows; anything else is rejected.
const KNOWN_PARAMETERS: &[&str] = &[
    "model",
    "messages",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "stream",
    "stream_options",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "n",
    "stop",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "logprobs",
    "top_logprobs",
    "user",
    "seed",
    "response_format",
    "service_tier",
    "store",
    "metadata",
    "reasoning_effort",
    "modalities",
    "audio",
    "prediction",
    "functions",
    "function_call",
    "web_search_options",
    "verbosity",
    "safety_identifier",
    "prompt_cache_key",
];

/// A validated request, borrowing from its JSON body.
#[derive(Debug)]
pub(crate) struct ChatRequest<'a> {
    pub model: &'a str,
    pub messages: &'a [Value],
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
pub(crate) fn read(body: &Value) -> Check<ChatRequest<'_>> {
    let Some(object) = body.as_object() else {
        return Err(InvalidRequest {
            message: "the request body must be a JSON object".into(),
            param: None,
        });
    };
    if let Some(unknown) = object
        .keys()
        .find(|key| !KNOWN_PARAMETERS.contains(&key.as_str()))
    {
        return Err(InvalidRequest::new(
            unknown.as_str(),
            format!("Unrecognized request argument supplied: {unknown}"),
        ));
    }
    let model = match object.get("model") {
        Some(Value::String(model)) if !model.is_empty() => model.as_str(),
        _ => {
            return Err(InvalidRequest::new(
                "model",
                "you must provide a model parameter",
            ));
        }
    };
    let messages = match object.get("messages") {
        Some(Value::Array(messages)) if !messages.is_empty() => messages.as_slice(),
        Some(Value::Array(_)) => {
            return Err(InvalidRequest::new(
                "messages",
                "Invalid 'messages': empty array. Expected an array with minimum length 1.",
            ));
        }
        _ => {
            return Err(InvalidRequest::new(
                "messages",
                "Missing required parameter: 'messages'.",
            ));
        }
    };
    conversation::check(messages)?;
    let tools = match object.get("tools") {
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
    let tool_choice = read_tool_choice(object, tools)?;
    let stream = match object.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(stream)) => *stream,
        Some(_) => return Err(InvalidRequest::new("stream", "'stream' must be a boolean.")),
    };
    let include_usage = match object.get("stream_options") {
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
    let param = format!("tools[{index}]");
    let function = match (
        tool.get("type").and_then(Value::as_str),
        tool.get("function"),
    ) {
        (Some("function"), Some(Value::Object(function))) => function,
        _ => {
            return Err(InvalidRequest::new(
                param,
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
            format!("{param}.function.name"),
            format!(
                "Invalid 'tools[{index}].function.name': string does not match pattern '^[a-zA-Z0-9_-]{{1,64}}$'."
            ),
        ));
    }
    match function.get("parameters") {
        None | Some(Value::Object(_)) => Ok(()),
        Some(_) => Err(InvalidRequest::new(
            format!("{param}.function.parameters"),
            "'parameters' must be a JSON Schema object.",
        )),
    }
}

fn read_tool_choice<'a>(object: &'a Map<String, Value>, tools: &[Value]) -> Check<ToolChoice<'a>> {
    let choice = match object.get("tool_choice") {
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

/// The text of a message's content: a string, or the `text` parts of a list joined by newlines.
pub(crate) fn content_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(parts)) => {
            let texts: Vec<&str> = parts
                .iter()
                .filter_map(|part| part.get("text").and_then(Value::as_str))
                .collect();
            texts.join("\n")
        }
        _ => String::new(),
    }
}

/// Characters of text in a message's content, without building the text.
pub(crate) fn content_chars(content: Option<&Value>) -> usize {
    match content {
        Some(Value::String(text)) => text.chars().count(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|part| part.get("text").and_then(Value::as_str))
            .map(|text| text.chars().count())
            .sum(),
        _ => 0,
    }
}

pub(crate) fn role(message: &Value) -> &str {
    message.get("role").and_then(Value::as_str).unwrap_or("")
}
