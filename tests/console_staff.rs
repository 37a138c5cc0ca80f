//! Staff policy through the console API: staff sign in, the card waits for Start, is
//! produced, then handed over, each step journaled under the staff id; nothing is
//! shown or done without a session.

mod e2e;

use std::time::Duration;

use e2e::{branch, console_http, sign_in, wait_hub, wait_states};
use serde_json::Value;
use station_agent::devkit::{DEV_STAFF_ID, DEV_STAFF_PIN};
use station_agent::job::state::JobState;

#[tokio::test(flavor = "multi_thread")]
async fn a_card_waits_for_staff_start_and_is_handed_over() {
    let (_dir, b) = branch("staff").await;
    let agent = b.agent().await;
    let base = format!("http://{}", agent.console_addr);
    let http = console_http(&base);
    let page = http.get(&base).send().await.unwrap();
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    assert_eq!(page.headers()["cache-control"], "no-store");
    let page = page.text().await.unwrap();
    assert!(page.contains("Card issuance"));
    let script = http.get(format!("{base}/console.js")).send().await.unwrap();
    assert!(script.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/javascript"));
    assert!(page.contains("src=\"/console.js\""));
    assert!(script.text().await.unwrap().contains("Bearer"));
    let token = sign_in(&http, &base).await;

    let posted = b.order(1).await;
    let (card, op) = posted[0].clone();
    wait_states(
        &agent,
        std::slice::from_ref(&op),
        &[JobState::WaitingForStaff],
        Duration::from_secs(30),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        b.printer.finished().is_empty(),
        "nothing printed before Start"
    );

    let jobs: Vec<Value> = http
        .get(format!("{base}/api/jobs"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let job = jobs
        .iter()
        .find(|j| j["operationId"] == op.as_str())
        .unwrap();
    assert!(job["maskedPan"].as_str().unwrap().contains("******"));
    assert!(job["actions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["action"] == "start"));

    let r = http
        .post(format!("{base}/api/jobs/{op}/start"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    wait_states(
        &agent,
        std::slice::from_ref(&op),
        &[JobState::Ejected],
        Duration::from_secs(60),
    )
    .await;
    wait_hub(
        &b,
        std::slice::from_ref(&card),
        "SUCCESSFUL",
        Duration::from_secs(30),
    )
    .await;

    let r = http
        .post(format!("{base}/api/jobs/{op}/handover"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        agent.station.journal.job(&op).unwrap().unwrap().state,
        JobState::HandedOver
    );
    let again = http
        .post(format!("{base}/api/jobs/{op}/start"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        again.status(),
        409,
        "a finished card cannot be started again"
    );
    let status: Value = http
        .get(format!("{base}/api/status"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["persoStation"], e2e::STATION);
    // The audit names who set the card going and who handed it over.
    let history = agent.station.journal.history(&op).unwrap();
    let actor = |to: JobState| {
        history
            .iter()
            .find(|t| t.to == to.as_str())
            .map(|t| t.actor.clone())
    };
    assert_eq!(actor(JobState::Feeding).as_deref(), Some(DEV_STAFF_ID));
    assert_eq!(actor(JobState::HandedOver).as_deref(), Some(DEV_STAFF_ID));
    assert_eq!(actor(JobState::Personalizing).as_deref(), Some("agent"));
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_session_nothing_is_shown_or_done() {
    let (_dir, b) = branch("staff").await;
    let agent = b.agent().await;
    let base = format!("http://{}", agent.console_addr);
    let http = console_http(&base);
    let posted = b.order(1).await;
    let op = posted[0].1.clone();
    wait_states(
        &agent,
        std::slice::from_ref(&op),
        &[JobState::WaitingForStaff],
        Duration::from_secs(30),
    )
    .await;

    let jobs = http.get(format!("{base}/api/jobs")).send().await.unwrap();
    assert_eq!(jobs.status(), 401);
    let start = http
        .post(format!("{base}/api/jobs/{op}/start"))
        .bearer_auth("not-a-session")
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), 401);
    let body: Value = start.json().await.unwrap();
    assert_eq!(body["code"], "STAFF_NOT_SIGNED_IN");

    let wrong = http
        .post(format!("{base}/api/session"))
        .json(&serde_json::json!({"staff": DEV_STAFF_ID, "pin": "000000"}))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let session: Value = http
        .get(format!("{base}/api/session"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(session["signInRequired"], true);
    assert!(session["member"].is_null());
    assert_eq!(
        agent.station.journal.job(&op).unwrap().unwrap().state,
        JobState::WaitingForStaff,
        "the card did not start"
    );
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_foreign_host_or_origin_is_refused_before_any_handler() {
    let (_dir, b) = branch("staff").await;
    let agent = b.agent().await;
    let base = format!("http://{}", agent.console_addr);
    let port = agent.console_addr.port();
    let plain = reqwest::Client::new();

    // DNS rebinding: the attacker's name resolves to loopback, the browser sends it as Host.
    let rebound = plain
        .get(format!("{base}/api/session"))
        .header("host", format!("attacker.example:{port}"))
        .send()
        .await
        .unwrap();
    assert_eq!(rebound.status(), 421);

    let cross_site = plain
        .post(format!("{base}/api/session"))
        .header("origin", "https://attacker.example")
        .json(&serde_json::json!({"staff": DEV_STAFF_ID, "pin": DEV_STAFF_PIN}))
        .send()
        .await
        .unwrap();
    assert_eq!(cross_site.status(), 403);

    let no_origin = plain
        .post(format!("{base}/api/session"))
        .json(&serde_json::json!({"staff": DEV_STAFF_ID, "pin": DEV_STAFF_PIN}))
        .send()
        .await
        .unwrap();
    assert_eq!(no_origin.status(), 403);

    // A form post (the one cross-site POST a browser sends without asking) is not JSON.
    let form = plain
        .post(format!("{base}/api/session"))
        .header("origin", &base)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("staff={DEV_STAFF_ID}&pin={DEV_STAFF_PIN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), 403);

    let same = console_http(&base);
    assert!(!sign_in(&same, &base).await.is_empty());
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_card_stuck_in_the_printer_offers_card_removed_and_staff_press_it() {
    use station_sim::printer::{Fault, Step};
    let (_dir, b) = branch("staff").await;
    b.printer.arm_fault(Step::Park, Fault::Jam);
    b.printer.arm_fault(Step::Reject, Fault::Jam);
    let agent = b.agent().await;
    let base = format!("http://{}", agent.console_addr);
    let http = console_http(&base);
    let token = sign_in(&http, &base).await;
    let (_, op) = b.order(1).await.remove(0);
    wait_states(
        &agent,
        std::slice::from_ref(&op),
        &[JobState::WaitingForStaff],
        Duration::from_secs(30),
    )
    .await;
    let started = http
        .post(format!("{base}/api/jobs/{op}/start"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), 200);
    wait_states(
        &agent,
        std::slice::from_ref(&op),
        &[JobState::AwaitingRemoval],
        Duration::from_secs(30),
    )
    .await;
    let jobs: Vec<Value> = http
        .get(format!("{base}/api/jobs"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let job = jobs.iter().find(|j| j["operationId"] == op).unwrap();
    let offered: Vec<&str> = job["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    assert_eq!(offered, ["removed"]);

    let _ = b.printer.handle("Srs");
    let removed = http
        .post(format!("{base}/api/jobs/{op}/removed"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();

    assert_eq!(removed.status(), 200);
    let j = agent.station.journal.job(&op).unwrap().unwrap();
    assert_eq!(j.state, JobState::Spoiled);
    let last = agent.station.journal.history(&op).unwrap().pop().unwrap();
    assert_eq!(last.actor, DEV_STAFF_ID);
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_of_wrong_pins_over_http_tests_at_most_five_then_the_id_is_locked() {
    let (_dir, b) = branch("staff").await;
    let agent = b.agent().await;
    let base = format!("http://{}", agent.console_addr);
    let http = console_http(&base);
    let burst: Vec<_> = (0..40)
        .map(|i| {
            let (http, url) = (http.clone(), format!("{base}/api/session"));
            tokio::spawn(async move {
                let pin = format!("{:06}", 100_000 + i);
                let body = serde_json::json!({"staff": DEV_STAFF_ID, "pin": pin});
                http.post(url).json(&body).send().await.unwrap().status()
            })
        })
        .collect();
    let mut tested = 0;
    for attempt in burst {
        let status = attempt.await.unwrap();
        // 401 = the PIN was checked and refused; 429 = refused before any check.
        assert!(status == 401 || status == 429, "{status}");
        tested += usize::from(status == 401);
    }
    assert!(tested <= 5, "{tested} PINs were tested");
    let r = http
        .post(format!("{base}/api/session"))
        .json(&serde_json::json!({"staff": DEV_STAFF_ID, "pin": DEV_STAFF_PIN}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "STAFF_LOCKED");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_admin_sees_the_staff_accounts_without_their_pin_hashes_and_others_do_not() {
    use station_agent::staff::{Role, StaffFile};
    let (_dir, b) = branch("staff").await;
    let path = b.config.resolve(b.config.console.staff.as_ref().unwrap());
    let mut f = StaffFile::load(&path).unwrap();
    f.set("itadmin", "IT Admin", "864213").unwrap();
    assert!(f.set_role("itadmin", Role::Admin));
    f.save(&path).unwrap();
    let agent = b.agent().await;
    let base = format!("http://{}", agent.console_addr);
    let http = console_http(&base);
    let admin = e2e::sign_in_as(&http, &base, "itadmin", "864213").await;
    let supervisor = sign_in(&http, &base).await;

    let listed = http
        .get(format!("{base}/api/staff"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 200);
    let text = listed.text().await.unwrap();
    assert!(!text.contains("argon2"), "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    let ids: Vec<_> = v["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["id"].as_str().unwrap(), a["role"].as_str().unwrap()))
        .collect();
    assert!(ids.contains(&("itadmin", "admin")), "{ids:?}");
    assert!(ids.contains(&(DEV_STAFF_ID, "supervisor")), "{ids:?}");
    assert!(v["managedWith"].as_str().unwrap().contains("staff add"));

    let refused = http
        .get(format!("{base}/api/staff"))
        .bearer_auth(&supervisor)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    agent.abort();
}
