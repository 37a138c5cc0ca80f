//! The staff console in a real headless Chromium (through chromedriver): a wrong PIN is
//! refused with a message, the right one shows the queue with masked PANs only, Start
//! takes the card to the output tray, Handed over ends it, Sign out returns to the
//! sign-in form. A card spoiled at the stripe shows its reason in plain words, is made
//! again with a second supervisor's sign-in (dual control) and reaches the tray.
//! A screenshot of each step goes to `target/console-screens/`.
//!
//! Runs when `STATION_BROWSER=1` (`cargo xtask test` sets it after installing chromium
//! and chromium-driver); with it set, a missing browser fails the test.

mod e2e;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use e2e::{branch, wait_states};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use station_agent::devkit::{DEV_STAFF_ID, DEV_STAFF_PIN, DEV_SUPERVISOR_ID, DEV_SUPERVISOR_PIN};
use station_agent::job::state::JobState;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// chromedriver on a free loopback port, stopped when dropped.
struct Driver {
    child: Child,
    port: u16,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn chromedriver() -> Driver {
    assert!(
        Path::new(CHROMEDRIVER).is_file() && Path::new(CHROMIUM).is_file(),
        "STATION_BROWSER=1 but {CHROMIUM} or {CHROMEDRIVER} is missing: apt-get install chromium chromium-driver"
    );
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let driver = Driver { child, port };
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return driver;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("chromedriver did not listen on port {port} within 10 s");
}

async fn browser(driver: &Driver, profile: &Path) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": CHROMIUM,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=1280,800",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("chromedriver opens a Chromium session")
}

fn screens() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/console-screens");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn shot(c: &Client, step: &str) {
    let png = c.screenshot().await.unwrap();
    std::fs::write(screens().join(format!("{step}.png")), png).unwrap();
}

