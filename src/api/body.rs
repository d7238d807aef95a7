//! `JsonBody<T>`: a JSON request body whose syntax errors are 400 and whose shape errors are 422
//! with a JSON Pointer, both as problem+json.

use crate::error::{fail_data, ApiError, FieldError};
use rocket::data::{Data, FromData, Outcome, ToByteUnit};
use rocket::request::Request;
use rocket_okapi::gen::OpenApiGenerator;
use rocket_okapi::okapi::openapi3::RequestBody;
use rocket_okapi::request::OpenApiFromData;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;

/// Largest accepted JSON body (graphs can be large).
pub const MAX_BODY_BYTES: u64 = 4 * 1024 * 1024;

/// A deserialized JSON request body.
pub struct JsonBody<T>(pub T);

#[rocket::async_trait]
impl<'r, T: DeserializeOwned> FromData<'r> for JsonBody<T> {
    type Error = ApiError;

    async fn from_data(req: &'r Request<'_>, data: Data<'r>) -> Outcome<'r, Self> {
        if let Some(content_type) = req.content_type() {
            if !content_type.is_json() && !content_type.sub().as_str().ends_with("+json") {
                return fail_data(
                    req,
                    ApiError::UnsupportedMediaType(format!(
                        "expected application/json, got {content_type}"
                    )),
                );
            }
        }
        let bytes = match data.open(MAX_BODY_BYTES.bytes()).into_bytes().await {
            Ok(bytes) if bytes.is_complete() => bytes.into_inner(),
            Ok(_) => return fail_data(req, ApiError::PayloadTooLarge),
            Err(err) => {
                return fail_data(
                    req,
                    ApiError::BadRequest(format!("could not read body: {err}")),
                )
            }
        };
        match parse_json(&bytes) {
            Ok(value) => Outcome::Success(JsonBody(value)),
            Err(err) => fail_data(req, err),
        }
    }
}

/// Parses `bytes`: malformed JSON is a 400, well-formed JSON of the wrong shape is a 422.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::BadRequest(format!("malformed JSON: {e}")))?;
    // Every body is an object: serde would otherwise read a struct from an array (`[null]`).
    if !value.is_object() {
        return Err(ApiError::Validation(vec![FieldError::new(
            "",
            "the body must be a JSON object",
        )]));
    }
    crate::domain::graph::typed(&value)
        .map_err(|(pointer, message)| ApiError::Validation(vec![FieldError::new(pointer, message)]))
}

impl<'r, T: DeserializeOwned + JsonSchema> OpenApiFromData<'r> for JsonBody<T> {
    fn request_body(gen: &mut OpenApiGenerator) -> rocket_okapi::Result<RequestBody> {
        <rocket::serde::json::Json<T> as OpenApiFromData>::request_body(gen)
    }
}

pub use crate::domain::schema::present_or_null;

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Sample {
        name: String,
        items: Vec<u32>,
    }

    fn pointer_of(body: &str) -> String {
        match parse_json::<Sample>(body.as_bytes()) {
            Err(ApiError::Validation(errors)) => errors[0].pointer.clone(),
            other => panic!("expected validation error, got {other:?}"),
        }
    }

    #[test]
    fn errors_point_into_the_body() {
        assert!(matches!(
            parse_json::<Sample>(b"{not json"),
            Err(ApiError::BadRequest(_))
        ));
        assert_eq!(pointer_of(r#"{"items": []}"#), "/name");
        assert_eq!(pointer_of("[null, null]"), "");
        assert_eq!(pointer_of("42"), "");
        assert_eq!(pointer_of(r#"{"name": 1, "items": []}"#), "/name");
        assert_eq!(
            pointer_of(r#"{"name": "a", "items": [1, "x"]}"#),
            "/items/1"
        );
        assert_eq!(
            pointer_of(r#"{"name": "a", "items": [], "zzz": 1}"#),
            "/zzz"
        );
    }
}
