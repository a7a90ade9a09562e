//! `/metrics`: the fleet in the OpenMetrics text format, read fresh at each
//! scrape from `ps`, each plugin's [`Meter`](crate::plugin::meter::Meter)
//! and the bus's figures. Labels are the plugin's name and fixed word sets
//! (states, exit reasons, call outcomes), never a topic or a plugin's own
//! words, so a plugin cannot grow the series count.

use std::fmt;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use corral_proto::{BusStats, PluginState, PluginStatus};
use futures::future::join_all;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeCounterValue, EncodeGaugeValue, MetricEncoder, NoLabelSet,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::Face;
use crate::plugin::meter::{CALL_OUTCOMES, EXIT_REASONS, HistogramReading, Reading};

/// The OpenMetrics text format's content type.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Every state, for `corral_plugin_state`.
const STATES: [PluginState; 9] = [
    PluginState::Waiting,
    PluginState::Starting,
    PluginState::Running,
    PluginState::Unhealthy,
    PluginState::Stopping,
    PluginState::Stopped,
    PluginState::Exited,
    PluginState::Backoff,
    PluginState::Failed,
];

pub(super) fn routes() -> Router<Face> {
    Router::new().route("/metrics", get(metrics))
}

/// What one scrape reads of one plugin.
#[derive(Debug)]
struct PluginFigures {
    status: PluginStatus,
    meter: Reading,
    bus: BusStats,
}

/// What one scrape reads of the fleet.
#[derive(Debug)]
struct Scrape {
    plugins: Vec<PluginFigures>,
    uptime_seconds: f64,
    supervisor_rss: u64,
    supervisor_fds: u64,
}

async fn metrics(State(face): State<Face>) -> impl IntoResponse {
    let scrape = read(&face).await;
    let mut registry = Registry::default();
    registry.register_collector(Box::new(scrape));
    let mut text = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &registry) {
        tracing::warn!("http: cannot encode /metrics: {e}");
    }
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], text)
}

async fn read(face: &Face) -> Scrape {
    let rows = face.supervisor.ps().await;
    let handles = face.supervisor.plugins().await;
    let bus = face.supervisor.bus();
    let stats = join_all(rows.iter().map(|r| bus.stats(&r.name))).await;
    let plugins = rows
        .into_iter()
        .zip(stats)
        .map(|(status, bus)| {
            let meter = handles
                .iter()
                .find(|h| h.name() == status.name)
                .map(crate::plugin::PluginHandle::meter)
                .unwrap_or_default();
            PluginFigures { status, meter, bus }
        })
        .collect();
    Scrape {
        plugins,
        uptime_seconds: face.started.elapsed().as_secs_f64(),
        supervisor_rss: crate::os::memory::own_rss(),
        supervisor_fds: own_fds(),
    }
}

/// The supervisor's open file descriptors.
fn own_fds() -> u64 {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64)
}

type Encoded = Result<(), fmt::Error>;

/// A gauge's value.
fn gauge<V: EncodeGaugeValue>(v: V) -> impl FnOnce(&mut MetricEncoder) -> Encoded {
    move |m| m.encode_gauge(&v)
}

/// A counter's value.
fn counter<V: EncodeCounterValue>(v: V) -> impl FnOnce(&mut MetricEncoder) -> Encoded {
    move |m| m.encode_counter::<NoLabelSet, _, u64>(&v, None)
}

/// A histogram read earlier, as Prometheus has it.
fn histogram(h: &HistogramReading) -> impl FnOnce(&mut MetricEncoder) -> Encoded + '_ {
    move |m| m.encode_histogram::<NoLabelSet>(h.sum, h.count(), &h.buckets(), None)
}

/// One family: a name, its help and type, and a value per label set.
fn family<'a, L, F>(
    encoder: &mut DescriptorEncoder,
    (name, help, kind): (&str, &str, MetricType),
    series: impl IntoIterator<Item = (L, F)>,
) -> Result<(), fmt::Error>
where
    L: prometheus_client::encoding::EncodeLabelSet + 'a,
    F: FnOnce(&mut MetricEncoder) -> Result<(), fmt::Error>,
{
    let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
    for (labels, value) in series {
        value(&mut metric.encode_family(&labels)?)?;
    }
    Ok(())
}

