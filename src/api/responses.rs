//! Success responders with the headers our contract needs (`Location`, `ETag`), documented.

use rocket::http::{Header, Status};
use rocket::request::Request;
use rocket::response::{self, Responder, Response};
use rocket::serde::json::Json;
use rocket_okapi::gen::OpenApiGenerator;
use rocket_okapi::okapi::openapi3::Responses;
use rocket_okapi::response::OpenApiResponderInner;
use rocket_okapi::util::set_status_code;
use schemars::JsonSchema;
use serde::Serialize;

/// `201 Created` with `Location` and the resource.
pub struct Created<T> {
    /// Path of the new resource.
    pub location: String,
    /// The resource.
    pub body: T,
}

/// `202 Accepted` with `Location` and the resource in its pending state.
pub struct Accepted<T> {
    /// Path of the resource.
    pub location: String,
    /// The resource.
    pub body: T,
}

/// `200 OK` with an `ETag`.
pub struct Tagged<T> {
    /// The entity tag, quoted.
    pub etag: String,
    /// The representation.
    pub body: T,
}

/// `204 No Content`.
pub struct NoContent;

/// `200 OK` with JSON already serialized (a remembered answer), documented as `T`.
pub struct JsonText<T> {
    /// The JSON text.
    pub json: std::sync::Arc<str>,
    /// What the text is.
    pub of: std::marker::PhantomData<T>,
}

impl<T> JsonText<T> {
    /// The answer `json`, which is a serialized `T`.
    pub fn new(json: std::sync::Arc<str>) -> Self {
        Self {
            json,
            of: std::marker::PhantomData,
        }
    }
}

fn json_with<T: Serialize>(
    req: &Request<'_>,
    body: T,
    status: Status,
    header: Option<Header<'static>>,
) -> response::Result<'static> {
    let mut response = Response::build_from(Json(body).respond_to(req)?);
    response.status(status);
    if let Some(header) = header {
        response.header(header);
    }
    Ok(response.finalize())
}

impl<'r, T: Serialize> Responder<'r, 'static> for Created<T> {
    fn respond_to(self, req: &'r Request<'_>) -> response::Result<'static> {
        json_with(
            req,
            self.body,
            Status::Created,
            Some(Header::new("Location", self.location)),
        )
    }
}

impl<'r, T: Serialize> Responder<'r, 'static> for Accepted<T> {
    fn respond_to(self, req: &'r Request<'_>) -> response::Result<'static> {
        json_with(
            req,
            self.body,
            Status::Accepted,
            Some(Header::new("Location", self.location)),
        )
    }
}

impl<'r, T: Serialize> Responder<'r, 'static> for Tagged<T> {
    fn respond_to(self, req: &'r Request<'_>) -> response::Result<'static> {
        json_with(
            req,
            self.body,
            Status::Ok,
            Some(Header::new("ETag", self.etag)),
        )
    }
}

impl<'r> Responder<'r, 'static> for NoContent {
    fn respond_to(self, _req: &'r Request<'_>) -> response::Result<'static> {
        Response::build().status(Status::NoContent).ok()
    }
}

fn json_responses<T: Serialize + JsonSchema + Send>(
    gen: &mut OpenApiGenerator,
    status: u16,
) -> rocket_okapi::Result<Responses> {
    let mut responses = <Json<T> as OpenApiResponderInner>::responses(gen)?;
    set_status_code(&mut responses, status)?;
    Ok(responses)
}

impl<T: Serialize + JsonSchema + Send> OpenApiResponderInner for Created<T> {
    fn responses(gen: &mut OpenApiGenerator) -> rocket_okapi::Result<Responses> {
        json_responses::<T>(gen, 201)
    }
}

impl<T: Serialize + JsonSchema + Send> OpenApiResponderInner for Accepted<T> {
    fn responses(gen: &mut OpenApiGenerator) -> rocket_okapi::Result<Responses> {
        json_responses::<T>(gen, 202)
    }
}

impl<T: Serialize + JsonSchema + Send> OpenApiResponderInner for Tagged<T> {
    fn responses(gen: &mut OpenApiGenerator) -> rocket_okapi::Result<Responses> {
        json_responses::<T>(gen, 200)
    }
}

impl<'r, T> Responder<'r, 'static> for JsonText<T> {
    fn respond_to(self, _req: &'r Request<'_>) -> response::Result<'static> {
        let body = self.json.to_string();
        Response::build()
            .status(Status::Ok)
            .header(rocket::http::ContentType::JSON)
            .sized_body(body.len(), std::io::Cursor::new(body))
            .ok()
    }
}

impl<T: Serialize + JsonSchema + Send> OpenApiResponderInner for JsonText<T> {
    fn responses(gen: &mut OpenApiGenerator) -> rocket_okapi::Result<Responses> {
        <Json<T> as OpenApiResponderInner>::responses(gen)
    }
}

impl OpenApiResponderInner for NoContent {
    fn responses(gen: &mut OpenApiGenerator) -> rocket_okapi::Result<Responses> {
        <rocket::response::status::NoContent as OpenApiResponderInner>::responses(gen)
    }
}

/// `200 OK` with an `application/yaml` body (kubeconfigs).
pub struct Yaml(pub String);

impl<'r> Responder<'r, 'static> for Yaml {
    fn respond_to(self, _req: &'r Request<'_>) -> response::Result<'static> {
        Response::build()
            .status(Status::Ok)
            .header(rocket::http::ContentType::new("application", "yaml"))
            .sized_body(self.0.len(), std::io::Cursor::new(self.0))
            .ok()
    }
}

impl OpenApiResponderInner for Yaml {
    fn responses(_gen: &mut OpenApiGenerator) -> rocket_okapi::Result<Responses> {
        use rocket_okapi::okapi::openapi3::{MediaType, RefOr, Response as OpenApiResponse};
        let mut content = rocket_okapi::okapi::Map::new();
        content.insert("application/yaml".to_owned(), MediaType::default());
        let mut responses = Responses::default();
        responses.responses.insert(
            "200".to_owned(),
            RefOr::Object(OpenApiResponse {
                description: "A kubeconfig (YAML).".to_owned(),
                content,
                ..Default::default()
            }),
        );
        Ok(responses)
    }
}
