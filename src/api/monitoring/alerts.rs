//! `/v1/orgs/{org_id}/alert-channels` and `/v1/orgs/{org_id}/alert-rules` (admin+).

use crate::api::body::JsonBody;
use crate::api::pagination::{page_request, Cursor, Limit, Page, Strict};
use crate::api::responses::{Created, NoContent};
use crate::app::AppState;
use crate::auth::{Admin, OrgAccess};
use crate::error::ApiError;
use crate::resources::alerts::{
    ChannelInput, ChannelPatch, ChannelTestView, ChannelView, RuleInput, RulePatch, RuleView,
};
use crate::store::{
    self,
    alerts::{Channel, NewRule, Rule},
};
use crate::workers::health::channels::{AlertItem, ChannelSender};
use rocket::serde::json::Json;
use rocket::{delete, get, patch, post, State};
use rocket_okapi::okapi::openapi3::OpenApi;
use rocket_okapi::settings::OpenApiSettings;
use rocket_okapi::{openapi, openapi_get_routes_spec};
use uuid::Uuid;

async fn live_channel(
    db: &impl sea_orm::ConnectionTrait,
    org_id: Uuid,
    id: Uuid,
) -> Result<Channel, ApiError> {
    store::alerts::find_channel(db, org_id, id)
        .await?
        .ok_or(ApiError::NotFound)
}

/// Create an alert channel (admin+). A `webhook` channel's signing secret is answered once.
#[openapi(tag = "Alerting")]
#[post("/v1/orgs/<org_id>/alert-channels", data = "<body>")]
pub async fn create_channel(
    state: &State<AppState>,
    access: OrgAccess<Admin>,
    org_id: Uuid,
    body: JsonBody<ChannelInput>,
) -> Result<Created<ChannelView>, ApiError> {
    let input = body.0;
    let config = input
        .validate(&state.outbound, state.health.smtp_url.is_some())
        .await?;
    let secret = (input.kind == "webhook")
        .then(crate::webhooks::generate_secret)
        .transpose()
        .map_err(|_| ApiError::Internal(anyhow::anyhow!("no randomness for a secret")))?;
    let txn = store::begin_write(&state.db).await?;
    access.recheck(&txn).await?;
    let channel = store::alerts::insert_channel(
        &txn,
        org_id,
        input.name.trim(),
        &input.kind,
        config,
        secret.clone(),
    )
    .await?;
    crate::audit::target("alert_channel", channel.id);
    txn.commit().await?;
    let mut view = ChannelView::from(&channel);
    view.secret = secret;
    Ok(Created {
        location: format!("/v1/orgs/{org_id}/alert-channels/{}", channel.id),
        body: view,
    })
}

/// List alert channels (admin+).
#[openapi(tag = "Alerting")]
#[get("/v1/orgs/<org_id>/alert-channels?<limit>&<cursor>")]
pub async fn list_channels(
    state: &State<AppState>,
    _access: OrgAccess<Admin>,
    org_id: Uuid,
    limit: Limit,
    cursor: Strict<Cursor<Uuid>>,
) -> Result<Json<Page<ChannelView>>, ApiError> {
    let page = page_request(limit, cursor)?;
    let (rows, more) = store::alerts::list_channels(&state.db, org_id, &page).await?;
    Ok(Json(Page::from_rows(
        rows,
        more,
        |c| c.id,
        |c| ChannelView::from(&c),
    )))
}

/// Get one alert channel (admin+).
#[openapi(tag = "Alerting")]
#[get("/v1/orgs/<org_id>/alert-channels/<channel_id>")]
pub async fn get_channel(
    state: &State<AppState>,
    _access: OrgAccess<Admin>,
    org_id: Uuid,
    channel_id: Uuid,
) -> Result<Json<ChannelView>, ApiError> {
    let channel = live_channel(&state.db, org_id, channel_id).await?;
    Ok(Json(ChannelView::from(&channel)))
}

