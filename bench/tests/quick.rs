//! `bench run --quick` as a test: every scenario at small scale against an
//! rtcd in this process. Asserts correctness only (every join completes,
//! every subscriber gets every stream it should, nothing is lost on an idle
//! loopback), never speed: timing on a shared 2-core machine is noise.

use std::time::{Duration, Instant};

use bench::procstat;
use bench::scenario::{RunOptions, Scenario, run};
use bench::sfu::{SfuMode, SfuOptions};

#[test]
fn every_scenario_works_end_to_end() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let started = Instant::now();
    let mut failures = Vec::new();
    for scenario in Scenario::ALL {
        // One retry: on a shared 2-core machine a join now and then stays in
        // ICE checking (under investigation); the first attempt's problems
        // are printed either way, and a second failure fails the test.
        let first = check_scenario(&runtime, scenario, false);
        if first.is_empty() {
            continue;
        }
        println!(
            "{}: first attempt failed, retrying once: {first:#?}",
            scenario.name()
        );
        failures.extend(check_scenario(&runtime, scenario, false));
    }
    // Listeners that offer like the web client (no data channel).
    failures.extend(check_scenario(&runtime, Scenario::LargeCallScreen, true));
    println!("quick run took {:.0} s", started.elapsed().as_secs_f64());
    assert!(failures.is_empty(), "{failures:#?}");
}

fn check_scenario(
    runtime: &tokio::runtime::Runtime,
    scenario: Scenario,
    web_listeners: bool,
) -> Vec<String> {
    let mut failures = Vec::new();
    {
        let o = RunOptions {
            scenario,
            participants: None,
            speakers: None,
            screen: false,
            video: false,
            calls: None,
            duration: Some(Duration::from_secs(3)),
            join_rate: None,
            quick: true,
            sfu: SfuOptions {
                mode: SfuMode::InProcess,
                workers: 1,
                batching: true,
                cpus: None,
            },
            gen_threads: 1,
            gen_cpus: procstat::allowed_cpus(),
            pinning: "not pinned (test)".into(),
            progress: false,
            command: "quick test".into(),
            full_receivers: false,
            web_listeners,
            bursts: false,
            wait_quiet: Duration::ZERO,
        };
        let r = match runtime.block_on(run(&o)) {
            Ok(r) => r,
            Err(e) => {
                failures.push(format!("{}: {e:#}", scenario.name()));
                return failures;
            }
        };
        println!("{}", r.table());
        let name = scenario.name();
        let mut check = |ok: bool, what: String| {
            if !ok {
                failures.push(format!("{name}: {what}"));
            }
        };
        check(
            r.join.attempted > 0 && r.join.connected == r.join.attempted && r.join.failed == 0,
            format!(
                "joins: {} connected, {} failed of {}",
                r.join.connected, r.join.failed, r.join.attempted
            ),
        );
        check(
            r.join.first_media_ms.count as usize == r.join.expect_media,
            format!(
                "{} of {} joins received media",
                r.join.first_media_ms.count, r.join.expect_media
            ),
        );
        // Every connected join's time is split into its phases.
        check(
            r.sfu_name == "janus"
                || (r.join.answer_ms.count as usize == r.join.attempted
                    && r.join.answer_to_connected_ms.count as usize == r.join.connected
                    && r.join.connected_to_media_ms.count == r.join.first_media_ms.count),
            format!(
                "join phases counted: answer {}, connected {}, media {} of {} joins",
                r.join.answer_ms.count,
                r.join.answer_to_connected_ms.count,
                r.join.connected_to_media_ms.count,
                r.join.attempted
            ),
        );
        check(
            r.delivery.receivers > 0 && r.delivery.missing_streams == 0,
            format!(
                "{} of {} streams missing: {:?}",
                r.delivery.missing_streams,
                r.delivery.expected_streams,
                r.delivery.missing_examples
            ),
        );
        check(
            r.delivery.window_received > 0 && r.sfu.forwarded_packets > 0.0,
            format!(
                "nothing flowed: {} received, {} forwarded",
                r.delivery.window_received, r.sfu.forwarded_packets
            ),
        );
        check(
            r.delivery.lost_total == 0,
            format!(
                "{} packets lost of {}",
                r.delivery.lost_total, r.delivery.received_total
            ),
        );
        check(r.delay_us.count > 0, "no delay was measured".into());
    }
    failures
}
