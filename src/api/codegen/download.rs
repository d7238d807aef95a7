//! The file download responder of codegen artifacts and bundles.

use rocket::http::{ContentType, Header, Status};
use rocket::response::{self, Responder, Response};
use rocket::Request;
use rocket_okapi::gen::OpenApiGenerator;
use rocket_okapi::okapi::openapi3::Responses;
use rocket_okapi::response::OpenApiResponderInner;

/// `200 OK` with a file's bytes and its media type.
pub struct FileDownload {
    pub(super) content_type: String,
    pub(super) file_name: Option<String>,
    pub(super) sha256: Option<String>,
    pub(super) body: Vec<u8>,
}

impl<'r> Responder<'r, 'static> for FileDownload {
    fn respond_to(self, _req: &'r Request<'_>) -> response::Result<'static> {
        let content_type = ContentType::parse_flexible(&self.content_type)
            .unwrap_or(ContentType::new("application", "octet-stream"));
        let mut response = Response::build();
        response.status(Status::Ok).header(content_type);
        if let Some(name) = self.file_name {
            response.header(Header::new(
                "Content-Disposition",
                format!("attachment; filename=\"{name}\""),
            ));
        }
        if let Some(sha) = self.sha256 {
            response.header(Header::new("ETag", format!("\"{sha}\"")));
        }
        response
            .sized_body(self.body.len(), std::io::Cursor::new(self.body))
            .ok()
    }
}

impl OpenApiResponderInner for FileDownload {
    fn responses(_gen: &mut OpenApiGenerator) -> rocket_okapi::Result<Responses> {
        use rocket_okapi::okapi::openapi3::{MediaType, RefOr, Response as OpenApiResponse};
        let mut content = rocket_okapi::okapi::Map::new();
        for media_type in ["application/yaml", "application/gzip"] {
            content.insert(media_type.to_owned(), MediaType::default());
        }
        let mut responses = Responses::default();
        responses.responses.insert(
            "200".to_owned(),
            RefOr::Object(OpenApiResponse {
                description: "The file (YAML for a manifest, gzip for the bundle).".to_owned(),
                content,
                ..Default::default()
            }),
        );
        Ok(responses)
    }
}
