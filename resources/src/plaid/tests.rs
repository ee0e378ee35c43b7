//! The client against the fixture Plaid (`fixture.rs`, axum on 127.0.0.1): paging with count
//! 500, a mutation on page 2, `removed[]`, 429s, `ITEM_LOGIN_REQUIRED`, `next_cursor: ""`, exact
//! amounts; and the dev source.

use std::collections::BTreeMap;

use super::fixture::{FixtureEvent, FixtureTx, PlaidFixture};
use super::*;

const CLIENT_ID: &str = "client-id-fixture";
const SECRET: &str = "plaid-secret-s3kr1t-4242";
const TOKEN: &str = "access-sandbox-t0ken-9a9a";

/// Access tokens in memory.
struct Tokens(BTreeMap<String, Secret>);

#[async_trait]
impl PlaidItems for Tokens {
    async fn link_plaid_item(&self, _: &str, _: &Secret, _: chrono::DateTime<chrono::Utc>) -> Result<bool, AppDbError> {
        unreachable!("not linked here")
    }
    async fn plaid_access_token(&self, item_id: &str) -> Result<Option<Secret>, AppDbError> {
        Ok(self.0.get(item_id).cloned())
    }
    async fn plaid_item_ids(&self) -> Result<Vec<String>, AppDbError> {
        Ok(self.0.keys().cloned().collect())
    }
}

fn client(url: &str) -> PlaidClient {
    let mut config = PlaidConfig::new(CLIENT_ID, Secret::new(SECRET));
    config.first_delay = Duration::from_millis(5);
    config.rate_limit_delay = Duration::from_millis(5);
    config.not_ready_delay = Duration::from_millis(5);
    config.timeout = Duration::from_secs(5);
    let tokens = Tokens(BTreeMap::from([("item-1".to_owned(), Secret::new(TOKEN))]));
    PlaidClient::new(url, url.to_owned(), config, Arc::new(tokens)).unwrap()
}

/// A fixture with `n` transactions, served.
async fn fixture(n: usize) -> (Arc<PlaidFixture>, PlaidClient) {
    let f = PlaidFixture::new(CLIENT_ID, SECRET, TOKEN);
    f.add_generated(0, n);
    let url = f.serve().await;
    (f.clone(), client(&url))
}

/// Folds changes into the current set: id → amount.
fn fold(current: &mut BTreeMap<String, i128>, changes: &[Change]) {
    for c in changes {
        match c.kind {
            ChangeKind::Added | ChangeKind::Modified => {
                current.insert(c.transaction_id.clone(), c.amount.unwrap());
            }
            ChangeKind::Removed => {
                current.remove(&c.transaction_id);
            }
        }
    }
}

fn truth(f: &PlaidFixture) -> BTreeMap<String, i128> {
    f.truth().into_iter().map(|(id, t)| (id, parse_amount(&t.amount).unwrap())).collect()
}

#[tokio::test]
async fn a_sync_pages_by_500_until_has_more_is_false_and_the_next_sync_starts_at_its_cursor() {
    let (f, api) = fixture(1_203).await;
    let first = api.sync("item-1", "").await.unwrap();
    assert_eq!((first.pages, first.changes.len(), first.restarts), (3, 1_203, 0));
    f.with(|s| assert_eq!(s.seen.iter().map(|(count, _)| *count).collect::<Vec<_>>(), [500, 500, 500]));
    f.with(|s| assert_eq!(s.seen[0].1, "", "the first sync sends no cursor"));
    let mut current = BTreeMap::new();
    fold(&mut current, &first.changes);
    assert_eq!(current, truth(&f));

    // Later: one modified, one removed (added earlier), two new.
    let mut changed = FixtureTx::generated(5);
    changed.amount = "-0.01".to_owned();
    f.with(|s| {
        s.log.push(FixtureEvent::Modified(changed));
        s.log.push(FixtureEvent::Removed("tx-000007".into(), "acc-1".into()));
    });
    f.add_generated(2_000, 2);
    let second = api.sync("item-1", &first.next_cursor).await.unwrap();
    assert_eq!(f.with(|s| s.seen.last().unwrap().1.clone()), first.next_cursor);
    let kinds: Vec<_> = second.changes.iter().map(|c| (c.kind, c.transaction_id.as_str())).collect();
    assert_eq!(
        kinds,
        [
            (ChangeKind::Added, "tx-002000"),
            (ChangeKind::Added, "tx-002001"),
            (ChangeKind::Modified, "tx-000005"),
            (ChangeKind::Removed, "tx-000007")
        ]
    );
    let removed = &second.changes[3];
    assert_eq!((removed.account_id.as_deref(), removed.amount, removed.date), (Some("acc-1"), None, None));
    fold(&mut current, &second.changes);
    assert_eq!(current, truth(&f));
    assert_eq!(current["tx-000005"], -1_000_000, "-0.01 at scale 8");

    let third = api.sync("item-1", &second.next_cursor).await.unwrap();
    assert_eq!((third.changes.len(), third.pages), (0, 1), "nothing new");
}

