//! Query parameters that are refused when malformed: Rocket's `Option<T>` turns a value that
//! does not parse (`?limit=abc`) into `None`, silently ignoring it. [`Strict<T>`] keeps the
//! failure so the handler answers 400, and documents the parameter with `T`'s schema.

use crate::error::ApiError;
use rocket::form::{
    self, error::ErrorKind, DataField, FromForm, FromFormField, Options, ValueField,
};
use schemars::gen::SchemaGenerator;
use schemars::schema::{InstanceType, Schema, SchemaObject};
use schemars::JsonSchema;
use std::str::FromStr;

/// An optional query parameter of type `T`: absent is `None`, present but malformed is a
/// 400 when read with [`Strict::get`].
#[derive(Debug)]
pub struct Strict<T>(Result<Option<T>, String>);

impl<T> Strict<T> {
    /// A present value (for calls from code rather than from a request).
    pub fn of(value: T) -> Self {
        Self(Ok(Some(value)))
    }

    /// An absent value.
    pub fn absent() -> Self {
        Self(Ok(None))
    }

    /// The value, `None` when absent; 400 naming `name` when it did not parse.
    pub fn get(self, name: &str) -> Result<Option<T>, ApiError> {
        self.0
            .map_err(|reason| ApiError::BadRequest(format!("query parameter {name}: {reason}")))
    }
}

#[rocket::async_trait]
impl<'v, T: FromForm<'v> + Send> FromForm<'v> for Strict<T> {
    /// `T`'s context, and whether the parameter was sent with an empty value.
    type Context = (<T as FromForm<'v>>::Context, bool);

    fn init(_opts: Options) -> Self::Context {
        // Strict: a repeated parameter (`?limit=1&limit=2`) is an error, not the first wins.
        (T::init(Options::Strict), false)
    }

    fn push_value(ctxt: &mut Self::Context, field: ValueField<'v>) {
        // `?cursor=` is neither a value nor absent: the document's formats have no empty
        // string, so the server refuses it too (omit the parameter instead).
        ctxt.1 |= field.value.is_empty();
        T::push_value(&mut ctxt.0, field)
    }

    async fn push_data(ctxt: &mut Self::Context, field: DataField<'v, '_>) {
        T::push_data(&mut ctxt.0, field).await
    }

    fn finalize((inner, empty): Self::Context) -> form::Result<'v, Self> {
        if empty {
            return Ok(Strict(Err(
                "must not be empty (omit the parameter instead)".to_owned(),
            )));
        }
        Ok(Strict(match T::finalize(inner) {
            Ok(value) => Ok(Some(value)),
            Err(errors) if errors.iter().all(|e| matches!(e.kind, ErrorKind::Missing)) => Ok(None),
            Err(errors) => Err(errors
                .iter()
                .map(|e| e.kind.to_string())
                .collect::<Vec<_>>()
                .join("; ")),
        }))
    }

    fn default(_opts: Options) -> Option<Self> {
        Some(Strict(Ok(None)))
    }
}

impl<T: JsonSchema> JsonSchema for Strict<T> {
    fn schema_name() -> String {
        T::schema_name()
    }

    fn is_referenceable() -> bool {
        false
    }

    fn json_schema(gen: &mut SchemaGenerator) -> Schema {
        // Marked nullable so rocket_okapi documents the parameter as optional; the document's
        // post-processing turns that into `required: false` (a query value is never null).
        let mut schema = gen.subschema_for::<T>().into_object();
        schema
            .extensions
            .insert("nullable".to_owned(), serde_json::Value::Bool(true));
        Schema::Object(schema)
    }
}

/// `?limit=`: a page size in `1..=MAX_LIMIT`; anything else is 400.
#[derive(Debug, Clone, Copy)]
pub struct PageLimit(pub u64);