/// Delete an alert channel (admin+); its pending notifications fail.
#[openapi(tag = "Alerting")]
#[delete("/v1/orgs/<org_id>/alert-channels/<channel_id>")]
pub async fn delete_channel(
    state: &State<AppState>,
    _access: OrgAccess<Admin>,
    org_id: Uuid,
    channel_id: Uuid,
) -> Result<NoContent, ApiError> {
    let txn = store::begin_write(&state.db).await?;
    let channel = live_channel(&txn, org_id, channel_id).await?;
    store::alerts::delete_channel(&txn, channel).await?;
    txn.commit().await?;
    Ok(NoContent)
}

/// Send a test notification to the channel now (admin+) and say whether it was accepted.
#[openapi(tag = "Alerting")]
#[post("/v1/orgs/<org_id>/alert-channels/<channel_id>/test")]
pub async fn test_channel(
    state: &State<AppState>,
    _access: OrgAccess<Admin>,
    org_id: Uuid,
    channel_id: Uuid,
) -> Result<Json<ChannelTestView>, ApiError> {
    let channel = live_channel(&state.db, org_id, channel_id).await?;
    let sender = ChannelSender::new(state.outbound.clone(), state.health.clone())
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("alert HTTP client: {e}")))?;
    let item = AlertItem {
        incident_id: Uuid::nil(),
        check_id: Uuid::nil(),
        check_name: "test".to_owned(),
        transition: "test".to_owned(),
        cause: "test".to_owned(),
        target: String::new(),
    };
    let outcome = sender
        .send(&channel, &[item], &store::new_id().to_string())
        .await;
    Ok(Json(ChannelTestView {
        success: outcome.is_ok(),
        error: outcome.err(),
    }))
}

/// 422 unless every channel and the check of `rule` exist in the organization.
async fn check_rule_refs(
    db: &impl sea_orm::ConnectionTrait,
    org_id: Uuid,
    rule: &NewRule,
) -> Result<(), ApiError> {
    for (i, channel) in rule.channels.iter().enumerate() {
        if store::alerts::find_channel(db, org_id, *channel)
            .await?
            .is_none()
        {
            return Err(ApiError::invalid(
                format!("/channels/{i}"),
                "no such alert channel",
            ));
        }
    }
    if let Some(check) = rule.check_id {
        if store::health_checks::find_live(db, org_id, check)
            .await?
            .is_none()
        {
            return Err(ApiError::invalid("/check_id", "no such health check"));
        }
    }
    Ok(())
}

async fn live_rule(
    db: &impl sea_orm::ConnectionTrait,
    org_id: Uuid,
    id: Uuid,
) -> Result<Rule, ApiError> {
    store::alerts::find_rule(db, org_id, id)
        .await?
        .ok_or(ApiError::NotFound)
}

/// Change an alert channel's name or destination (admin+); its kind and secret stay.
#[openapi(tag = "Alerting")]
#[patch("/v1/orgs/<org_id>/alert-channels/<channel_id>", data = "<body>")]
pub async fn update_channel(
    state: &State<AppState>,
    access: OrgAccess<Admin>,
    org_id: Uuid,
    channel_id: Uuid,
    body: JsonBody<ChannelPatch>,
) -> Result<Json<ChannelView>, ApiError> {
    let channel = live_channel(&state.db, org_id, channel_id).await?;
    let input = body.0.apply_to(&channel);
    let config = input
        .validate(&state.outbound, state.health.smtp_url.is_some())
        .await?;
    let txn = store::begin_write(&state.db).await?;
    access.recheck(&txn).await?;
    let channel = live_channel(&txn, org_id, channel_id).await?;
    let before = ChannelView::from(&channel);
    let channel = store::alerts::update_channel(&txn, channel, input.name.trim(), config).await?;
    let view = ChannelView::from(&channel);
    crate::audit::changes(Some(&before), Some(&view));
    txn.commit().await?;
    Ok(Json(view))
}

