//! The tarpc services: [`PluginApi`], which every plugin serves to the
//! supervisor, and [`ControlApi`], which the supervisor serves to the CLI.
//!
//! On the JSON codec a request's method appears as its CamelCase name with
//! arguments keyed by parameter name, e.g. `{"Handle":{"action":"echo","payload":{…}}}`.

use crate::{
    Deliveries, ErrorReply, Event, Payload, PluginEntry, PluginInfo, PluginStatus, Publish,
    PublishReceipt, ReloadReport, StreamPart,
};

/// Served by every plugin on its connection to the supervisor.
#[tarpc::service]
pub trait PluginApi {
    /// Called once after the handshake with the plugin's `config` table; the
    /// plugin runs its `on_load` hook. An error here fails the start.
    async fn load(config: Payload) -> Result<(), ErrorReply>;
    /// Heartbeat: answer `seq` back. Must be answered even while handlers run.
    async fn ping(seq: u64) -> u64;
    /// Runs one action with a JSON payload, replying with a JSON payload or an error.
    async fn handle(action: String, payload: Payload) -> Result<Payload, ErrorReply>;
    /// Asks the plugin to run its `on_unload` hook and exit.
    async fn shutdown();
    /// Hands the plugin a changed `config` table (hot reload); it runs its
    /// `on_reload` hook. An error makes the supervisor restart it instead.
    async fn reload(config: Payload) -> Result<(), ErrorReply>;
    /// Delivers a batch of events matching the plugin's subscriptions, in
    /// order; the next batch is sent once this one is answered.
    async fn deliver(events: Deliveries);
    /// Starts `action` with its reply as a stream named `id` (feature
    /// `streams`): answered once it runs; its chunks are then pulled. The
    /// request's deadline is the stream's: past it the producer is stopped.
    /// An action that answers with one value ends its stream with it.
    async fn stream(id: u64, action: String, payload: Payload) -> Result<(), ErrorReply>;
    /// The next chunks of stream `id`: answered once there is at least one,
    /// or the end. The producer runs ahead of its puller by a bounded
    /// buffer only, so a slow reader slows it.
    async fn pull(id: u64) -> StreamPart;
    /// Stops stream `id` (its caller went away): the producer is cancelled.
    async fn close(id: u64);
}

/// Served by the supervisor on a plugin's second ([`Role::Bus`](crate::Role))
/// connection: the plugin's way onto the event bus.
#[tarpc::service]
pub trait BusApi {
    /// Publishes a batch, in order. Events outside the plugin's `publish`
    /// allow-list or under `corral.>` are refused and reach no one.
    async fn publish(events: Vec<Publish>) -> PublishReceipt;
    /// Adds subscriptions; refused (all of them) if one is outside the
    /// plugin's `subscribe` allow-list. Matching retained events follow.
    async fn subscribe(patterns: Vec<String>) -> Result<(), ErrorReply>;
    /// Removes subscriptions.
    async fn unsubscribe(patterns: Vec<String>) -> Result<(), ErrorReply>;
    /// Calls `action` of another plugin (feature `calls`), within the
    /// caller's `calls` permissions and the target's `callers`. The request's
    /// deadline travels with it and caps the target's `call_timeout`. A
    /// target that is not running answers `not_running`, or with `wait`, is
    /// waited for until the deadline.
    async fn call(
        plugin: String,
        action: String,
        payload: Payload,
        wait: bool,
    ) -> Result<Payload, ErrorReply>;
    /// Opens a streamed call to another plugin (features `calls` and
    /// `streams`), permitted as [`call`](BusApi::call) is; answers the
    /// stream's id for [`stream_next`](BusApi::stream_next).
    async fn call_stream(
        plugin: String,
        action: String,
        payload: Payload,
    ) -> Result<u64, ErrorReply>;
    /// The next chunks of a stream this plugin opened.
    async fn stream_next(id: u64) -> Result<StreamPart, ErrorReply>;
    /// Abandons a stream this plugin opened: its producer is stopped.
    async fn stream_close(id: u64);
    /// The fleet's plugins, their states and the actions each declares.
    async fn plugins() -> Vec<PluginEntry>;
    /// Publishes a batch that came from elsewhere (feature `bridge`; only a
    /// plugin with `bridge = true`): as [`publish`](BusApi::publish), within
    /// the plugin's `publish` allow-list, each event's source `origin`
    /// (`scheme:name`, see [`check_origin`](crate::event::check_origin))
    /// instead of the plugin's name.
    async fn relay(origin: String, events: Vec<Publish>) -> PublishReceipt;
    /// Every plugin's status row, as `corral ps --json` shows them: a JSON
    /// array of [`PluginStatus`] (feature `bridge`; only a plugin with
    /// `bridge = true`, else `denied`). JSON in either codec, since a row
    /// leaves out the fields it has no value for.
    async fn fleet() -> Result<Payload, ErrorReply>;
}

