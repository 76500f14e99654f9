//! Alerts in the API: raising them after a write and listing them.
//!
//! After a write route's events are durable, the events the rules watch are
//! counted ([`raise`]) and each alert that fires is appended to the log as
//! an audit event of the log's own app (actor `veritrail-alerts`, action
//! `alert.raised`, resource the rule, the alert in the context) through the
//! same path as auditors' reads, then handed to the webhook. Only writers'
//! events are evaluated, never the log's own, so an alert cannot trigger
//! an alert. `GET /v1/alerts` lists them for auditors, newest first, paged,
//! and is itself recorded like every auditor read.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::audit::{
    Access, Who, authorize, own_events_query, record_access, search_before, with_audit_header,
};
use super::{ApiError, AppState};
use crate::alerts::{ALERT_ACTION, ALERT_ACTOR, Observed};
use crate::auth::{INTERNAL_APP, Role};
use crate::crypto::Field;
use crate::event::{self, Outcome};
use crate::search;
use crate::sequencer::Receipt;

/// What the rules need of a batch: the position and observation of each
/// event some rule matches (none when no rules are configured).
pub(super) fn watch(
    st: &AppState,
    app: &str,
    events: &[event::AuditEvent],
) -> Vec<(usize, Observed)> {
    let Some(alerts) = &st.alerts else {
        return Vec::new();
    };
    events
        .iter()
        .enumerate()
        .filter_map(|(i, ev)| alerts.engine().observe(app, ev).map(|o| (i, o)))
        .collect()
}

/// Counts the watched events, now durable at the receipt's indexes (the
/// whole batch at once: each rule is locked once per request), and
/// records every alert that fires. A repeated event (same id) is counted
/// once. An alert that cannot be appended is logged and still delivered.
pub(super) async fn raise(st: &AppState, watched: Vec<(usize, Observed)>, receipt: &Receipt) {
    let Some(alerts) = &st.alerts else {
        return;
    };
    let batch: Vec<(&Observed, u64)> = watched
        .iter()
        .filter_map(|(i, ob)| {
            let entry = receipt.entries.get(*i).filter(|e| !e.duplicate)?;
            Some((ob, entry.index))
        })
        .collect();
    for alert in alerts.evaluate_batch(&batch) {
        let raised_at = event::format_rfc3339_ms(st.view.clock().now_ms());
        let recorded = record_access(
            st,
            Who::service(ALERT_ACTOR),
            Access {
                action: ALERT_ACTION,
                resource: ("alert_rule", alert.rule.clone()),
                subject: alert.subject(),
                outcome: Outcome::Success,
                context: serde_json::to_value(&alert).unwrap_or_default(),
            },
        )
        .await;
        let index = match recorded {
            Ok(r) => Some(r.index),
            Err(e) => {
                metrics::counter!("veritrail_alerts_append_failures_total").increment(1);
                tracing::error!(rule = %alert.rule, error = ?e, "couldn't append an alert to the log; it is delivered without an index");
                None
            }
        };
        alerts.deliver(&alert, index, &raised_at);
    }
}

/// Paging and an optional rule: the query of `GET /v1/alerts`.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct AlertParams {
    /// Only the alerts of this rule.
    #[param(min_length = 1, max_length = 64)]
    rule: Option<String>,
    /// Page size: 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// `GET /v1/alerts?rule=&limit=&cursor=`: the alerts the log recorded,
/// newest first; each names its leaf index (so its inclusion proof can be
/// fetched) and the indexes of the events that triggered it.
#[utoipa::path(get, path = "/v1/alerts", tag = "auditor",
    security(("api_key" = ["auditor"])),
    params(AlertParams),
    responses(
        (status = 200, description = "A page of alerts, newest first", body = super::openapi::AlertPage, headers(("veritrail-audit-index" = u64, description = "Leaf index of the audit event this read appended"))),
        (status = 400, description = "An invalid rule, limit or cursor", body = super::openapi::ErrorBody),
    ))]
