//! Users: name, about, metadata. The stored shape is [`UserRecord`].

use serde::Deserialize;
use serde_json::{Map, Value};

use super::error::ApiError;
use super::records::{UserPatch, UserRecord};
use super::resources::{Mode, Resource, fields};
use crate::store::Collection;

pub(super) struct Users;

#[derive(Deserialize)]
struct UserFields {
    name: Option<String>,
    about: Option<String>,
    metadata: Option<Map<String, Value>>,
}

impl Resource for Users {
    const COLLECTION: Collection = Collection::Users;
    type Record = UserRecord<'static>;
    type Patch = UserPatch;

    fn changes(input: Value, _mode: Mode) -> Result<UserPatch, ApiError> {
        let f: UserFields = fields(input)?;
        Ok(UserPatch {
            name: f.name,
            about: f.about,
            metadata: f.metadata,
        })
    }

    fn apply(record: &mut Self::Record, patch: UserPatch) {
        record.apply(patch);
    }
}