#[tokio::test]
async fn a_mutation_on_page_2_restarts_from_the_first_cursor_and_nothing_is_doubled() {
    let (f, api) = fixture(1_100).await;
    let mut changed = FixtureTx::generated(3);
    changed.amount = "99.99".to_owned();
    f.with(|s| {
        s.mutate_on_request = Some(2);
        s.mutation = vec![FixtureEvent::Modified(changed)];
    });
    let batch = api.sync("item-1", "").await.unwrap();
    assert_eq!(batch.restarts, 1);
    assert_eq!(batch.pages, 3, "the pages read before the mutation were thrown away");
    let cursors: Vec<String> = f.with(|s| s.seen.iter().map(|(_, c)| c.clone()).collect());
    assert_eq!(cursors[2], "", "the restart began again from the cursor the pagination started with");
    assert_eq!(batch.changes.len(), 1_101, "1,100 added once each, and the modification");
    let mut current = BTreeMap::new();
    fold(&mut current, &batch.changes);
    assert_eq!(current, truth(&f));
    assert_eq!(current["tx-000003"], 9_999_000_000);
}

#[tokio::test]
async fn mutations_that_never_stop_fail_the_sync_after_the_restarts() {
    let (f, api) = fixture(600).await;
    // Every retry of page 2 meets a mutation again: refuse to loop forever.
    f.with(|s| s.mutate_on_request = Some(2));
    let mut api = api;
    api.config.max_restarts = 0;
    let err = api.sync("item-1", "").await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "plaid item item-1: transactions kept changing during pagination (0 restarts); try again later"
    );
}

#[tokio::test]
async fn a_429_is_retried_with_backoff_on_the_same_page() {
    let (f, api) = fixture(700).await;
    f.with(|s| s.rate_limited = [2, 3].into());
    let batch = api.sync("item-1", "").await.unwrap();
    assert_eq!((batch.pages, batch.changes.len()), (2, 700));
    let cursors: Vec<String> = f.with(|s| s.seen.iter().map(|(_, c)| c.clone()).collect());
    assert_eq!(cursors.len(), 4);
    assert!(cursors[1] == cursors[2] && cursors[2] == cursors[3], "{cursors:?}");
    assert_ne!(cursors[1], "", "page 2 was asked again, not the whole sync");

    // Past the attempts, the step fails and says why.
    f.with(|s| s.rate_limited = (1..100).collect());
    let mut api = api;
    api.config.rate_limit_attempts = 3;
    let err = api.sync("item-1", "").await.unwrap_err();
    assert!(err.to_string().ends_with("failed 3 times; last: HTTP 429 TRANSACTIONS_SYNC_LIMIT"), "{err}");
}

#[tokio::test]
async fn past_the_per_item_limit_the_client_backs_off_until_the_window_passes() {
    // Plaid allows 50 syncs a minute per item; here 2 per 100 ms, and 5 pages to read.
    let (f, api) = fixture(2_500).await;
    f.with(|s| s.rate_limit = Some((2, Duration::from_millis(100))));
    let batch = api.sync("item-1", "").await.unwrap();
    assert_eq!((batch.pages, batch.changes.len()), (5, 2_500));
    let mut current = BTreeMap::new();
    fold(&mut current, &batch.changes);
    assert_eq!(current, truth(&f));
    assert!(f.with(|s| s.requests) > 5, "some requests were answered 429 and asked again");
}

#[tokio::test]
async fn item_login_required_fails_at_once_naming_the_item_and_saying_to_re_link() {
    let (f, api) = fixture(10).await;
    f.with(|s| {
        s.login_required.insert(TOKEN.to_owned());
    });
    let err = api.sync("item-1", "").await.unwrap_err();
    assert!(matches!(err, PlaidError::LoginRequired { .. }));
    assert!(err.to_string().starts_with("plaid item item-1 needs to be re-linked"), "{err}");
    assert!(err.to_string().contains("robo-assets plaid link item-1"), "{err}");
    assert_eq!(f.with(|s| s.requests), 1, "not retried");
}