/// Served by the supervisor on its control socket; the CLI is its client.
#[tarpc::service]
pub trait ControlApi {
    /// One status row per configured plugin, in config order.
    async fn ps() -> Vec<PluginStatus>;
    /// Calls a plugin's action through the supervisor.
    async fn call(name: String, action: String, payload: Payload) -> Result<Payload, ErrorReply>;
    /// Stops every plugin; answers once all are reaped, then the supervisor exits.
    async fn down();
    /// Starts the named plugins (clearing `failed` and the restart count).
    async fn start(names: Vec<String>) -> Result<(), ErrorReply>;
    /// Stops the named plugins; they stay `stopped` until started.
    async fn stop(names: Vec<String>) -> Result<(), ErrorReply>;
    /// Stops then starts the named plugins.
    async fn restart(names: Vec<String>) -> Result<(), ErrorReply>;
    /// Status, settings in force and history of one plugin.
    async fn inspect(name: String) -> Result<PluginInfo, ErrorReply>;
    /// Re-reads the fleet config and applies only the difference; a config
    /// that does not validate changes nothing and answers its problems.
    async fn reload() -> Result<ReloadReport, ErrorReply>;
    /// Publishes one event from the CLI (source `cli`).
    async fn publish(topic: String, payload: Payload, retain: bool) -> Result<(), ErrorReply>;
    /// Opens a stream of the events matching `patterns` (lifecycle events
    /// included); returns its id for [`events_next`](ControlApi::events_next).
    async fn events_open(patterns: Vec<String>) -> Result<u64, ErrorReply>;
    /// The next events of an open stream: waits up to a second for some.
    /// A stream not read for 10 s is closed.
    async fn events_next(id: u64) -> Result<Vec<Event>, ErrorReply>;
    /// Whether the initial fleet has settled: every plugin has started,
    /// failed, or waits on one that failed (when `READY=1` goes to a
    /// service manager). Answers at once.
    async fn ready() -> bool;
    /// Opens a streamed call to a plugin's action; answers its id for
    /// [`stream_next`](ControlApi::stream_next). A stream not read for 10 s
    /// is closed, and so are a connection's streams when it closes.
    async fn call_stream(name: String, action: String, payload: Payload)
    -> Result<u64, ErrorReply>;
    /// The next chunks of an open stream.
    async fn stream_next(id: u64) -> Result<StreamPart, ErrorReply>;
    /// Abandons an open stream: its producer is stopped.
    async fn stream_close(id: u64);
}

/// The methods of [`ControlApi`] as they appear on the wire (the key of a
/// request's `message` in the JSON codec), in declaration order. The control
/// server names them when it answers a request for a method it does not
/// have.
pub const CONTROL_METHODS: &[&str] = &[
    "Ps",
    "Call",
    "Down",
    "Start",
    "Stop",
    "Restart",
    "Inspect",
    "Reload",
    "Publish",
    "EventsOpen",
    "EventsNext",
    "Ready",
    "CallStream",
    "StreamNext",
    "StreamClose",
];

#[cfg(test)]
mod tests {
    use super::{CONTROL_METHODS, ControlApiRequest};

    #[test]
    fn control_methods_are_exactly_the_variants_serde_knows() {
        // serde lists every variant of the request enum when it meets an
        // unknown one: the list above must be that list.
        let err = serde_json::from_str::<ControlApiRequest>(r#"{"Frobnicate":{}}"#)
            .expect_err("no such method");
        let expected: Vec<String> = CONTROL_METHODS.iter().map(|m| format!("`{m}`")).collect();
        let message = err.to_string();
        assert!(
            message.contains(&format!(
                "unknown variant `Frobnicate`, expected one of {} at line",
                expected.join(", ")
            )),
            "{message}"
        );
    }
}