pub(super) async fn list_alerts(
    State(st): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<AlertParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let key = authorize(&st, &headers, Role::Auditor)?;
    let Query(p) =
        q.map_err(|e| ApiError::bad_request(format!("invalid query: {}", e.body_text())))?;
    if p.rule
        .as_ref()
        .is_some_and(|r| r.is_empty() || r.len() > 64)
    {
        return Err(ApiError::bad_request("rule: 1 to 64 bytes"));
    }
    let mut filters = Vec::new();
    if let Some(r) = &p.rule {
        filters.push((Field::Resource, r.clone()));
    }
    filters.push((Field::Action, ALERT_ACTION.to_string()));
    filters.push((Field::App, INTERNAL_APP.to_string()));
    let query = own_events_query(filters, p.limit, p.cursor.as_deref())?;
    let receipt = record_access(
        &st,
        &key,
        Access {
            action: "audit.alerts",
            resource: ("alerts", "list".into()),
            subject: None,
            outcome: Outcome::Success,
            context: json!({ "rule": p.rule, "limit": query.limit, "cursor": p.cursor }),
        },
    )
    .await?;
    let page = search_before(&st, &receipt, query).await?;
    let alerts: Vec<Value> = page
        .hits
        .iter()
        // Only the alert service's own records are alerts.
        .filter(|h| h.event.actor.id == ALERT_ACTOR && h.event.actor.kind == "service")
        .map(|h| {
            let details = h
                .event
                .context
                .as_ref()
                .and_then(|c| c.get("details"))
                .cloned()
                .unwrap_or(Value::Null);
            json!({
                "index": h.index,
                "leaf_hash": h.leaf_hash.to_base64(),
                "raised_at": h.event.occurred_at,
                "alert": details,
            })
        })
        .collect();
    let body = json!({
        "alerts": alerts,
        "next_cursor": page.next.as_ref().map(search::encode_cursor),
    });
    Ok(with_audit_header(Json(body).into_response(), &receipt))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::{Alerts, AlertsConfig};
    use crate::crypto::MasterKey;
    use crate::sequencer::EntryReceipt;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_alert_that_cannot_be_appended_changes_nothing_and_is_still_delivered() {
        let dir = tempfile::tempdir().unwrap();
        // The webhook points at a closed port: the alert lands in the dead-letter file.
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "0123456789abcdef").unwrap();
        let config = AlertsConfig::parse(
            &format!(
                "[alerts]\nwebhook_url = \"http://127.0.0.1:9/hook\"\nwebhook_secret_file = {:?}\nwebhook_attempts = 1\n\
                 [[alerts.rule]]\nname = \"any\"\nkind = \"threshold\"\nmore_than = 1\nwindow = \"1m\"\n",
                secret.display().to_string()
            ),
            "t",
        )
        .unwrap()
        .unwrap();
        let log = crate::sequencer::test_log::TestLogBuilder::new("example.com/log").start();
        let inner = log.store.clone();
        let alerts = Alerts::start(
            &config,
            dir.path(),
            inner.clone(),
            MasterKey::from_bytes([1; 32]).alerts_state_key(),
        )
        .unwrap();
        let st = super::super::test_state_with(&log, Some(alerts.clone()));
        let ev = event::parse_event(
            &json!({
                "actor": {"id": "m", "type": "user"}, "action": "login",
                "resource": {"type": "session", "id": "s"}, "purpose": "auth",
                "outcome": "failure", "occurred_at": "2026-01-01T10:00:00Z",
            }),
            &event::EventLimits::default(),
        )
        .unwrap();
        let receipt = |index| Receipt {
            entries: vec![EntryReceipt {
                index,
                leaf_hash: crate::merkle::empty_root(),
                commitment: crate::merkle::empty_root(),
                duplicate: false,
            }],
            checkpoint: None,
        };
        raise(
            &st,
            watch(&st, "app", std::slice::from_ref(&ev)),
            &receipt(0),
        )
        .await;
        // The second event fires; its append fails; the log does not grow.
        inner.fail_writes(true);
        raise(
            &st,
            watch(&st, "app", std::slice::from_ref(&ev)),
            &receipt(1),
        )
        .await;
        assert_eq!(st.view.durable_size(), 0);
        alerts.shutdown().await;
        let dead =
            std::fs::read_to_string(dir.path().join(crate::alerts::DEAD_LETTER_FILE)).unwrap();
        let posted: Value = serde_json::from_str(dead.trim()).unwrap();
        assert_eq!(posted["index"], Value::Null);
        assert_eq!(posted["alert"]["events"], json!([0, 1]));
        log.shut_down().await;
    }
}
