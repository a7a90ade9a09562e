//! The `echo-plugin` binary: see the library docs for its actions.

fn main() {
    if let Some(mb) = std::env::var(echo_plugin::CHILD_ENV)
        .ok()
        .and_then(|mb| mb.parse().ok())
    {
        // A child started by the `spawn` action: hold the memory, then wait
        // to be killed with the plugin's process group.
        let held = echo_plugin::touch_mib(mb);
        loop {
            std::thread::park();
            std::hint::black_box(&held);
        }
    }
    corral_sdk::run(echo_plugin::Echo::default())
}
