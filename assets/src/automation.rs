//! The RoboSystems schedules (today's Dagster schedules, as requests) and sensors.
//!
//! | schedule | cron (UTC) | requests |
//! |---|---|---|
//! | `usage_snapshot_hourly` | `5 * * * *` | the hour that just ended |
//! | `storage_bill_daily` | `0 2 * * *` | yesterday's bill |
//! | `credit_allocation_monthly` | `0 0 1 * *` | the month that starts |
//! | `usage_report_monthly` | `0 6 2 * *` | the month that ended |
//! | `api_key_cleanup_hourly` | `0 * * * *` | the hour that just ended |
//! | `credit_health_weekly` | `0 3 * * 1` | the week (Monday–Sunday) that ended |
//! | `qbo_monthly_close` | `0 6 3 * *` | every realm's QuickBooks reports of the month that ended and the month before (adjustments) |
//!
//! `pending_subscription_sensor` adds a `subscriptions` partition and requests
//! `graph_provisioning` for every subscription in `provisioning`; `sec_filings_sensor` requests
//! `sec_company_facts` for a CIK when a new filing appears (see [`crate::sec`]).

use std::sync::Arc;
use std::time::Duration;

use engine::automation::{Automation, SensorRequest, SensorResult, schedule, sensor};
use resources::AppDb;

use crate::APP_DB;
use crate::graph_provisioning::SUBSCRIPTIONS;

/// Every schedule and sensor; missed ticks are caught up for a day.
pub fn automation() -> Result<Automation, engine::automation::AutomationError> {
    let schedules = vec![
        schedule("usage_snapshot_hourly", "5 * * * *", "UTC", "usage_snapshot")?,
        schedule("storage_bill_daily", "0 2 * * *", "UTC", "storage_bill")?,
        schedule("credit_allocation_monthly", "0 0 1 * *", "UTC", "credit_allocation")?,
        schedule("usage_report_monthly", "0 6 2 * *", "UTC", "usage_report")?,
        schedule("api_key_cleanup_hourly", "0 * * * *", "UTC", "api_key_cleanup")?,
        schedule("credit_health_weekly", "0 3 * * 1", "UTC", "credit_health")?,
        schedule("qbo_monthly_close", "0 6 3 * *", "UTC", "group:quickbooks")?.windows(2),
    ];
    let pending =
        sensor("pending_subscription_sensor", Duration::from_secs(30), Duration::from_secs(20), |ctx| async move {
            let app_db: Arc<dyn AppDb> = ctx.resources.get(APP_DB)?;
            // The cursor is the sorted ids already requested, so each subscription is
            // requested once even if it stays in provisioning for a while.
            let seen: std::collections::BTreeSet<String> = ctx
                .cursor
                .as_deref()
                .unwrap_or_default()
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
            let pending = app_db.subscriptions("provisioning").await?;
            let new: Vec<String> = pending.iter().map(|s| s.id.clone()).filter(|id| !seen.contains(id)).collect();
            if new.is_empty() {
                return Ok(SensorResult {
                    cursor: ctx.cursor.clone(),
                    skip_reason: Some(format!("{} subscriptions provisioning, none new", pending.len())),
                    ..SensorResult::default()
                });
            }
            let mut all = seen;
            all.extend(new.iter().cloned());
            Ok(SensorResult {
                requests: new
                    .iter()
                    .map(|id| SensorRequest {
                        asset: "graph_provisioning".to_owned(),
                        partition_key: id.clone(),
                        key: format!("sensor:pending_subscription_sensor:{id}"),
                    })
                    .collect(),
                dynamic_partitions: vec![(SUBSCRIPTIONS.to_owned(), new)],
                cursor: Some(all.into_iter().collect::<Vec<_>>().join(",")),
                skip_reason: None,
            })
        });
    Ok(Automation {
        schedules,
        sensors: vec![pending, crate::sec::filings_sensor()],
        conditions: Vec::new(),
        catch_up: Duration::from_secs(24 * 3600),
        max_upstream_fill: engine::automation::DEFAULT_MAX_UPSTREAM_FILL,
    })
}
