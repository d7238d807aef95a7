//! JSON Schema pieces for the API document that `schemars` derives cannot express alone.

/// A string schema limited to `values` (for `#[schemars(schema_with)]` on `String` fields), so
/// the document lists the same values the handlers check.
pub fn string_enum(values: &[&str]) -> schemars::schema::Schema {
    schemars::schema::Schema::Object(schemars::schema::SchemaObject {
        instance_type: Some(schemars::schema::InstanceType::String.into()),
        enum_values: Some(values.iter().map(|v| serde_json::json!(v)).collect()),
        ..Default::default()
    })
}
