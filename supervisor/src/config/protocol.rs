//! What a plugin's `protocol` allows: the keys that only mean something to
//! a plugin speaking corral's protocol (its handshake, heartbeats, calls and
//! the bus; `call_timeout` also bounds a program's routes behind the HTTP
//! gateway), refused by name on a plugin with `protocol = "none"`. Pure.

use corral_proto::Protocol;

use super::layers::PluginLayer;

/// The keys of `layer` that need corral's protocol and are set there.
pub(super) fn needs_corral(layer: &PluginLayer) -> Vec<&'static str> {
    let PluginLayer {
        codec,
        config,
        handshake_timeout,
        heartbeat,
        call_timeout,
        http,
        rate_limit,
        subscribe,
        publish,
        queue,
        overflow,
        queue_bytes,
        retained_max,
        retained_bytes,
        durable,
        max_subscriptions,
        ..
    } = layer;
    [
        ("codec", codec.is_some()),
        ("config", config.is_some()),
        ("handshake_timeout", handshake_timeout.is_some()),
        ("heartbeat", heartbeat.is_some()),
        // A program's routes behind the gateway answer within it.
        ("call_timeout", call_timeout.is_some() && http.is_none()),
        ("rate_limit", rate_limit.is_some()),
        ("subscribe", subscribe.is_some()),
        ("publish", publish.is_some()),
        ("queue", queue.is_some()),
        ("overflow", overflow.is_some()),
        ("queue_bytes", queue_bytes.is_some()),
        ("retained_max", retained_max.is_some()),
        ("retained_bytes", retained_bytes.is_some()),
        ("durable", durable.is_some()),
        ("max_subscriptions", max_subscriptions.is_some()),
    ]
    .into_iter()
    .filter_map(|(key, set)| set.then_some(key))
    .collect()
}

/// On a plugin with `protocol = "none"`, each key of its own (`layer`: its
/// entry over its manifest) that needs corral's protocol, with why it is
/// refused; `[defaults]` may set them for the fleet's other plugins.
pub(super) fn refused(
    layer: &PluginLayer,
    fleet_defaults: &PluginLayer,
) -> impl Iterator<Item = (&'static str, String)> {
    let none = layer.protocol.or(fleet_defaults.protocol) == Some(Protocol::None);
    // With `notify`, `handshake_timeout` bounds the wait for `READY=1`.
    let notify = layer.notify.or(fleet_defaults.notify) == Some(true);
    let keys = if none {
        needs_corral(layer)
            .into_iter()
            .filter(|key| !(notify && *key == "handshake_timeout"))
            .collect()
    } else {
        Vec::new()
    };
    keys.into_iter().map(|key| (key, refusal(key)))
}

/// Why `key` is refused on a plugin with `protocol = "none"`.
fn refusal(key: &str) -> String {
    format!(
        "`{key}` needs corral's protocol, and this plugin runs with protocol = \"none\" (no handshake, heartbeats, calls or bus); remove `{key}`, or set protocol = \"corral\""
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_protocol_keys_set_in_a_layer_are_named() {
        let layer = PluginLayer {
            subscribe: Some(vec!["a.>".into()]),
            call_timeout: Some(crate::units::HumanDuration(std::time::Duration::from_secs(
                1,
            ))),
            cmd: Some(vec!["sleep".into(), "9".into()]),
            memory_max: Some(crate::units::Size(1 << 20)),
            ..PluginLayer::default()
        };
        assert_eq!(needs_corral(&layer), ["call_timeout", "subscribe"]);
        assert!(needs_corral(&PluginLayer::default()).is_empty());
        assert!(refusal("subscribe").contains("protocol = \"none\""));
    }
}
