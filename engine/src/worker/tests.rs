//! The worker's cadence on tokio's clock, with time paused: deterministic, and instant.

use std::time::Duration;

use super::Cadence;

/// After each `(advance, heartbeat due, reaper pass due)`, asks the cadence what is due.
async fn check(lease: Duration, steps: &[(Duration, bool, bool)]) {
    let mut cadence = Cadence::new(lease);
    for (i, (advance, heartbeat, reap)) in steps.iter().enumerate() {
        let start = tokio::time::Instant::now();
        tokio::time::advance(*advance).await;
        assert_eq!(tokio::time::Instant::now() - start, *advance, "step {i}: time moves only when told to");
        assert_eq!((cadence.heartbeat_due(), cadence.reap_due()), (*heartbeat, *reap), "step {i} (+{advance:?})");
    }
}

#[tokio::test(start_paused = true)]
async fn heartbeats_every_third_of_the_lease_and_reaps_every_half_starting_at_once() {
    let s = Duration::from_secs;
    check(
        s(30),
        &[
            // The reaper looks at once on start; the first heartbeat is a third of a lease away.
            (s(0), false, true),
            (s(9), false, false),
            (s(1), true, false),
            // Only once per due time.
            (s(0), false, false),
            (s(5), false, true),
            (s(5), true, false),
            // A worker busy for a long stretch heartbeats once when it looks, then keeps the
            // cadence from then on: no burst of missed heartbeats.
            (s(95), true, true),
            (s(0), false, false),
            (s(10), true, false),
            (s(5), false, true),
        ],
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_short_lease_heartbeats_and_reaps_proportionally() {
    let ms = Duration::from_millis;
    check(ms(300), &[(ms(0), false, true), (ms(99), false, false), (ms(1), true, false), (ms(50), false, true)]).await;
}

#[test]
fn only_a_gone_process_of_this_boot_and_pid_namespace_counts_as_dead() {
    let here = super::this_host();
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let gone = child.id();
    child.wait().unwrap();
    if super::pid_space().is_none() {
        // Not Linux: no pid is ever judged; leases decide.
        assert!(!super::is_dead_local_worker(&format!("{here}:{gone}:0")));
        return;
    }
    assert!(super::is_dead_local_worker(&format!("{here}:{gone}:0a1b2c3d")), "exited, same host, boot and namespace");
    assert!(!super::is_dead_local_worker(&format!("{here}:{}:0a1b2c3d", std::process::id())), "this process");
    let name = here.split('/').next().unwrap();
    assert!(!super::is_dead_local_worker(&format!("{name}/00000000.1:{gone}:0")), "another boot or container");
    assert!(!super::is_dead_local_worker(&format!("{name}:{gone}:0")), "an id from before pid spaces were named");
    assert!(!super::is_dead_local_worker("not-a-worker-id"));
}
