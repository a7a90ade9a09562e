//! Dispatch order, failure isolation and pattern checks of the router.

use std::sync::Mutex;

use serde_json::json;

use super::*;

/// Records which handler ran, in order.
#[derive(Default)]
struct Calls(Mutex<Vec<&'static str>>);

impl Calls {
    fn push(&self, name: &'static str) {
        self.0.lock().unwrap().push(name);
    }

    fn taken(&self) -> Vec<&'static str> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }

    async fn low(&self, _: &Context, _: &Event) {
        self.push("low");
    }

    async fn high(&self, _: &Context, _: &Event) -> Result<(), PluginError> {
        self.push("high");
        Ok(())
    }

    async fn also_high(&self, _: &Context, _: &Event) {
        tokio::task::yield_now().await;
        self.push("also_high");
    }

    async fn elsewhere(&self, _: &Context, _: &Event) {
        self.push("elsewhere");
    }

    async fn failing(&self, _: &Context, _: &Event) -> Result<(), PluginError> {
        self.push("failing");
        Err(PluginError::internal("the recorder is full"))
    }

    async fn panicking(&self, _: &Context, event: &Event) {
        self.push("panicking");
        panic!("cannot handle {}", event.topic);
    }
}

fn event(topic: &str) -> Event {
    Event {
        topic: topic.to_string(),
        payload: json!({"watts": 1}).into(),
        source: "test".to_string(),
        seq: 1,
        at_unix_us: 0,
        retained: false,
    }
}

fn ctx() -> Context {
    Context::new("test".to_string(), None, 1 << 20)
}

#[test]
fn a_route_goes_after_those_of_its_priority_or_higher() {
    assert_eq!(position([], 0), 0);
    assert_eq!(position([10, 10, 0, -5], 10), 2);
    assert_eq!(position([10, 10, 0, -5], 5), 2);
    assert_eq!(position([10, 10, 0, -5], -5), 4);
    assert_eq!(position([10, 10, 0, -5], 11), 0);
}

#[tokio::test]
async fn matching_handlers_run_by_priority_then_in_the_order_added() {
    let calls = Calls::default();
    let router = Router::new()
        .on(">", 0, Calls::low)
        .on("sensor.*", 10, Calls::high)
        .on("sensor.power", 10, Calls::also_high)
        .on("other.>", 100, Calls::elsewhere);
    let ran = router
        .dispatch(&calls, &ctx(), &event("sensor.power"))
        .await;
    assert_eq!((ran, calls.taken()), (3, vec!["high", "also_high", "low"]));
    let ran = router.dispatch(&calls, &ctx(), &event("other.x")).await;
    assert_eq!((ran, calls.taken()), (2, vec!["elsewhere", "low"]));
    let ran = router.dispatch(&calls, &ctx(), &event("sensor.a.b")).await;
    assert_eq!((ran, calls.taken()), (1, vec!["low"]));
}

#[tokio::test]
async fn a_failing_or_panicking_handler_never_stops_the_others() {
    let calls = Calls::default();
    let router = Router::new()
        .on(">", -1, Calls::low)
        .on(">", 5, Calls::failing)
        .on(">", 5, Calls::panicking)
        .on(">", 0, Calls::high);
    let ran = router.dispatch(&calls, &ctx(), &event("a.b")).await;
    assert_eq!(ran, 4);
    assert_eq!(calls.taken(), ["failing", "panicking", "high", "low"]);
}

#[test]
fn a_bad_pattern_is_refused() {
    let err = Router::<Calls>::new()
        .try_on("a.>.b", 0, Calls::low)
        .unwrap_err();
    assert_eq!(err.code, codes::BAD_TOPIC);
    assert!(err.message.contains("a.>.b"), "{err}");
    let router = Router::<Calls>::new().try_on("a.*", 0, Calls::low).unwrap();
    let shown = format!("{router:?}");
    assert!(
        shown.contains("\"a.*\", 0") && shown.contains("Calls::low"),
        "{shown}"
    );
}

#[test]
#[should_panic(expected = "Router::on: pattern `a..b`")]
fn on_panics_on_a_bad_pattern() {
    let _ = Router::<Calls>::new().on("a..b", 0, Calls::low);
}