type Labels<'a> = Vec<(&'static str, &'a str)>;

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        self.encode_states(&mut encoder)?;
        self.encode_resources(&mut encoder)?;
        self.encode_calls(&mut encoder)?;
        self.encode_bus(&mut encoder)?;
        self.encode_supervisor(&mut encoder)
    }
}

fn of(name: &str) -> Labels<'_> {
    vec![("plugin", name)]
}

impl Scrape {
    fn each<'a, V: 'a>(
        &'a self,
        value: impl Fn(&'a PluginFigures) -> V + 'a,
    ) -> impl Iterator<Item = (Labels<'a>, V)> + 'a {
        self.plugins
            .iter()
            .map(move |p| (of(&p.status.name), value(p)))
    }

    fn encode_states(&self, e: &mut DescriptorEncoder) -> Result<(), fmt::Error> {
        let up = self.each(|p| gauge(u64::from(p.status.state == PluginState::Running)));
        family(
            e,
            (
                "corral_plugin_up",
                "1 while the plugin is running",
                MetricType::Gauge,
            ),
            up,
        )?;
        let states = self.plugins.iter().flat_map(|p| {
            STATES.iter().map(move |s| {
                let labels = vec![("plugin", p.status.name.as_str()), ("state", s.as_str())];
                (labels, gauge(u64::from(p.status.state == *s)))
            })
        });
        family(
            e,
            (
                "corral_plugin_state",
                "1 for the state the plugin is in",
                MetricType::Gauge,
            ),
            states,
        )?;
        let restarts = self.each(|p| counter(u64::from(p.status.restarts)));
        family(
            e,
            (
                "corral_plugin_restarts",
                "restarts since it was last started by hand",
                MetricType::Counter,
            ),
            restarts,
        )?;
        let exits = self.plugins.iter().flat_map(|p| {
            EXIT_REASONS
                .iter()
                .zip(&p.meter.exits)
                .map(move |(reason, n)| {
                    (
                        vec![("plugin", p.status.name.as_str()), ("reason", *reason)],
                        counter(*n),
                    )
                })
        });
        family(
            e,
            (
                "corral_plugin_exits",
                "processes of the plugin that ended, by exit reason",
                MetricType::Counter,
            ),
            exits,
        )?;
        let probes = self.plugins.iter().flat_map(|p| {
            ["passed", "failed"]
                .into_iter()
                .zip(p.meter.probes)
                .map(move |(result, n)| {
                    (
                        vec![("plugin", p.status.name.as_str()), ("result", result)],
                        counter(n),
                    )
                })
        });
        family(
            e,
            (
                "corral_plugin_health_probes",
                "health probes run, by result",
                MetricType::Counter,
            ),
            probes,
        )
    }

    fn encode_resources(&self, e: &mut DescriptorEncoder) -> Result<(), fmt::Error> {
        let rss = self.each(|p| gauge(p.status.rss_bytes));
        family(
            e,
            (
                "corral_plugin_memory_bytes",
                "resident memory of the plugin's process tree",
                MetricType::Gauge,
            ),
            rss,
        )?;
        let capped = self.plugins.iter().filter_map(|p| {
            p.status
                .memory_max_bytes
                .map(|max| (of(&p.status.name), gauge(max)))
        });
        family(
            e,
            (
                "corral_plugin_memory_max_bytes",
                "the plugin's memory_max",
                MetricType::Gauge,
            ),
            capped,
        )?;
        let cpu = self.each(|p| counter(p.status.cpu_ms as f64 / 1000.0));
        family(
            e,
            (
                "corral_plugin_cpu_seconds",
                "CPU time of the plugin's process tree",
                MetricType::Counter,
            ),
            cpu,
        )?;
        let heartbeats = self.each(|p| histogram(&p.meter.heartbeat_seconds));
        family(
            e,
            (
                "corral_plugin_heartbeat_seconds",
                "heartbeat round trips",
                MetricType::Histogram,
            ),
            heartbeats,
        )
    }

    fn encode_calls(&self, e: &mut DescriptorEncoder) -> Result<(), fmt::Error> {
        let calls = self.plugins.iter().flat_map(|p| {
            CALL_OUTCOMES
                .iter()
                .zip(&p.meter.calls)
                .map(move |(code, n)| {
                    (
                        vec![("plugin", p.status.name.as_str()), ("code", *code)],
                        counter(*n),
                    )
                })
        });
        family(
            e,
            (
                "corral_plugin_calls",
                "calls into the plugin, by outcome (`ok` or the error code)",
                MetricType::Counter,
            ),
            calls,
        )?;
        let latency = self.each(|p| histogram(&p.meter.call_seconds));
        family(
            e,
            (
                "corral_plugin_call_seconds",
                "how long calls into the plugin took",
                MetricType::Histogram,
            ),
            latency,
        )
    }

    fn encode_bus(&self, e: &mut DescriptorEncoder) -> Result<(), fmt::Error> {
        let published = self.each(|p| counter(p.bus.published));
        family(
            e,
            (
                "corral_bus_published",
                "events the plugin published",
                MetricType::Counter,
            ),
            published,
        )?;
        let delivered = self.each(|p| counter(p.bus.delivered));
        family(
            e,
            (
                "corral_bus_delivered",
                "events delivered to the plugin",
                MetricType::Counter,
            ),
            delivered,
        )?;
        let dropped = self.each(|p| counter(p.bus.dropped));
        family(
            e,
            (
                "corral_bus_dropped",
                "events dropped from the plugin's full queue",
                MetricType::Counter,
            ),
            dropped,
        )?;
        let denied = self.plugins.iter().flat_map(|p| {
            [
                ("publish", p.bus.denied_publishes),
                ("subscribe", p.bus.denied_subscriptions),
            ]
            .into_iter()
            .map(move |(kind, n)| {
                (
                    vec![("plugin", p.status.name.as_str()), ("kind", kind)],
                    counter(n),
                )
            })
        });
        family(
            e,
            (
                "corral_bus_denied",
                "publishes and subscriptions refused by the plugin's allow-lists",
                MetricType::Counter,
            ),
            denied,
        )?;
        let queued = self.each(|p| gauge(p.bus.queued));
        family(
            e,
            (
                "corral_bus_queued",
                "events waiting in the plugin's queue",
                MetricType::Gauge,
            ),
            queued,
        )?;
        let bytes = self.each(|p| gauge(p.bus.queued_bytes));
        family(
            e,
            (
                "corral_bus_queued_bytes",
                "bytes waiting in the plugin's queue",
                MetricType::Gauge,
            ),
            bytes,
        )
    }

    fn encode_supervisor(&self, e: &mut DescriptorEncoder) -> Result<(), fmt::Error> {
        let none: Vec<(&'static str, &str)> = Vec::new();
        family(
            e,
            (
                "corral_supervisor_memory_bytes",
                "the supervisor's resident memory",
                MetricType::Gauge,
            ),
            [(none.clone(), gauge(self.supervisor_rss))],
        )?;
        family(
            e,
            (
                "corral_supervisor_open_fds",
                "the supervisor's open file descriptors",
                MetricType::Gauge,
            ),
            [(none.clone(), gauge(self.supervisor_fds))],
        )?;
        family(
            e,
            (
                "corral_supervisor_uptime_seconds",
                "time since the supervisor started",
                MetricType::Gauge,
            ),
            [(none.clone(), gauge(self.uptime_seconds))],
        )?;
        family(
            e,
            ("corral_plugins", "plugins in the fleet", MetricType::Gauge),
            [(none, gauge(self.plugins.len() as u64))],
        )
    }
}
