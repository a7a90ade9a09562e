//! The harness serves through the real serve loop: deadlines, cancellation
//! and reply checks behave as they do over a socket.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;

use super::*;

#[derive(Default)]
struct Probe {
    dropped: Arc<AtomicBool>,
    unloads: Arc<AtomicUsize>,
}

/// Sets its flag when dropped: a handler that never finished was cancelled.
struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

impl Plugin for Probe {
    async fn handle(&self, ctx: &Context, action: &str, _: Value) -> Result<Value, PluginError> {
        match action {
            "wait" => {
                let _guard = SetOnDrop(Arc::clone(&self.dropped));
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok(json!("woke"))
            }
            "huge" => Ok(json!("x".repeat(MAX_FRAME_BYTES))),
            "reserved" => ctx
                .publish("corral.plugin.started", &json!(1))
                .await
                .map(|()| json!(null)),
            "boom" => panic!("boom"),
            other => Err(PluginError::unknown_action(other)),
        }
    }

    async fn on_unload(&self, _: &Context) {
        self.unloads.fetch_add(1, Ordering::SeqCst);
    }
}

async fn until(flag: &AtomicBool) {
    for _ in 0..200 {
        if flag.load(Ordering::SeqCst) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("the handler was never cancelled");
}

#[tokio::test]
async fn a_call_past_its_deadline_is_answered_timeout_and_cancelled() {
    let probe = Probe::default();
    let dropped = Arc::clone(&probe.dropped);
    let mut h = Harness::new(probe).call_timeout(Duration::from_millis(50));
    let err = h.call("wait", json!(null)).await.unwrap_err();
    assert_eq!(err.code, codes::TIMEOUT, "{err}");
    until(&dropped).await;
}

#[tokio::test]
async fn a_caller_that_goes_away_cancels_the_handler() {
    let probe = Probe::default();
    let dropped = Arc::clone(&probe.dropped);
    let mut h = Harness::new(probe);
    let gone = tokio::time::timeout(Duration::from_millis(20), h.call("wait", json!(null))).await;
    assert!(gone.is_err());
    until(&dropped).await;
    let err = h.call("nope", json!(null)).await.unwrap_err();
    assert_eq!(err.code, codes::UNKNOWN_ACTION);
}

#[tokio::test]
async fn a_reply_too_large_for_a_frame_is_answered_internal() {
    let mut h = Harness::new(Probe::default());
    let err = h.call("huge", json!(null)).await.unwrap_err();
    assert_eq!(err.code, codes::INTERNAL);
    assert!(err.message.contains("too large"), "{err}");
}

#[tokio::test]
async fn corral_topics_are_refused_with_the_protocol_wording() {
    let mut h = Harness::new(Probe::default()).publish(&[">"]);
    let err = h.call("reserved", json!(null)).await.unwrap_err();
    assert_eq!(
        err,
        corral_proto::event::reserved("corral.plugin.started").unwrap_err()
    );
    assert!(h.published().await.is_empty());
}

#[tokio::test]
async fn unload_runs_on_unload_once() {
    let probe = Probe::default();
    let unloads = Arc::clone(&probe.unloads);
    let mut h = Harness::new(probe);
    h.unload().await;
    h.unload().await;
    assert_eq!(unloads.load(Ordering::SeqCst), 1);
}

#[tokio::test]
#[should_panic(expected = "boom")]
async fn a_panicking_handler_panics_the_test() {
    let mut h = Harness::new(Probe::default());
    let _ = h.call("boom", json!(null)).await;
}

/// Keeps the config `on_load` gives it; has no `on_reload` of its own.
#[derive(Default)]
struct Keeper {
    config: std::sync::Mutex<Value>,
}

impl Plugin for Keeper {
    async fn on_load(&self, _: &Context, config: Value) -> Result<(), PluginError> {
        if config["port"].is_string() {
            return Err(PluginError::bad_payload("port must be a number"));
        }
        *self.config.lock().unwrap() = config;
        Ok(())
    }

    async fn handle(&self, _: &Context, action: &str, _: Value) -> Result<Value, PluginError> {
        match action {
            "config" => Ok(self.config.lock().unwrap().clone()),
            other => Err(PluginError::unknown_action(other)),
        }
    }
}

#[tokio::test]
async fn without_an_on_reload_a_reload_runs_on_load_with_the_new_config() {
    let mut h = Harness::new(Keeper::default());
    h.load(json!({"port": 1})).await.unwrap();
    h.reload(json!({"port": 2})).await.unwrap();
    assert_eq!(
        h.call("config", json!(null)).await.unwrap(),
        json!({"port": 2})
    );
    // A config on_load refuses is refused by the reload too, so corral
    // restarts the plugin rather than have it run on the old one.
    let err = h.reload(json!({"port": "x"})).await.unwrap_err();
    assert_eq!(err.code, "bad_payload");
}

/// Background work in the mode its config names, recording its life.
#[derive(Default)]
struct Worker {
    life: Arc<std::sync::Mutex<Vec<&'static str>>>,
    ticks: Arc<AtomicUsize>,
    dropped: Arc<AtomicBool>,
    mode: std::sync::Mutex<String>,
}

impl Worker {
    fn note(&self, what: &'static str) {
        self.life.lock().unwrap().push(what);
    }
}

impl Plugin for Worker {
    async fn on_load(&self, _: &Context, config: Value) -> Result<(), PluginError> {
        let mode = config["mode"].as_str().unwrap_or_default();
        if mode == "refuse" {
            return Err(PluginError::bad_payload("no mode"));
        }
        *self.mode.lock().unwrap() = mode.to_string();
        Ok(())
    }

    async fn handle(&self, _: &Context, action: &str, _: Value) -> Result<Value, PluginError> {
        match action {
            "ping" => Ok(json!("pong")),
            other => Err(PluginError::unknown_action(other)),
        }
    }

    async fn background(&self, _: &Context, stop: Stop) -> Result<(), PluginError> {
        self.note("started");
        let mode = self.mode.lock().unwrap().clone();
        match mode.as_str() {
            "tick" => {
                stop.every(Duration::from_millis(1), || async {
                    self.ticks.fetch_add(1, Ordering::SeqCst);
                })
                .await;
            }
            "stubborn" => {
                let _guard = SetOnDrop(Arc::clone(&self.dropped));
                loop {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            "panic" => panic!("the sensor is gone"),
            "fail" => return Err(PluginError::internal("no sensor")),
            _ => {}
        }
        self.note("stopped");
        Ok(())
    }

    async fn on_unload(&self, _: &Context) {
        self.note("unloaded");
    }
}

/// Waits (up to 5 s) until `cond` holds.
async fn eventually(what: &str, cond: impl Fn() -> bool) {
    for _ in 0..1000 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn background_work_starts_once_after_load_and_stops_before_on_unload() {
    let worker = Worker::default();
    let (life, ticks) = (Arc::clone(&worker.life), Arc::clone(&worker.ticks));
    let mut h = Harness::new(worker);
    h.load(json!({"mode": "tick"})).await.unwrap();
    eventually("ticks", || ticks.load(Ordering::SeqCst) >= 2).await;
    h.reload(json!({"mode": "tick"})).await.unwrap();
    let before = ticks.load(Ordering::SeqCst);
    eventually("ticks after the reload", || {
        ticks.load(Ordering::SeqCst) > before
    })
    .await;
    assert!(!h.ctx().stopping().is_stopped());
    h.unload().await;
    assert!(h.ctx().stopping().is_stopped());
    // Started once; returned on the stop signal, before on_unload ran.
    assert_eq!(*life.lock().unwrap(), ["started", "stopped", "unloaded"]);
}

#[tokio::test]
async fn background_work_that_ignores_the_stop_is_dropped_after_the_timeout() {
    let worker = Worker::default();
    let (life, dropped) = (Arc::clone(&worker.life), Arc::clone(&worker.dropped));
    let mut h = Harness::new(worker).stop_timeout(Duration::from_millis(50));
    h.load(json!({"mode": "stubborn"})).await.unwrap();
    eventually("the start", || !life.lock().unwrap().is_empty()).await;
    let started = std::time::Instant::now();
    h.unload().await;
    assert!(started.elapsed() >= Duration::from_millis(50));
    until(&dropped).await;
    assert_eq!(*life.lock().unwrap(), ["started", "unloaded"]);
}

#[tokio::test]
async fn background_work_that_fails_or_panics_leaves_the_plugin_serving() {
    for mode in ["panic", "fail"] {
        let worker = Worker::default();
        let life = Arc::clone(&worker.life);
        let mut h = Harness::new(worker);
        h.load(json!({ "mode": mode })).await.unwrap();
        eventually("the start", || !life.lock().unwrap().is_empty()).await;
        assert_eq!(h.call("ping", json!(null)).await.unwrap(), "pong", "{mode}");
        h.unload().await;
        assert_eq!(*life.lock().unwrap(), ["started", "unloaded"], "{mode}");
    }
}

#[tokio::test]
async fn only_a_successful_load_starts_background_work_and_an_unload_ends_it_for_good() {
    let worker = Worker::default();
    let life = Arc::clone(&worker.life);
    let mut h = Harness::new(worker);
    h.load(json!({"mode": "refuse"})).await.unwrap_err();
    assert!(life.lock().unwrap().is_empty());
    h.load(json!({"mode": "idle"})).await.unwrap();
    eventually("the start", || !life.lock().unwrap().is_empty()).await;

    // Unloaded before it ever loaded: nothing starts afterwards.
    let worker = Worker::default();
    let life = Arc::clone(&worker.life);
    let mut h = Harness::new(worker);
    h.unload().await;
    h.load(json!({"mode": "idle"})).await.unwrap();
    assert_eq!(h.call("ping", json!(null)).await.unwrap(), "pong");
    assert_eq!(*life.lock().unwrap(), ["unloaded"]);
}
