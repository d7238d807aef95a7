//! Request headers as guards: one [`Header`] type reads a header and documents it as an
//! OpenAPI header parameter, so each header a route reads is only its name and description.

use crate::error::ApiError;
use rocket::request::{FromRequest, Outcome, Request};
use rocket_okapi::gen::OpenApiGenerator;
use rocket_okapi::okapi::openapi3::{Object, Parameter, ParameterValue};
use rocket_okapi::request::{OpenApiFromRequest, RequestHeaderInput};
use std::marker::PhantomData;

/// A header a route reads, as a type: the `H` of [`Header<H>`].
pub trait HeaderSpec: Send + Sync + 'static {
    /// The header's name.
    const NAME: &'static str;
    /// Its description in the OpenAPI document.
    const DESCRIPTION: &'static str;
    /// Whether the OpenAPI document marks it required (the guard never fails: the route
    /// decides what a missing header means).
    const REQUIRED: bool;
}

/// The value of header `H`, if the request sent it.
pub struct Header<H> {
    /// The first value sent, if any.
    pub value: Option<String>,
    spec: PhantomData<H>,
}

#[rocket::async_trait]
impl<'r, H: HeaderSpec> FromRequest<'r> for Header<H> {
    type Error = ApiError;

    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, ApiError> {
        Outcome::Success(Header {
            value: req.headers().get_one(H::NAME).map(str::to_owned),
            spec: PhantomData,
        })
    }
}

impl<'r, H: HeaderSpec> OpenApiFromRequest<'r> for Header<H> {
    fn from_request_input(
        gen: &mut OpenApiGenerator,
        _name: String,
        _required: bool,
    ) -> rocket_okapi::Result<RequestHeaderInput> {
        Ok(RequestHeaderInput::Parameter(Parameter {
            name: H::NAME.to_owned(),
            location: "header".to_owned(),
            description: Some(H::DESCRIPTION.to_owned()),
            required: H::REQUIRED,
            deprecated: false,
            allow_empty_value: false,
            value: ParameterValue::Schema {
                style: None,
                explode: None,
                allow_reserved: false,
                schema: gen.json_schema::<String>(),
                example: None,
                examples: None,
            },
            extensions: Object::default(),
        }))
    }
}