#[tokio::test]
async fn an_empty_next_cursor_is_asked_again_later_and_then_gives_up() {
    let (f, api) = fixture(3).await;
    f.with(|s| s.not_ready = [1, 2].into());
    let batch = api.sync("item-1", "").await.unwrap();
    assert_eq!((batch.changes.len(), batch.pages), (3, 1));
    assert!(!batch.next_cursor.is_empty(), "an empty cursor is never returned to store");
    assert_eq!(f.with(|s| s.requests), 3);

    f.with(|s| s.not_ready = (1..100).collect());
    let err = api.sync("item-1", "").await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "plaid item item-1: transactions are not ready yet (next_cursor was empty 4 times); try again later"
    );
}

#[tokio::test]
async fn an_unlinked_item_and_bad_keys_fail_without_showing_a_secret() {
    let (f, api) = fixture(3).await;
    let err = api.sync("item-2", "").await.unwrap_err();
    assert!(
        err.to_string().starts_with("plaid item item-2 is not linked: run `robo-assets plaid link item-2"),
        "{err}"
    );
    assert_eq!(f.with(|s| s.requests), 0);

    let mut config = PlaidConfig::new(CLIENT_ID, Secret::new("wrong-secret-77"));
    config.timeout = Duration::from_secs(5);
    let tokens = Tokens(BTreeMap::from([("item-1".to_owned(), Secret::new(TOKEN))]));
    let bad = PlaidClient { config, items: Arc::new(tokens), ..api.clone() };
    let err = bad.sync("item-1", "").await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "Plaid refused /transactions/sync for item item-1: HTTP 400 INVALID_INPUT INVALID_API_KEYS: invalid client_id or secret provided"
    );
    let shown = format!("{err} {err:?} {api:?} {bad:?}");
    for secret in [SECRET, TOKEN, "wrong-secret-77"] {
        assert!(!shown.contains(secret), "{shown}");
    }
    // Secrets go in the JSON body, never the URL.
    f.with(|s| assert!(s.bodies.iter().all(|b| b.contains(TOKEN))));
}

#[test]
fn amounts_are_parsed_exactly_and_refused_rather_than_rounded() {
    let ok = |text: &str| format_amount(parse_amount(text).unwrap());
    assert_eq!(ok("72.1"), "72.10000000");
    assert_eq!(ok("-2500.00"), "-2500.00000000");
    assert_eq!(ok("0.1"), "0.10000000", "not 0.1000000000000000055…");
    assert_eq!(ok("1234.567"), "1234.56700000");
    assert_eq!(ok("0.00012345"), "0.00012345");
    assert_eq!(ok("1e2"), "100.00000000");
    assert_eq!(ok("7.21E+1"), "72.10000000");
    assert_eq!(ok("12.5e-3"), "0.01250000");
    assert_eq!(ok("1.230000000000"), "1.23000000", "trailing zeros beyond the scale are exact");
    assert_eq!(ok("99999999999999999999.99999999"), "99999999999999999999.99999999");
    let err = |text: &str| parse_amount(text).unwrap_err();
    assert_eq!(err("0.000000001"), "has more than 8 decimal places; refusing to round it");
    assert_eq!(err("100000000000000000000"), "does not fit in decimal(28, 8)");
    assert_eq!(err("1e30"), "does not fit in decimal(28, 8)");
    for bad in ["", "-", "1.", ".5", "1.2.3", "abc", "1e", "--1", "+1"] {
        assert_eq!(err(bad), "is not a number", "{bad:?}");
    }
}

#[tokio::test]
async fn an_amount_that_does_not_fit_fails_the_sync_naming_the_transaction() {
    let (f, api) = fixture(0).await;
    let mut t = FixtureTx::generated(1);
    t.amount = "0.123456789".to_owned();
    f.with(|s| s.log.push(FixtureEvent::Added(t)));
    let err = api.sync("item-1", "").await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "Plaid returned malformed data for item item-1: transaction tx-000001: amount 0.123456789: has more than 8 \
         decimal places; refusing to round it"
    );
}

#[tokio::test]
async fn the_dev_source_syncs_its_history_then_its_updates_then_nothing() {
    let dev = DevPlaid;
    let first = dev.sync("item-demo", "").await.unwrap();
    assert_eq!((first.changes.len(), first.pages, first.next_cursor.as_str()), (7, 2, "dev-1"));
    assert!(first.changes.iter().all(|c| c.kind == ChangeKind::Added));
    let second = dev.sync("item-demo", &first.next_cursor).await.unwrap();
    let kinds: Vec<_> = second.changes.iter().map(|c| c.kind.as_str()).collect();
    assert_eq!(kinds, ["added", "modified", "removed"]);
    let third = dev.sync("item-demo", &second.next_cursor).await.unwrap();
    assert_eq!((third.changes.len(), third.next_cursor.as_str()), (0, "dev-2"));
    assert!(dev.sync("item-demo", "0.17").await.is_err(), "a live cursor is not the dev source's");
    assert_eq!(dev.source(), "dev");
}
