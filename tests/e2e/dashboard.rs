//! The dashboard in a real browser: Debian's Chromium, headless, driven
//! over WebDriver by chromedriver (both from the `chromium` and
//! `chromium-driver` packages, installed by the test run when missing). It logs in with
//! the URL `corral dashboard` prints, shows every plugin's row, follows a
//! killed plugin's state without the page being reloaded, and changes a
//! plugin's config in the form generated from its manifest's schema.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use corral_e2e::{FleetConfig, Plugin, tempdir, wait_until};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// chromedriver on a port of its own, killed on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    fn start() -> Self {
        let chromium = corral_e2e::system::program(CHROMIUM, "chromium");
        assert_eq!(chromium, Path::new(CHROMIUM));
        corral_e2e::system::program(CHROMEDRIVER, "chromium-driver");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        wait_until(Duration::from_secs(15), "chromedriver listening", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn browser(driver: &Driver, profile: &Path) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": CHROMIUM,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                "--window-size=1280,720",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a Chromium session")
}

/// Waits until `probe` gives a value, asking the page every 100 ms.
async fn page_until<T, F>(timeout: Duration, what: &str, mut probe: impl FnMut() -> F) -> T
where
    F: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(found) = probe().await {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn cell(page: &Client, plugin: &str, column: &str) -> Option<String> {
    let css = format!("tr[data-plugin='{plugin}'] td{column}");
    page.find(Locator::Css(&css)).await.ok()?.text().await.ok()
}

#[test]
fn the_dashboard_in_chromium_shows_the_fleet_and_follows_a_killed_plugin_live() {
    let fleet = FleetConfig::new()
        .http("listen", "127.0.0.1:0")
        .plugin(Plugin::echo("alpha").set("memory_max", "64MiB"))
        .plugin(Plugin::echo_py("beta"))
        .start();
    let pid = fleet.wait_running("alpha");
    fleet.wait_running("beta");
    let login = String::from_utf8_lossy(&fleet.corral(&["dashboard"]).stdout)
        .trim()
        .to_string();
    let driver = Driver::start();
    let profile = tempdir();
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime.block_on(async {
        let page = browser(&driver, profile.path()).await;
        page.goto(&login).await.expect("the login URL");
        // Every plugin's row, running.
        for name in ["alpha", "beta"] {
            let state = page_until(Duration::from_secs(10), &format!("{name}'s row"), || {
                cell(&page, name, ".state")
            })
            .await;
            let state = if state == "running" {
                state
            } else {
                page_until(Duration::from_secs(10), "running", || async {
                    cell(&page, name, ".state").await.filter(|s| s == "running")
                })
                .await
            };
            assert_eq!(state, "running");
        }
        let memory = cell(&page, "alpha", ":nth-child(6)")
            .await
            .expect("memory cell");
        assert!(memory.contains("/ 64.0 MiB"), "{memory}");
        // A mark the page keeps only if it is never reloaded.
        page.execute("window.corralMark = 42; return 1;", vec![])
            .await
            .expect("script");

        // Killed: the page shows it leave `running` and come back, pushed.
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(pid).expect("pid")),
            nix::sys::signal::Signal::SIGKILL,
        )
        .expect("kill");
        let restarts = page_until(
            Duration::from_secs(15),
            "alpha restarted on the page",
            || async {
                let restarts = cell(&page, "alpha", ":nth-child(4)").await?;
                let state = cell(&page, "alpha", ".state").await?;
                (restarts == "1" && state == "running").then_some(restarts)
            },
        )
        .await;
        assert_eq!(restarts, "1");
        let new_pid = cell(&page, "alpha", ":nth-child(3)")
            .await
            .expect("pid cell");
        assert_ne!(new_pid, pid.to_string(), "the page shows the new process");
        let mark = page
            .execute("return window.corralMark;", vec![])
            .await
            .expect("script");
        assert_eq!(mark, json!(42), "the page was reloaded");

        // A plugin's page: its config form, generated from its manifest's
        // config_schema; a value edited there is applied (its reload hook)
        // and kept in the overrides file.
        page.execute("location.hash = 'plugin/beta'; return 1;", vec![])
            .await
            .expect("script");
        let field = page_until(Duration::from_secs(10), "beta's config form", || async {
            page.find(Locator::Css("#config-greeting")).await.ok()
        })
        .await;
        let help = page_until(
            Duration::from_secs(5),
            "the field's description",
            || async {
                let f = page
                    .find(Locator::Css("#config-greeting ~ .help"))
                    .await
                    .ok()?;
                f.text().await.ok().filter(|t| !t.is_empty())
            },
        )
        .await;
        assert!(help.contains("Returned by the `config` action"), "{help}");
        field.clear().await.expect("cleared");
        field
            .send_keys("typed in the dashboard")
            .await
            .expect("typed");
        page.find(Locator::Css("#config-apply"))
            .await
            .expect("the apply button")
            .click()
            .await
            .expect("clicked");
        let result = page_until(Duration::from_secs(20), "the change applied", || async {
            let r = page.find(Locator::Css("#config-result")).await.ok()?;
            r.text().await.ok().filter(|t| !t.is_empty())
        })
        .await;
        assert_eq!(result, "applied");
        let from = page_until(
            Duration::from_secs(5),
            "where the value came from",
            || async {
                let f = page
                    .find(Locator::Css("#config-greeting ~ .from"))
                    .await
                    .ok()?;
                f.text().await.ok().filter(|t| t.contains("overrides"))
            },
        )
        .await;
        assert!(from.contains("overrides file"), "{from}");

        // Its picture, for whoever wants one (README's is made this way).
        let png = page.screenshot().await.expect("a screenshot");
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        if let Ok(path) = std::env::var("CORRAL_DASHBOARD_SCREENSHOT") {
            std::fs::write(path, &png).expect("write the screenshot");
        }
        page.close().await.expect("close the session");
    });
    // The plugin has the value the form set, and the overrides file keeps it.
    let config = fleet.call("beta", "config", None).expect("beta's config");
    assert_eq!(config["greeting"], "typed in the dashboard", "{config}");
    let overrides = std::fs::read_to_string(fleet.config().with_file_name(format!(
        "{}.overrides.toml",
        fleet.config().file_stem().expect("a stem").to_string_lossy()
    )))
    .expect("the overrides file");
    assert!(overrides.contains("typed in the dashboard"), "{overrides}");
    let inspect = fleet.inspect("beta");
    assert!(format!("{:?}", inspect.settings).contains("typed in the dashboard"));
    assert!(
        inspect.config_sources["greeting"].starts_with("overrides file"),
        "{:?}",
        inspect.config_sources
    );
}
