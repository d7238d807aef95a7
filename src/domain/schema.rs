//! JSON Schema pieces for the API document that `schemars` derives cannot express alone, and
//! the serde helper for PATCH fields that `null` clears.

/// A string schema limited to `values` (for `#[schemars(schema_with)]` on `String` fields), so
/// the document lists the same values the handlers check.
pub fn string_enum(values: &[&str]) -> schemars::schema::Schema {
    schemars::schema::Schema::Object(schemars::schema::SchemaObject {
        instance_type: Some(schemars::schema::InstanceType::String.into()),
        enum_values: Some(values.iter().map(|v| serde_json::json!(v)).collect()),
        ..Default::default()
    })
}

/// Tells a field sent as `null` (`Some(None)`: clear it) from one left out (`None`: keep it).
pub fn present_or_null<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Option<String>>, D::Error> {
    Ok(Some(<Option<String> as serde::Deserialize>::deserialize(
        deserializer,
    )?))
}