/// Waits until the element's text contains `text`.
async fn wait_text(c: &Client, locator: Locator<'_>, text: &str, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    let mut last = String::new();
    while tokio::time::Instant::now() < deadline {
        if let Ok(e) = c.find(locator).await {
            last = e.text().await.unwrap_or_default();
            if last.contains(text) {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{locator:?} never showed {text:?}; it showed {last:?}");
}

async fn sign_in(c: &Client, pin: &str) {
    let staff = c.find(Locator::Id("staff")).await.unwrap();
    staff.clear().await.unwrap();
    staff.send_keys(DEV_STAFF_ID).await.unwrap();
    c.find(Locator::Id("pin"))
        .await
        .unwrap()
        .send_keys(pin)
        .await
        .unwrap();
    c.find(Locator::Css("#signin button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// Clicks the element, finding it again if the page's 1.5 s refresh replaced it
/// between the find and the click.
async fn click(c: &Client, locator: Locator<'_>) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let e = match c.find(locator).await {
            Ok(e) => e.click().await.map(|_| ()),
            Err(e) => Err(e),
        };
        match e {
            Ok(()) => return,
            Err(e) if tokio::time::Instant::now() > deadline => {
                panic!("cannot click {locator:?}: {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// The button labelled `label` in the row of card `card_id`.
fn row_button(card_id: &str, label: &str) -> String {
    format!("//tr[td[1][normalize-space()='{card_id}']]//button[normalize-space()='{label}']")
}

#[tokio::test(flavor = "multi_thread")]
async fn staff_issue_a_card_through_the_console_in_a_real_browser() {
    if std::env::var("STATION_BROWSER").as_deref() != Ok("1") {
        eprintln!("console_browser: STATION_BROWSER is not 1; `cargo xtask test` runs this test");
        return;
    }
    let driver = chromedriver().await;
    let profile = tempfile::tempdir().unwrap();
    let (_dir, b) = branch("staff").await;
    let agent = b.agent().await;
    let base = format!("http://{}", agent.console_addr);

    // Post the order as the issuer would, keeping the clear PAN to look for it in the page.
    let pans = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = pans.clone();
    let seal = move |jwk: &str, card: &[u8]| {
        let v: serde_json::Value = serde_json::from_slice(card).unwrap();
        seen.lock()
            .unwrap()
            .push(v["pan"].as_str().unwrap().to_string());
        station_agent::order::jwe::encrypt_json(jwk, card).map_err(|e| e.to_string())
    };
    let posted = station_agent::sandbox::client::post_sample_orders_with(
        &b.hub.base_url(),
        &b.hub_state,
        e2e::STATION,
        1,
        &seal,
    )
    .await
    .unwrap();
    let (card, op) = posted[0].clone();
    let pan = pans.lock().unwrap()[0].clone();
    wait_states(
        &agent,
        std::slice::from_ref(&op),
        &[JobState::WaitingForStaff],
        Duration::from_secs(30),
    )
    .await;

    let c = browser(&driver, profile.path()).await;
    c.goto(&base).await.unwrap();
    c.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("#signin:not([hidden])"))
        .await
        .unwrap();
    shot(&c, "01-sign-in").await;

    sign_in(&c, "000000").await;
    wait_text(
        &c,
        Locator::Id("msg"),
        "staff id or PIN not recognised",
        Duration::from_secs(10),
    )
    .await;
    shot(&c, "02-wrong-pin").await;

    sign_in(&c, DEV_STAFF_PIN).await;
    let start = row_button(&card, "Start");
    c.wait()
        .at_most(Duration::from_secs(15))
        .for_element(Locator::XPath(&start))
        .await
        .unwrap();
    let masked = agent
        .station
        .journal
        .job(&op)
        .unwrap()
        .unwrap()
        .masked_pan
        .expect("the journal keeps the masked PAN");
    wait_text(&c, Locator::Id("jobs"), &masked, Duration::from_secs(10)).await;
    let source = c.source().await.unwrap();
    assert!(!source.contains(&pan), "the full PAN is in the page");
    assert!(
        !masked.contains(&pan[6..pan.len() - 4]),
        "{masked} hides the middle digits"
    );
    wait_text(
        &c,
        Locator::Id("who"),
        "Development staff",
        Duration::from_secs(5),
    )
    .await;
    shot(&c, "03-queue").await;

    click(&c, Locator::XPath(&start)).await;
    wait_text(
        &c,
        Locator::Id("jobs"),
        JobState::Ejected.label(),
        Duration::from_secs(60),
    )
    .await;
    shot(&c, "04-ready-in-tray").await;

    click(&c, Locator::XPath(&row_button(&card, "Handed over"))).await;
    wait_text(
        &c,
        Locator::Id("jobs"),
        JobState::HandedOver.label(),
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(
        agent.station.journal.job(&op).unwrap().unwrap().state,
        JobState::HandedOver
    );
    shot(&c, "05-handed-over").await;

    c.find(Locator::Id("signout"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(
        &c,
        Locator::Id("msg"),
        "Signed out.",
        Duration::from_secs(10),
    )
    .await;
    assert!(c.find(Locator::Css("#signin:not([hidden])")).await.is_ok());
    assert!(c.find(Locator::Css("#desk[hidden]")).await.is_ok());
    shot(&c, "06-signed-out").await;

    c.close().await.unwrap();
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_spoiled_card_is_made_again_with_a_supervisors_approval_in_a_real_browser() {
    if std::env::var("STATION_BROWSER").as_deref() != Ok("1") {
        eprintln!("console_browser: STATION_BROWSER is not 1; `cargo xtask test` runs this test");
        return;
    }
    let driver = chromedriver().await;
    let profile = tempfile::tempdir().unwrap();
    let (_dir, b) = branch("staff").await;
    b.printer.arm_fault(
        station_sim::printer::Step::Mag,
        station_sim::printer::Fault::MagWrite,
    );
    let agent = b.agent().await;
    let base = format!("http://{}", agent.console_addr);
    let (card, op) = b.order(1).await.remove(0);
    wait_states(
        &agent,
        std::slice::from_ref(&op),
        &[JobState::WaitingForStaff],
        Duration::from_secs(30),
    )
    .await;

    let c = browser(&driver, profile.path()).await;
    c.goto(&base).await.unwrap();
    c.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("#signin:not([hidden])"))
        .await
        .unwrap();
    sign_in(&c, DEV_STAFF_PIN).await;
    let holder = agent
        .station
        .journal
        .job(&op)
        .unwrap()
        .unwrap()
        .holder
        .expect("the journal keeps the printed name");
    wait_text(&c, Locator::Id("jobs"), &holder, Duration::from_secs(15)).await;
    shot(&c, "11-queue-with-customer").await;

    click(&c, Locator::XPath(&row_button(&card, "Start"))).await;
    wait_text(
        &c,
        Locator::Id("jobs"),
        "Magnetic stripe could not be encoded",
        Duration::from_secs(60),
    )
    .await;
    wait_text(
        &c,
        Locator::Id("jobs"),
        JobState::Rejected.label(),
        Duration::from_secs(10),
    )
    .await;
    shot(&c, "12-spoiled-with-reason").await;
    // Staff fixed the stripe encoder.
    b.printer.clear_fault();

    click(&c, Locator::XPath(&row_button(&card, "Make again"))).await;
    c.accept_alert().await.unwrap();
    c.wait()
        .at_most(Duration::from_secs(5))
        .for_element(Locator::Css("#approve:not([hidden])"))
        .await
        .unwrap();
    c.find(Locator::Id("approver"))
        .await
        .unwrap()
        .send_keys(DEV_SUPERVISOR_ID)
        .await
        .unwrap();
    c.find(Locator::Id("approver-pin"))
        .await
        .unwrap()
        .send_keys(DEV_SUPERVISOR_PIN)
        .await
        .unwrap();
    shot(&c, "13-supervisor-approves").await;
    c.find(Locator::Css("#approve button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(
        &c,
        Locator::Id("jobs"),
        JobState::Ejected.label(),
        Duration::from_secs(60),
    )
    .await;
    wait_text(
        &c,
        Locator::Id("jobs"),
        "attempt 2 of 3",
        Duration::from_secs(5),
    )
    .await;
    shot(&c, "14-made-again-in-tray").await;
    let job = agent.station.journal.job(&op).unwrap().unwrap();
    assert_eq!((job.state, job.attempt), (JobState::Ejected, 2));
    let approved = agent
        .station
        .journal
        .history(&op)
        .unwrap()
        .into_iter()
        .find(|t| t.from.as_deref() == Some(JobState::Rejected.as_str()))
        .expect("the make again is journaled");
    assert_eq!(
        (approved.actor.as_str(), approved.approver.as_deref()),
        (DEV_STAFF_ID, Some(DEV_SUPERVISOR_ID))
    );

    c.close().await.unwrap();
    agent.shutdown().await;
}