/// Create an alert rule (admin+): for one check or for every check carrying some labels.
#[openapi(tag = "Alerting")]
#[post("/v1/orgs/<org_id>/alert-rules", data = "<body>")]
pub async fn create_rule(
    state: &State<AppState>,
    access: OrgAccess<Admin>,
    org_id: Uuid,
    body: JsonBody<RuleInput>,
) -> Result<Created<RuleView>, ApiError> {
    let rule = body.0.validate()?;
    let txn = store::begin_write(&state.db).await?;
    access.recheck(&txn).await?;
    check_rule_refs(&txn, org_id, &rule).await?;
    let rule = store::alerts::insert_rule(&txn, org_id, rule).await?;
    crate::audit::target("alert_rule", rule.id);
    txn.commit().await?;
    Ok(Created {
        location: format!("/v1/orgs/{org_id}/alert-rules/{}", rule.id),
        body: RuleView::from(&rule),
    })
}

/// List alert rules (admin+).
#[openapi(tag = "Alerting")]
#[get("/v1/orgs/<org_id>/alert-rules?<limit>&<cursor>")]
pub async fn list_rules(
    state: &State<AppState>,
    _access: OrgAccess<Admin>,
    org_id: Uuid,
    limit: Limit,
    cursor: Strict<Cursor<Uuid>>,
) -> Result<Json<Page<RuleView>>, ApiError> {
    let page = page_request(limit, cursor)?;
    let (rows, more) = store::alerts::list_rules(&state.db, org_id, &page).await?;
    Ok(Json(Page::from_rows(
        rows,
        more,
        |r| r.id,
        |r| RuleView::from(&r),
    )))
}

/// Delete an alert rule (admin+).
#[openapi(tag = "Alerting")]
#[delete("/v1/orgs/<org_id>/alert-rules/<rule_id>")]
pub async fn delete_rule(
    state: &State<AppState>,
    _access: OrgAccess<Admin>,
    org_id: Uuid,
    rule_id: Uuid,
) -> Result<NoContent, ApiError> {
    let txn = store::begin_write(&state.db).await?;
    let rule = store::alerts::find_rule(&txn, org_id, rule_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    store::alerts::delete_rule(&txn, rule).await?;
    txn.commit().await?;
    Ok(NoContent)
}

/// Get one alert rule (admin+).
#[openapi(tag = "Alerting")]
#[get("/v1/orgs/<org_id>/alert-rules/<rule_id>")]
pub async fn get_rule(
    state: &State<AppState>,
    _access: OrgAccess<Admin>,
    org_id: Uuid,
    rule_id: Uuid,
) -> Result<Json<RuleView>, ApiError> {
    let rule = live_rule(&state.db, org_id, rule_id).await?;
    Ok(Json(RuleView::from(&rule)))
}

/// Change an alert rule (admin+): its target (`check_id` or `labels`), channels or timings.
#[openapi(tag = "Alerting")]
#[patch("/v1/orgs/<org_id>/alert-rules/<rule_id>", data = "<body>")]
pub async fn update_rule(
    state: &State<AppState>,
    access: OrgAccess<Admin>,
    org_id: Uuid,
    rule_id: Uuid,
    body: JsonBody<RulePatch>,
) -> Result<Json<RuleView>, ApiError> {
    let txn = store::begin_write(&state.db).await?;
    access.recheck(&txn).await?;
    let rule = live_rule(&txn, org_id, rule_id).await?;
    let before = RuleView::from(&rule);
    let new = body.0.apply_to(&rule).validate()?;
    check_rule_refs(&txn, org_id, &new).await?;
    let rule = store::alerts::update_rule(&txn, rule, new).await?;
    let view = RuleView::from(&rule);
    crate::audit::changes(Some(&before), Some(&view));
    txn.commit().await?;
    Ok(Json(view))
}

/// Routes of this module with their OpenAPI spec.
pub fn routes(settings: &OpenApiSettings) -> (Vec<rocket::Route>, OpenApi) {
    openapi_get_routes_spec![
        settings: create_channel,
        list_channels,
        get_channel,
        update_channel,
        delete_channel,
        test_channel,
        create_rule,
        get_rule,
        update_rule,
        list_rules,
        delete_rule
    ]
}
