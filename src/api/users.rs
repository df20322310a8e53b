//! Users: name, about, metadata.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::error::ApiError;
use super::resources::{Mode, Resource, fields, put_opt};
use crate::store::Collection;

pub struct Users;

#[derive(Deserialize)]
struct UserFields {
    name: Option<String>,
    about: Option<String>,
    metadata: Option<Map<String, Value>>,
}

impl Resource for Users {
    const COLLECTION: Collection = Collection::Users;

    fn normalize(input: Value, mode: Mode) -> Result<Map<String, Value>, ApiError> {
        let f: UserFields = fields(input)?;
        let mut body = Map::new();
        if mode == Mode::Full {
            body.insert("name".into(), json!(f.name.unwrap_or_default()));
            body.insert("about".into(), json!(f.about.unwrap_or_default()));
            body.insert("metadata".into(), json!(f.metadata.unwrap_or_default()));
        } else {
            put_opt(&mut body, "name", f.name);
            put_opt(&mut body, "about", f.about);
            put_opt(&mut body, "metadata", f.metadata);
        }
        Ok(body)
    }
}