#[rocket::async_trait]
impl<'v> FromFormField<'v> for PageLimit {
    fn from_value(field: ValueField<'v>) -> form::Result<'v, Self> {
        let max = super::pagination::MAX_LIMIT;
        match field.value.parse::<u64>() {
            Ok(n) if (1..=max).contains(&n) => Ok(PageLimit(n)),
            _ => Err(form::Error::validation(format!(
                "limit must be a whole number between 1 and {max}, got {:?}",
                field.value
            ))
            .into()),
        }
    }
}

impl JsonSchema for PageLimit {
    fn schema_name() -> String {
        "PageLimit".to_owned()
    }

    fn is_referenceable() -> bool {
        false
    }

    fn json_schema(_gen: &mut SchemaGenerator) -> Schema {
        let max = super::pagination::MAX_LIMIT;
        let mut schema = SchemaObject {
            instance_type: Some(InstanceType::Integer.into()),
            format: Some("int64".to_owned()),
            ..SchemaObject::default()
        };
        schema.number().minimum = Some(1.0);
        schema.number().maximum = Some(max as f64);
        schema.metadata().default = Some(super::pagination::DEFAULT_LIMIT.into());
        schema.metadata().description = Some(format!("Page size, 1 to {max}."));
        Schema::Object(schema)
    }
}

/// A key type lists page by: parsed from `?cursor=` and documented with its format, so every
/// cursor the document allows is one the server accepts.
pub trait CursorKey: FromStr + Send {
    /// The schema of the key as text.
    fn cursor_schema() -> SchemaObject;

    /// Whether a parsed key can be one of this list's keys at all.
    fn plausible(&self) -> bool {
        true
    }
}

/// A string schema of the given pattern and length bounds.
fn text_schema(pattern: &str, min: u32, max: u32) -> SchemaObject {
    let mut schema = SchemaObject {
        instance_type: Some(InstanceType::String.into()),
        ..SchemaObject::default()
    };
    schema.string().pattern = Some(pattern.to_owned());
    schema.string().min_length = Some(min);
    schema.string().max_length = Some(max);
    schema
}

impl CursorKey for uuid::Uuid {
    fn cursor_schema() -> SchemaObject {
        let mut schema = text_schema(
            "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$",
            36,
            36,
        );
        schema.format = Some("uuid".to_owned());
        schema
    }
}

impl CursorKey for i64 {
    fn cursor_schema() -> SchemaObject {
        text_schema("^-?[0-9]{1,18}$", 1, 19)
    }
}

impl CursorKey for i32 {
    fn cursor_schema() -> SchemaObject {
        text_schema("^-?[0-9]{1,9}$", 1, 10)
    }
}

impl CursorKey for String {
    fn cursor_schema() -> SchemaObject {
        text_schema("^[^\\u0000-\\u001f\\u007f-\\u009f]+$", 1, 512)
    }

    /// Names and subjects never hold control characters.
    fn plausible(&self) -> bool {
        !self.chars().any(char::is_control)
    }
}

/// `?cursor=`: the previous page's `next_cursor` (the key of its last item); anything that is
/// not a key of this list is 400 (and an empty value is refused by [`Strict`]).
#[derive(Debug)]
pub struct Cursor<K>(pub K);

#[rocket::async_trait]
impl<'v, K: CursorKey> FromFormField<'v> for Cursor<K> {
    fn from_value(field: ValueField<'v>) -> form::Result<'v, Self> {
        if field.value.len() > 512 {
            return Err(form::Error::validation("cursor is not valid for this list").into());
        }
        match field.value.parse::<K>() {
            Ok(key) if key.plausible() => Ok(Cursor(key)),
            _ => Err(form::Error::validation("cursor is not valid for this list").into()),
        }
    }
}

impl<K: CursorKey> JsonSchema for Cursor<K> {
    fn schema_name() -> String {
        "Cursor".to_owned()
    }

    fn is_referenceable() -> bool {
        false
    }

    fn json_schema(_gen: &mut SchemaGenerator) -> Schema {
        let mut schema = K::cursor_schema();
        schema.metadata().description =
            Some("The previous page's `next_cursor`; absent for the first page.".to_owned());
        Schema::Object(schema)
    }
}
